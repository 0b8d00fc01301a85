import pytest

from mosaic.evaluate import text_to_image_recall

pytestmark = pytest.mark.slow


def test_zero_shot_recall_is_far_above_chance(flickr):
    r = text_to_image_recall(flickr)
    assert r["queries"] == 1500 and r["images"] == 300
    assert r["chance R@10"] == pytest.approx(100 * 10 / 300, abs=0.01)
    assert r["R@1"] <= r["R@5"] <= r["R@10"]
    assert r["R@10"] > 5 * r["chance R@10"], r
    assert 0 < r["MRR"] < 1
