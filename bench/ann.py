"""Approximate search: Annoy (as Mosaic builds it) beside tuned graph indexes, FAISS HNSW and usearch,
as recall@10 vs queries/s curves, with build time and memory, on two sets of vectors:

- synthetic: `--items` 512-d embedding-like vectors (bench/synthetic.py: a 32-d latent, Zipf
  cluster sizes, a random linear map, noise); 500 held-out queries drawn the same way;
- real: the offline `lite` model's 384-d embeddings of every sample text and Flickr8k photo
  (bench/synthetic.py `real_embeddings`), 500 of them held out as queries.

Both sets' statistics (nearest-neighbour cosines, random-pair cosine, components for 90% of the
variance) are printed side by side. Methods: Annoy, 50 trees, search_k swept; FAISS HNSW, M 16 and
32, efConstruction 200, efSearch swept; Mosaic's own graph as a build writes it (M 32, one thread,
efSearch tuned on vectors held back while it is built, see mosaic/index/hnsw_index.py), one point; usearch f32 and i8 (M 16),
expansion_add 200, expansion_search swept; exact fp32 as the baseline. Graphs are built on all threads, Annoy on
one (as Mosaic builds it: the same trees every build); every query runs alone on one thread; the
methods' settings are timed interleaved, repetition by repetition, each timed pass after an untimed one
over the same queries (the caches then hold the index timed, as on a server with that index alone), and
the median q/s kept. Prints
for each method its best q/s at recall@10 >= 0.95 and that as a ratio to the best peer's (a graph
index other than Mosaic's own).
Writes JSON and a plot per set.

    python bench/ann.py [--items 100000] [--real-items N] [--json bench/results/ann.json]
"""
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import faiss
import matplotlib
import numpy as np
import torch
import usearch
from synthetic import clustered, real_embeddings, recall, statistics
from usearch.index import Index

from mosaic.index import AnnoyIndex, ExactIndex, HnswIndex, build_annoy
from mosaic.index import build_hnsw as mosaic_hnsw
from mosaic.util import save_figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EFFORTS = (16, 32, 64, 128, 256, 512)
SEARCH_K = (1_000, 3_000, 10_000, 30_000, 100_000)
TARGET = 0.95


def build_hnsw(vectors: np.ndarray, m: int, ef_construction: int):
    index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(vectors)

    def search(ef):
        params = faiss.SearchParametersHNSW(efSearch=ef)
        return lambda q: index.search(q, 10, params=params)[1]
    return search, faiss.serialize_index(index).nbytes, index


def build_usearch(vectors: np.ndarray, dtype: str, m: int, ef_construction: int):
    index = Index(ndim=vectors.shape[1], metric="ip" if dtype == "f32" else "cos", dtype=dtype,
                  connectivity=m, expansion_add=ef_construction)
    index.add(np.arange(len(vectors)), vectors, threads=os.cpu_count())

    def search(ef):
        def run(q):
            index.expansion_search = ef
            return index.search(q, 10, threads=1).keys.reshape(len(q), -1)
        return run
    return search, index.serialized_length, index


def build_annoy_search(vectors: np.ndarray, folder: Path):
    build_annoy(vectors, folder / "x.ann")
    indexes = {k: AnnoyIndex(folder / "x.ann", vectors.shape[1], search_k=k) for k in SEARCH_K}
    return (lambda k: lambda q: indexes[k].search(q, 10)[1]), (folder / "x.ann").stat().st_size, indexes


def methods(args, folder: Path) -> list:
    """(name, efforts, builder) of every method, the builder returning (search(effort), bytes, keep-alive)."""
    def exact_fp32(v):
        index = ExactIndex(v, device="cpu")
        return (lambda _: lambda q: index.search(q, 10)[1]), index.nbytes, index
    def mosaic_default(v):
        mosaic_hnsw(v, folder / "m.hnsw")
        index = HnswIndex(folder / "m.hnsw")
        return (lambda _: lambda q: index.search(q, 10)[1]), (folder / "m.hnsw").stat().st_size, index
    out = [("exact fp32", (None,), exact_fp32), ("annoy 50 trees", SEARCH_K, lambda v: build_annoy_search(v, folder)),
           ("mosaic default", (None,), mosaic_default)]
    out += [(f"faiss hnsw M{m}", EFFORTS, lambda v, m=m: build_hnsw(v, m, args.ef_construction)) for m in (16, 32)]
    out += [(f"usearch {dtype} M16", EFFORTS, lambda v, d=dtype: build_usearch(v, d, 16, args.ef_construction))
            for dtype in ("f32", "i8")]
    return out


