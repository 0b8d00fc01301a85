import json
import shutil

import numpy as np
import pytest

from mosaic import train as training
from mosaic.errors import CollectionError, SourceError
from mosaic.evaluate import split_rows
from mosaic.models import load_encoder
from mosaic.train import TrainConfig, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(flickr, tmp_path_factory):
    """Heads trained on the 100 train images of the 300-image fixture, 2 rounds of 4 epochs."""
    out = tmp_path_factory.mktemp("m") / "flickr.pt"
    return train(flickr.collection.path, out, TrainConfig(rounds=1, epochs=4), progress=False)


def test_training_learns_and_records_each_round(trained):
    history = json.loads((trained.with_suffix("") / "history.json").read_text())
    rounds = history["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and [r["hard_negatives"] for r in rounds] == [False, True]
    for r in rounds:
        # 200 held-out test images as candidates: random R@10 is 5 %
        assert r["test"]["t2i"]["R@10"] > 25 and r["test"]["i2t"]["R@10"] > 25, r
    assert (trained.with_suffix("") / "round_0.pt").exists() and trained.exists()


def test_mined_negatives_are_wrong_train_images_only(trained, flickr):
    c = flickr.collection
    train_rows, test_rows = split_rows(c.ids(), "train"), split_rows(c.ids(), "test")
    negatives = np.load(trained.with_suffix("") / "negatives_1.npy")
    features = np.load(trained.with_suffix("") / "features.npz")
    owner = features["owner"][np.isin(features["owner"], train_rows)]
    assert negatives.shape == (len(owner), 3) == (500, 3)
    assert np.isin(negatives, train_rows).all() and not np.isin(negatives, test_rows).any()
    assert not (negatives == owner[:, None]).any()


def test_checkpoint_is_a_model_spec(trained, flickr):
    encoder = load_encoder(f"lite:{trained}")
    assert encoder.dim == 256 and encoder.spec == f"lite:{trained}"
    row = 7
    image = flickr.collection.thumbnail(row)
    img, txt = encoder.encode_images([image]), encoder.encode_texts(flickr.collection.item_captions(row)[:5])
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    assert img.shape == (1, 256) and txt.shape == (5, 256)
    assert (txt @ img.T).mean() > 0.2  # its own captions, in the trained space


def test_interrupted_training_resumes_after_its_last_round(flickr, tmp_path, monkeypatch):
    out = tmp_path / "m.pt"
    real_mine = training.mine
    calls = []

    def mine_then_die(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_mine(*args)

    monkeypatch.setattr(training, "mine", mine_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(flickr.collection.path, out, TrainConfig(rounds=2, epochs=1), progress=False)
    work = out.with_suffix("")
    assert len(json.loads((work / "history.json").read_text())["rounds"]) == 2 and not out.exists()
    stamp = (work / "round_1.pt").stat().st_mtime_ns
    monkeypatch.setattr(training, "mine", real_mine)
    with pytest.raises(CollectionError, match="--resume"):
        train(flickr.collection.path, out, TrainConfig(rounds=2, epochs=1), progress=False)
    with pytest.raises(CollectionError, match="other settings"):
        train(flickr.collection.path, out, TrainConfig(rounds=3, epochs=1), resume=True, progress=False)
    train(flickr.collection.path, out, TrainConfig(rounds=2, epochs=1), resume=True, progress=False)
    rounds = json.loads((work / "history.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2] and (work / "round_1.pt").stat().st_mtime_ns == stamp
    assert out.exists()


def test_training_needs_human_captions(flickr_dir, tmp_path):
    from mosaic.build import BuildConfig, build

    (tmp_path / "photos").mkdir()
    for p in sorted((flickr_dir / "images").iterdir())[:3]:
        shutil.copy(p, tmp_path / "photos" / p.name)
    folder = build(BuildConfig("folder", str(tmp_path / "photos"), model="lite", captioner="labels"),
                   tmp_path / "photos-collection", progress=False)
    with pytest.raises(CollectionError, match="no human captions"):
        train(folder, tmp_path / "w.pt", TrainConfig(rounds=0, epochs=1), progress=False)


def test_a_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="not a checkpoint written by `mosaic train`"):
        load_encoder(f"lite:{tmp_path / 'missing.pt'}")
