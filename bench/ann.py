"""Approximate search against exact search on the same synthetic clustered 512-d unit vectors
(default 1M): Annoy as Mosaic builds it (50 trees) and FAISS HNSW as a peer.

For each: build time, memory, and recall@10 against exact fp32 with single-query queries/s at
several search-effort settings (Annoy search_k, HNSW efSearch), as a speed-up over exact fp32 and
int8 single-query search measured in the same run. Queries run one at a time on one thread
(Annoy's search is single-threaded); exact search is also timed on all threads, as Mosaic runs
it. Annoy is built as Mosaic builds it (one thread, for the same trees every time); HNSW on all
threads. Writes JSON and a recall/speed plot.

    python bench/ann.py [--items 1000000] [--json bench/results/ann.json]
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
from synthetic import clustered, recall

from mosaic.index import AnnoyIndex, ExactIndex, build_annoy
from mosaic.util import save_figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def single_query_rate(search, queries: np.ndarray) -> tuple[float, np.ndarray]:
    """Queries/s answering one query at a time (after one warm-up pass), and the ids found."""
    search(queries[:20])
    t = time.perf_counter()
    ids = np.concatenate([search(q[None]) for q in queries])
    return len(queries) / (time.perf_counter() - t), ids


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--hnsw-m", type=int, default=16)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "ann.json")
    args = p.parse_args()
    vectors, queries = clustered(args.items, args.queries)
    rows = []

    def add(method, setting, qps, ids, **extra):
        rows.append({"method": method, "setting": setting, "queries_per_s": round(qps, 1),
                     "recall_at_10": round(recall(ids, reference), 4), **extra})
        r = rows[-1]
        print(f"{method:>10} {setting:<18} {r['queries_per_s']:9.1f} q/s  recall@10 {r['recall_at_10']:.4f}")

    threads = torch.get_num_threads()
    reference = ExactIndex(vectors, device="cpu").search(queries, 10)[1]
    for precision in ("fp32", "int8"):
        exact = ExactIndex(vectors, precision, device="cpu")
        for n_threads in (1, threads):
            torch.set_num_threads(n_threads)
            qps, ids = single_query_rate(lambda q: exact.search(q, 10)[1], queries)
            add("exact", f"{precision} {n_threads} thread{'s' * (n_threads > 1)}", qps, ids,
                memory_mb=round(exact.nbytes / 2**20, 1))
    exact_qps = {r["setting"]: r["queries_per_s"] for r in rows}
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        build_annoy(vectors, Path(tmp) / "x.ann")
        build_s = time.perf_counter() - t
        memory = round((Path(tmp) / "x.ann").stat().st_size / 2**20, 1)
        print(f"annoy: built in {build_s:.0f} s, {memory} MB")
        for search_k in (1_000, 3_000, 10_000, 30_000, 100_000):
            index = AnnoyIndex(Path(tmp) / "x.ann", vectors.shape[1], search_k=search_k)
            qps, ids = single_query_rate(lambda q: index.search(q, 10)[1], queries)
            add("annoy", f"search_k={search_k}", qps, ids, build_s=round(build_s, 1), memory_mb=memory)

    faiss.omp_set_num_threads(os.cpu_count())
    hnsw = faiss.IndexHNSWFlat(vectors.shape[1], args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    hnsw.add(vectors)
    build_s = time.perf_counter() - t
    memory = round(faiss.serialize_index(hnsw).nbytes / 2**20, 1)
    print(f"hnsw: built in {build_s:.0f} s, {memory} MB")
    faiss.omp_set_num_threads(1)  # one query at a time on one thread, like the others
    for ef in (16, 32, 64, 128, 256):
        hnsw.hnsw.efSearch = ef
        qps, ids = single_query_rate(lambda q: hnsw.search(q, 10)[1], queries)
        add("hnsw", f"M={args.hnsw_m} ef={ef}", qps, ids, build_s=round(build_s, 1), memory_mb=memory)

    torch.set_num_threads(threads)
    for r in rows:
        for setting, qps in exact_qps.items():
            r[f"speedup_vs_exact_{setting.replace(' ', '_')}"] = round(r["queries_per_s"] / qps, 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in (("annoy", "o-"), ("hnsw", "s-"), ("exact", "*")):
        sel = [r for r in rows if r["method"] == method]
        ax.plot([r["queries_per_s"] for r in sel], [r["recall_at_10"] for r in sel], marker, label=method)
    ax.set(xscale="log", xlabel="single queries / s (log)", ylabel="recall@10 vs exact fp32",
           title=f"{args.items:,} synthetic 512-d vectors")
    ax.axhline(0.95, color="grey", lw=0.5)
    ax.legend()
    plot = save_figure(fig, args.json.parent / "plots" / "ann.png")
    result = {"items": args.items, "dim": 512, "queries": args.queries, "threads": threads,
              "plot": plot.relative_to(ROOT).as_posix(),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "results": rows}
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
