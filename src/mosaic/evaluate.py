"""Retrieval quality, with a collection's human captions as ground truth, in both directions.

- text->image: each human caption is a query; its image is the one relevant item.
- image->text: each image is a query; its human captions are relevant (a hit when any ranks
  within K; MRR from the first; NDCG@10 with all of them).

Metrics are Recall@1/5/10 (%), MRR and NDCG@10, over the full gallery or over candidate pools of
C items per query (C-|relevant| seeded random distractors + the relevant ones), each with a
random-scoring row measured the same way. Sweeps: pool size x storage precision (on really
quantized vectors, through ExactIndex), embedding size (PCA fitted on the train split), and Annoy
settings against exact search with their latency.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .collection import Collection
from .errors import CollectionError, UsageError
from .index import AnnoyIndex, ExactIndex, build_annoy
from .index.exact import PRECISIONS
from .util import save_figure

KS = (1, 5, 10)
METRICS = [f"R@{k}" for k in KS] + ["MRR", "NDCG@10"]
TEST_IMAGES = 200


def split_rows(ids: list[str], split: str, test_images: int = TEST_IMAGES) -> np.ndarray:
    """The fixed split by image: the `test_images` items whose ids have the smallest SHA-1 are
    the test split, the rest train. It depends on ids only, not on order or on a seed."""
    if split == "all":
        return np.arange(len(ids))
    if split not in ("train", "test"):
        raise UsageError(f"Unknown split '{split}'. Use all, train or test.")
    order = sorted(range(len(ids)), key=lambda i: hashlib.sha1(ids[i].encode()).hexdigest())
    return np.sort(np.asarray(order[:test_images] if split == "test" else order[test_images:], np.int64))


@dataclass
class Pairs:
    """Embeddings of the images and human captions of a split, and who belongs to whom."""

    images: np.ndarray  # (n_images, d)
    texts: np.ndarray  # (n_captions, d)
    owner: np.ndarray  # (n_captions,) image index (into `images`) of each caption

    @classmethod
    def of_items(cls, images, texts, owner: np.ndarray, rows: np.ndarray) -> Pairs:
        """The items `rows` of all `images`, and those of all `texts` whose `owner` item is one
        of them (owners renumbered to positions in `rows`)."""
        keep = np.flatnonzero(np.isin(owner, rows))
        position = np.full(len(images), -1)
        position[rows] = np.arange(len(rows))
        return cls(np.asarray(images[rows]), np.asarray(texts[keep]), position[owner[keep]])

    @classmethod
    def from_collection(cls, c: Collection, split: str = "all") -> Pairs:
        human = c.human_captions
        pairs = cls.of_items(c.image_emb, c.text_emb[human], c.caption_items[human], split_rows(c.ids(), split))
        if not len(pairs.texts):
            raise CollectionError(f"Collection '{c.name}' has no human captions to evaluate with.")
        return pairs


def relevant_ranks(scores: np.ndarray, relevant: list[np.ndarray], pool: int | None,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """1-based ranks of each query's relevant items among its candidates (all gallery items, or
    the relevant ones plus pool-|relevant| random others). Equal scores are ordered at random (a
    jitter far below float32's resolution), so a model earns nothing by giving many items one score."""
    out = []
    n = scores.shape[1]
    jitter = np.random.default_rng(0)
    for s, rel in zip(scores, relevant):
        s = s.astype(np.float64) + jitter.random(n) * 1e-12
        if pool is not None and pool < n:
            drawn = rng.choice(n, min(n, pool + len(rel)), replace=False)
            others = drawn[~np.isin(drawn, rel)][:pool - len(rel)]
            s = s[np.concatenate([rel, others])]
            rel_scores = s[:len(rel)]
        else:
            rel_scores = s[rel]
        ranks = np.sort(1 + (s[None, :] > rel_scores[:, None]).sum(1))
        steps = np.arange(len(ranks))  # tied relevant items take consecutive places
        out.append(np.maximum.accumulate(ranks - steps) + steps)
    return out


def metrics(ranks: list[np.ndarray]) -> dict[str, float]:
    """R@K (% of queries with a relevant item in the top K), MRR and NDCG@10 (binary relevance)
    of each query's 1-based relevant ranks."""
    first = np.array([r[0] for r in ranks])
    out = {f"R@{k}": 100 * float((first <= k).mean()) for k in KS}
    out["MRR"] = float((1 / first).mean())
    ndcg = [sum(1 / np.log2(r[r <= 10] + 1)) / sum(1 / np.log2(np.arange(2, min(len(r), 10) + 2))) for r in ranks]
    out["NDCG@10"] = float(np.mean(ndcg))
    return out


def summarize(ranks: list[np.ndarray]) -> dict:
    """`metrics`, rounded for reports (recalls to 0.01 %, the others to 4 decimals)."""
    return {name: round(v, 2 if name.startswith("R@") else 4) for name, v in metrics(ranks).items()}


def _queries(pairs: Pairs) -> list[tuple]:
    """(direction, queries, gallery, each query's relevant gallery rows), text->image and image->text."""
    captions_of = [np.flatnonzero(pairs.owner == i) for i in range(len(pairs.images))]
    return [("t2i", pairs.texts, pairs.images, [np.array([o]) for o in pairs.owner]),
            ("i2t", pairs.images, pairs.texts, captions_of)]


def first_ranks(pairs: Pairs) -> dict[str, np.ndarray]:
    """Each query's rank of its first relevant item, text->image and image->text (all items as
    candidates, fp32): what `paired_bootstrap` compares between two models on the same queries."""
    out = {}
    for name, queries, gallery, relevant in _queries(pairs):
        scores = ExactIndex(gallery, "fp32", device="cpu").scores(queries)
        out[name] = np.array([r[0] for r in relevant_ranks(scores, relevant, None, np.random.default_rng(0))])
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value that two models' per-query results on the same queries (hits at K, as
    0/1) differ only by chance: the share of resamples of the queries whose mean difference falls
    on the other side of zero, doubled."""
    d = np.asarray(a, float) - np.asarray(b, float)
    means = d[np.random.default_rng(seed).integers(0, len(d), (samples, len(d)))].mean(1)
    return float(min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean())))


def directions(pairs: Pairs, pool: int | None = None, precision: str = "fp32", seed: int = 0,
               random_scores: bool = False) -> dict:
    """Metrics of text->image and image->text (with random scores instead, for the baseline)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, queries, gallery, relevant in _queries(pairs):
        if random_scores:
            scores = rng.random((len(queries), len(gallery)), dtype=np.float32)
        else:
            scores = ExactIndex(gallery, precision, device="cpu").scores(queries)
        out[name] = summarize(relevant_ranks(scores, relevant, pool, rng))
    return out