def curves(vectors: np.ndarray, queries: np.ndarray, args, folder: Path) -> list[dict]:
    faiss.omp_set_num_threads(os.cpu_count())
    torch.set_num_threads(os.cpu_count())
    reference = ExactIndex(vectors, device="cpu").search(queries, 10)[1]
    built = []
    for name, efforts, builder in methods(args, folder):
        t = time.perf_counter()
        search, nbytes, keep = builder(vectors)
        build_s = time.perf_counter() - t
        if isinstance(keep, HnswIndex):  # Mosaic's graph: the efSearch its build chose
            efforts = (keep.expansion_search,)
        print(f"  {name}: built in {build_s:.1f} s, {nbytes / 2**20:.1f} MB", flush=True)
        built.append((name, efforts, search, build_s, nbytes, keep))
    faiss.omp_set_num_threads(1)  # every query alone on one thread
    torch.set_num_threads(1)
    points = [(name, e, search(e), build_s, nbytes) for name, efforts, search, build_s, nbytes, _ in built for e in efforts]
    rates = {i: [] for i in range(len(points))}
    found = {}
    for _ in range(args.repeats):  # interleaved: every setting once per repetition
        for i, (_, _, run, _, _) in enumerate(points):
            for q in queries:  # untimed: the caches hold this index, as they would on a server with only it
                run(q[None])
            t = time.perf_counter()
            found[i] = np.concatenate([run(q[None]) for q in queries])
            rates[i].append(len(queries) / (time.perf_counter() - t))
    faiss.omp_set_num_threads(os.cpu_count())
    torch.set_num_threads(os.cpu_count())
    return [{"method": name, "effort": effort, "queries_per_s": round(float(np.median(rates[i])), 1),
             "recall_at_10": round(recall(found[i], reference), 4), "build_s": round(build_s, 1),
             "memory_mb": round(nbytes / 2**20, 1)} for i, (name, effort, _, build_s, nbytes) in enumerate(points)]


def summary(rows: list[dict]) -> dict:
    """Each method's best q/s at recall@10 >= TARGET, and its ratio to the best peer of Annoy's."""
    best = {}
    for r in rows:
        if r["recall_at_10"] >= TARGET and r["queries_per_s"] > best.get(r["method"], {}).get("queries_per_s", 0):
            best[r["method"]] = r
    graphs = [r for m, r in best.items() if not m.startswith(("annoy", "exact", "mosaic"))]
    top = max(graphs, key=lambda r: r["queries_per_s"]) if graphs else None
    return {m: {**r, "vs_best_graph": round(r["queries_per_s"] / top["queries_per_s"], 3) if top else None}
            for m, r in best.items()}


def plot(rows: list[dict], title: str, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        ax.plot([r["queries_per_s"] for r in sel], [r["recall_at_10"] for r in sel], "*" if len(sel) == 1 else "o-",
                label=method, ms=4)
    ax.set(xscale="log", xlabel="single queries / s, one thread (log)", ylabel="recall@10 vs exact fp32", title=title)
    ax.axhline(TARGET, color="grey", lw=0.5)
    ax.legend(fontsize=7)
    return Path(os.path.relpath(save_figure(fig, path), ROOT)).as_posix()


def run_set(name: str, vectors: np.ndarray, queries: np.ndarray, args, folder: Path) -> dict:
    print(f"{name}: {len(vectors):,} x {vectors.shape[1]} vectors, {len(queries)} held-out queries", flush=True)
    rows = curves(vectors, queries, args, folder)
    for r in rows:
        print(f"  {r['method']:<16} effort {str(r['effort']):>7}: {r['queries_per_s']:9.1f} q/s  "
              f"recall@10 {r['recall_at_10']:.4f}")
    best = summary(rows)
    for method, r in best.items():
        print(f"  best at recall@10 >= {TARGET}: {method:<16} {r['queries_per_s']:9.1f} q/s (effort {r['effort']}, "
              f"recall {r['recall_at_10']:.4f}) = {r['vs_best_graph']} x the best peer")
    title = f"{name}: {len(vectors):,} x {vectors.shape[1]}-d"
    return {"items": len(vectors), "dim": vectors.shape[1], "queries": len(queries), "results": rows,
            "best_at_target": best, "plot": plot(rows, title, args.json.parent / "plots" / f"ann_{name}.png")}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sets", nargs="+", default=["synthetic", "real"], choices=["synthetic", "real"])
    p.add_argument("--real-items", type=int, help="base vectors of the real set (default: all but the queries)")
    p.add_argument("--real-cache", type=Path, default=Path(tempfile.gettempdir()) / "mosaic-bench" / "real_lite.npy")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "ann.json")
    args = p.parse_args()
    sets = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            if name == "synthetic":
                vectors, queries = clustered(args.items, args.queries)
            else:
                vectors = real_embeddings(args.real_cache)[:args.real_items + args.queries if args.real_items else None]
                vectors, queries = vectors[:-args.queries], vectors[-args.queries:]
            sets[name] = {**run_set(name, vectors, queries, args, Path(tmp)), "statistics": statistics(vectors, queries)}
    for name, s in sets.items():
        print(f"{name:>9}: {s['statistics']}")
    result = {"threads_build": os.cpu_count(), "threads_query": 1, "ef_construction": args.ef_construction,
              "target_recall": TARGET, "versions": {"faiss": faiss.__version__, "usearch": usearch.__version__},
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "sets": sets}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
