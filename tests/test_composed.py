import json

import numpy as np
import pytest
from conftest import data_dir

from mosaic.composed import (
    CombinerConfig,
    ComposedSearch,
    Triplet,
    complete,
    evaluate,
    load_cirr,
    rank_one,
    recalls,
    submission,
    train_combiner,
)
from mosaic.errors import QueryError, SourceError

PAIRS = [12060, 12062, 12081, 12082, 12083, 12087, 12088, 12089, 12702, 12703, 12878, 12902]


@pytest.fixture(scope="module")
def cirr_dir():
    return data_dir("cirr-dev-sample")


@pytest.fixture(scope="module")
def cirr(cirr_dir, tmp_path_factory):
    from mosaic.build import BuildConfig, build
    from mosaic.search import SearchService

    out = build(BuildConfig("cirr", str(cirr_dir), model="lite", captioner="labels"),
                tmp_path_factory.mktemp("c") / "cirr", progress=False)
    return SearchService(out)


@pytest.mark.slow
def test_loader_reads_the_release_annotations(cirr_dir, cirr):
    triplets = load_cirr(cirr_dir)
    assert len(triplets) == 4181
    first = triplets[0]
    assert (first.pairid, first.reference, first.target) == (12060, "dev-244-0-img0", "dev-1028-1-img1")
    assert first.caption == "show three bottles of soft drink" and len(first.members) == 6
    assert [t.pairid for t in complete(triplets, cirr)] == PAIRS  # 12 complete over the 13 images


def test_loader_errors_are_clear(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        load_cirr(tmp_path)
    (tmp_path / "captions").mkdir()
    (tmp_path / "captions" / "cap.rc2.val.json").write_text(json.dumps([{"pairid": 1}]))
    with pytest.raises(SourceError, match="not a CIRR annotation file"):
        load_cirr(tmp_path)


def test_metrics_on_a_hand_computed_case():
    rows_by_id = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}
    triplet = Triplet(1, "a", "change", "d", ["a", "d", "b"])
    scores = np.array([0.9, 0.1, 0.8, 0.5, 0.3])  # the reference scores highest and must not count
    gallery, subset = rank_one(scores, triplet, rows_by_id)
    assert gallery == ["c", "d", "e", "b"] and subset == ["d", "b"]
    r = recalls([(gallery, subset)], ["d"])
    assert (r["R@1"], r["R@5"], r["R_subset@1"], r["R_subset@2"]) == (0, 100, 100, 100)
    miss = recalls([(gallery, subset), (["x", "d"], ["x", "d"])], ["d", "d"])
    assert miss["R@1"] == 0 and miss["R_subset@1"] == 50 and miss["R@5"] == 100


@pytest.mark.slow
def test_fusion_methods_never_return_the_reference(cirr):
    search = ComposedSearch(cirr)
    ref = "dev-244-0-img0"
    for method in ("sum", "slerp", "text"):
        hits = search.search(ref, "show three bottles of soft drink", method, k=5)
        assert len(hits) == 5 and ref not in [h.id for h in hits]
        assert hits[0].explanation["mode"] == f"composed:{method}"
    image_only = search.search(ref, "anything", "sum", k=3, weight=0.0)
    nearest = [h.id for h in cirr.image_to_image(ref, k=4)][1:]
    assert [h.id for h in image_only] == nearest  # weight 0: the reference's own neighbours
    text_only = search.search(ref, "three bottles", "slerp", k=3, weight=1.0)
    assert [h.id for h in text_only] == [h.id for h in cirr.text_to_image("three bottles", 4, "image") if h.id != ref][:3]
    assert search.merged_text(ref, "but blue").startswith(cirr.collection.item(cirr.row(ref))["caption"])
    with pytest.raises(QueryError, match="empty"):
        search.search(ref, "  ", "sum")
    with pytest.raises(QueryError, match="No combiner"):
        search.search(ref, "more bottles", "combiner")


@pytest.mark.slow
def test_evaluation_and_submission_files(cirr, cirr_dir):
    search, triplets = ComposedSearch(cirr), load_cirr(cirr_dir)
    r = evaluate(search, triplets, "sum")
    assert r["triplets"] == 12 and r["gallery"] == 13
    assert set(r) >= {"R@1", "R@5", "R@10", "R@50", "R_subset@1", "R_subset@2", "R_subset@3"}
    assert r["R@50"] == 100 and r["R_subset@3"] == 100  # 12 candidates, and at most 3 subset members here
    recall, subset = submission(search, triplets, "sum")
    assert recall["version"] == subset["version"] == "rc2" and subset["metric"] == "recall_subset"
    assert sorted(int(k) for k in recall if k.isdigit()) == PAIRS
    by_pair = {t.pairid: t for t in triplets}
    for key, ranked in recall.items():
        if key.isdigit():
            assert len(ranked) == 12 and by_pair[int(key)].reference not in ranked
            assert set(subset[key]) <= set(by_pair[int(key)].members) and len(subset[key]) <= 3


@pytest.mark.slow
def test_one_combiner_training_round_end_to_end(cirr, cirr_dir, tmp_path):
    triplets = load_cirr(cirr_dir)
    out = train_combiner(cirr, triplets, tmp_path / "combiner.pt", CombinerConfig(rounds=1, epochs=3), progress=False)
    work = out.with_suffix("")
    history = json.loads((work / "history.json").read_text())["rounds"]
    assert [h["hard_negatives"] for h in history] == [False, True]
    negatives = np.load(work / "negatives_1.npy")
    usable = [t for t in complete(triplets, cirr) if t.target]
    rows = cirr.collection.rows_by_id
    assert negatives.shape == (12, 4)
    for t, mined in zip(usable, negatives):
        assert rows[t.target] not in mined and rows[t.reference] not in mined
    search = ComposedSearch(cirr, out)
    assert evaluate(search, triplets, "combiner")["triplets"] == 12
    assert "dev-244-0-img0" not in [h.id for h in search.search("dev-244-0-img0", "more bottles", "combiner", k=5)]
    with pytest.raises(Exception, match="--resume"):
        train_combiner(cirr, triplets, out, CombinerConfig(rounds=1, epochs=3), progress=False)
