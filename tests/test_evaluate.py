import csv
import json
import random

import numpy as np
import pytest

from mosaic.evaluate import KS, Pairs, directions, metrics, plot, relevant_ranks, retrieval, split_rows, summarize, write_csv


def test_metrics_on_hand_computed_ranks():
    scores = np.array([[0.9, 0.1, 0.5, 0.2],    # relevant: item 2 -> rank 2
                       [0.9, 0.8, 0.1, 0.7]])   # relevant: items 1 and 3 -> ranks 2 and 3
    ranks = relevant_ranks(scores, [np.array([2]), np.array([1, 3])], None, np.random.default_rng(0))
    assert [r.tolist() for r in ranks] == [[2], [2, 3]]
    m = summarize(ranks)
    assert m["R@1"] == 0 and m["R@5"] == 100 and m["MRR"] == 0.5
    ndcg_1 = 1 / np.log2(3)
    ndcg_2 = (1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert m["NDCG@10"] == pytest.approx((ndcg_1 + ndcg_2) / 2, abs=1e-4)


def test_candidate_pools_always_hold_the_ground_truth():
    rng = np.random.default_rng(0)
    scores = rng.random((500, 1000))
    truth = rng.integers(0, 1000, 500)
    scores[np.arange(500), truth] = 2.0  # the relevant item always scores highest
    ranks = relevant_ranks(scores, [np.array([t]) for t in truth], 100, rng)
    assert all(r.tolist() == [1] for r in ranks)
    scores[np.arange(500), truth] = -1.0  # ... always lowest: last of exactly 100 candidates
    ranks = relevant_ranks(scores, [np.array([t]) for t in truth], 100, rng)
    assert all(r.tolist() == [100] for r in ranks)


def test_split_is_fixed_by_id_and_disjoint():
    ids = [f"{i}.jpg" for i in range(1000)]
    test, train = split_rows(ids, "test"), split_rows(ids, "train")
    assert len(test) == 200 and len(train) == 800 and not set(test) & set(train)
    shuffled = random.Random(1).sample(ids, len(ids))
    assert {shuffled[i] for i in split_rows(shuffled, "test")} == {ids[i] for i in test}


@pytest.mark.slow
def test_retrieval_report_both_directions_with_random_baseline(flickr):
    report = retrieval(flickr.collection, "all", candidates=100)
    assert report["images"] == 300 and report["captions"] == 1500 and report["candidates"] == 100
    for direction in ("t2i", "i2t"):
        r, rnd = report[direction], report["random"][direction]
        assert r["R@1"] <= r["R@5"] <= r["R@10"] and 0 < r["MRR"] < 1 and 0 < r["NDCG@10"] < 1
        assert r["MRR"] > 2 * rnd["MRR"] and r["R@1"] > 3 * rnd["R@1"], (direction, r, rnd)
    # measured with random scores, within 3 standard deviations of the exact chance levels:
    assert report["random"]["t2i"]["R@10"] == pytest.approx(10, abs=3)  # K/C, 1,500 queries
    # image->text: 5 relevant captions among 100 candidates: P(any in top 10) = 1 - C(95,10)/C(100,10)
    chance = 100 * (1 - np.prod([(95 - i) / (100 - i) for i in range(10)]))
    assert report["random"]["i2t"]["R@10"] == pytest.approx(chance, abs=9)  # 300 queries


@pytest.mark.slow
def test_sweeps_json_csv_and_plots(flickr, tmp_path):
    report = retrieval(flickr.collection, "test", sweep=True)
    json.dumps(report)  # serialisable as is
    fp32 = {p["candidates"]: p for p in report["pools"] if p["precision"] == "fp32"}
    int8 = {p["candidates"]: p for p in report["pools"] if p["precision"] == "int8"}
    assert sorted(fp32) == [10, 25, 50, 100, 200]
    assert fp32[10]["t2i"]["R@10"] == 100  # the ground truth is always among the 10 candidates
    assert fp32[25]["t2i"]["R@10"] >= fp32[100]["t2i"]["R@10"] >= fp32[200]["t2i"]["R@10"]  # fewer, easier
    assert abs(int8[200]["t2i"]["R@10"] - fp32[200]["t2i"]["R@10"]) <= 2
    assert [d["dims"] for d in report["dims"]] == [32, 64, 128, 256, 384]
    assert report["dims"][-1]["t2i"] == report["t2i"]
    exact = report["annoy"][0]
    assert exact["index"] == "exact" and exact["R@10"] == report["t2i"]["R@10"]
    assert len(report["annoy"]) == 10 and all(a["ms_per_query"] > 0 for a in report["annoy"])
    write_csv(report, tmp_path / "r.csv")
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert {r["section"] for r in rows} == {"main", "pools", "dims", "annoy"}
    for path in plot(report, tmp_path / "plots"):
        assert path.suffix == ".png" and path.stat().st_size > 10_000


def test_directions_on_identical_embeddings_are_perfect():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(50, 16)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    owner = np.repeat(np.arange(50), 2)
    r = directions(Pairs(images, images[owner], owner))
    assert r["t2i"]["R@1"] == 100 and r["i2t"]["R@1"] == 100 and r["i2t"]["NDCG@10"] == pytest.approx(1)


def test_equal_scores_earn_nothing():
    """A model that gives every image the same embedding ranks the right one at random."""
    images = np.ones((200, 16), np.float32) / 4
    owner = np.repeat(np.arange(200), 5)
    r = directions(Pairs(images, images[owner], owner))
    assert r["t2i"]["R@1"] < 2 and r["t2i"]["R@10"] < 10  # chance: 0.5 % and 5 %


def test_metrics_agree_with_torchmetrics():
    """The same rankings scored by Mosaic and by torchmetrics' retrieval metrics (a reference
    implementation): hit rate at K, MRR and NDCG@10 agree to 1e-6."""
    import torch
    from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR, RetrievalNormalizedDCG

    rng = np.random.default_rng(0)
    queries, candidates = 60, 40
    scores = rng.random((queries, candidates))  # continuous: no ties, whose order the two may break apart
    relevant = [rng.choice(candidates, size=rng.integers(1, 6), replace=False) for _ in range(queries)]
    ours = metrics(relevant_ranks(scores, relevant, None, rng))
    target = np.zeros_like(scores, bool)
    for q, rel in enumerate(relevant):
        target[q, rel] = True
    args = (torch.tensor(scores).flatten(), torch.tensor(target).flatten())
    indexes = torch.arange(queries).repeat_interleave(candidates)
    reference = {f"R@{k}": 100 * RetrievalHitRate(top_k=k)(*args, indexes=indexes).item() for k in KS}
    reference["MRR"] = RetrievalMRR()(*args, indexes=indexes).item()
    reference["NDCG@10"] = RetrievalNormalizedDCG(top_k=10)(*args, indexes=indexes).item()
    assert ours.keys() == reference.keys()
    for name, value in ours.items():
        assert value == pytest.approx(reference[name], abs=1e-6), name


def test_paired_bootstrap_tells_chance_from_a_real_difference():
    from mosaic.evaluate import paired_bootstrap

    rng = np.random.default_rng(1)
    a = rng.random(500) < 0.5
    assert paired_bootstrap(a, a) == 1.0  # the same results
    assert paired_bootstrap(a, rng.permutation(a)) > 0.05  # the same rate, other queries
    assert paired_bootstrap(np.ones(500), a) < 0.001  # every query better