def pca_project(pairs: Pairs, fit: Pairs, dims: int) -> Pairs:
    """Both sides projected on the top `dims` principal axes of the `fit` embeddings, renormalised."""
    x = np.concatenate([fit.images, fit.texts])
    mean = x.mean(0)
    axes = np.linalg.svd(x - mean, full_matrices=False)[2][:dims].T

    def project(v: np.ndarray) -> np.ndarray:
        p = (v - mean) @ axes
        return (p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return Pairs(project(pairs.images), project(pairs.texts), pairs.owner)


def annoy_sweep(pairs: Pairs, folder: Path, trees=(5, 20, 50), search_ks=(50, 500, 5000)) -> list[dict]:
    """text->image R@10 and time per query of Annoy settings and of exact search."""
    queries, truth = pairs.texts, pairs.owner
    exact = ExactIndex(pairs.images, device="cpu")
    rows = []

    def measure(search) -> tuple[float, float]:
        start, hits = time.perf_counter(), 0
        for q, t in zip(queries, truth):
            hits += t in search(q[None])[1][0]
        return round(100 * hits / len(queries), 2), round(1000 * (time.perf_counter() - start) / len(queries), 3)

    r10, ms = measure(lambda q: exact.search(q, 10))
    rows.append({"index": "exact", "n_trees": None, "search_k": None, "R@10": r10, "ms_per_query": ms})
    for n_trees in trees:
        path = folder / f"eval_{n_trees}.ann"
        build_annoy(pairs.images, path, n_trees)
        for search_k in search_ks:
            index = AnnoyIndex(path, pairs.images.shape[1], search_k=search_k)
            r10, ms = measure(lambda q: index.search(q, 10))
            rows.append({"index": "annoy", "n_trees": n_trees, "search_k": search_k, "R@10": r10, "ms_per_query": ms})
        path.unlink()
    return rows


def retrieval(c: Collection, split: str = "all", candidates: int | None = None, sweep: bool = False,
              pools=(10, 25, 50, 100, 200, 500, 1000), dims=(32, 64, 128, 256), seed: int = 0) -> dict:
    """The report of `mosaic eval retrieval` (its JSON schema is in the README)."""
    pairs = Pairs.from_collection(c, split)
    out = {"collection": c.name, "model": c.manifest.models["encoder"], "split": split,
           "images": len(pairs.images), "captions": len(pairs.texts),
           "candidates": min(candidates or len(pairs.images), len(pairs.images)),
           **directions(pairs, candidates, seed=seed),
           "random": directions(pairs, candidates, seed=seed, random_scores=True)}
    if not sweep:
        return out
    sizes = sorted({p for p in pools if p < len(pairs.images)} | {len(pairs.images)})
    out["pools"] = [{"candidates": size, "precision": precision, **directions(pairs, size, precision, seed)}
                    for precision in PRECISIONS for size in sizes]
    out["pools"] += [{"candidates": size, "precision": "random", **directions(pairs, size, seed=seed, random_scores=True)}
                     for size in sizes]
    fit = Pairs.from_collection(c, "train")
    full = pairs.images.shape[1]
    out["dims"] = [{"dims": d, **directions(pca_project(pairs, fit, d) if d < full else pairs, candidates, seed=seed)}
                   for d in sorted({d for d in dims if d < full} | {full})]
    out["annoy"] = annoy_sweep(pairs, c.path)
    return out


def write_csv(report: dict, path: Path) -> None:
    """One row per measured setting: section, direction, candidates, precision, dims, metrics."""
    import csv

    rows = []
    for direction in ("t2i", "i2t"):
        rows.append({"section": "main", "direction": direction, "candidates": report["candidates"],
                     "precision": "fp32", **report[direction]})
        rows.append({"section": "main", "direction": direction, "candidates": report["candidates"],
                     "precision": "random", **report["random"][direction]})
        for p in report.get("pools", []):
            rows.append({"section": "pools", "direction": direction, "candidates": p["candidates"],
                         "precision": p["precision"], **p[direction]})
        for d in report.get("dims", []):
            rows.append({"section": "dims", "direction": direction, "candidates": report["candidates"],
                         "precision": "fp32", "dims": d["dims"], **d[direction]})
    for a in report.get("annoy", []):
        rows.append({"section": "annoy", "direction": "t2i", "candidates": report["images"], "precision": "fp32",
                     "index": a["index"], "n_trees": a["n_trees"], "search_k": a["search_k"], "R@10": a["R@10"],
                     "ms_per_query": a["ms_per_query"]})
    fields = ["section", "direction", "candidates", "precision", "dims", "index", "n_trees", "search_k",
              *METRICS, "ms_per_query"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)


def plot(report: dict, folder: Path) -> list[Path]:
    """PNG plots of a sweep: recall vs candidates per precision, recall vs dims, recall vs latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    title = f"{report['collection']}, {report['split']} split ({report['images']} images)"
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, direction in zip(axes, ("t2i", "i2t")):
        for precision in [*PRECISIONS, "random"]:
            pts = [(p["candidates"], p[direction]["R@10"]) for p in report["pools"] if p["precision"] == precision]
            ax.plot(*zip(*pts), marker="o", label=precision, linestyle="--" if precision == "random" else "-")
        ax.set(xscale="log", xlabel="candidates per query", title=f"{direction} R@10", ylabel="R@10 (%)")
        ax.legend()
    fig.suptitle(title)
    paths.append(save_figure(fig, folder / "recall_vs_candidates.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for direction in ("t2i", "i2t"):
        for k in (1, 10):
            ax.plot([d["dims"] for d in report["dims"]], [d[direction][f"R@{k}"] for d in report["dims"]],
                    marker="o", label=f"{direction} R@{k}")
    ax.set(xscale="log", xlabel="embedding dims (PCA on the train split)", ylabel="recall (%)",
           title=f"{title}\n{report['candidates']} candidates")
    ax.legend()
    paths.append(save_figure(fig, folder / "recall_vs_dims.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    for a in report["annoy"]:
        label = "exact" if a["index"] == "exact" else f"Annoy {a['n_trees']} trees, search_k {a['search_k']}"
        ax.scatter(a["ms_per_query"], a["R@10"], marker="*" if a["index"] == "exact" else "o", s=90, label=label)
    ax.set(xscale="log", xlabel="ms per query (one query at a time)", ylabel="t2i R@10 (%)",
           title=f"{title}\nall images as candidates")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    paths.append(save_figure(fig, folder / "recall_vs_latency.png"))
    return paths

