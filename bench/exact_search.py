"""Exact search: Mosaic's fp32/int8/int4 indexes beside FAISS's flat and scalar-quantized ones, on
the same embedding-like 512-d unit vectors (bench/synthetic.py), in the same run, on the same threads.

Pairs at the same precision:
- fp32: Mosaic fp32 vs FAISS IndexFlatIP;
- int8, reranked: Mosaic int8 (4 x k candidates rescored against the fp32 vectors) vs FAISS
  IndexScalarQuantizer 8-bit refined by IndexRefine over the flat index (k_factor 4; the refine
  step's fp32 vectors are in memory, Mosaic's memory-mapped: both counted in memory only for FAISS);
- int8, raw: Mosaic int8 without rerank vs FAISS 8-bit without refine;
- int4, reranked: Mosaic int4 vs FAISS 4-bit refined the same way.
Each method is timed batched (`--batch` queries per call) and with single queries, the methods
interleaved repetition by repetition; medians. torch and FAISS each bring an OpenMP runtime: their
idle threads wait passively (OMP_WAIT_POLICY), so neither spins against the other's. Prints
queries/s and Mosaic's q/s as a ratio to its FAISS peer's, and recall@10 against exact fp32;
writes JSON.

    python bench/exact_search.py [--sizes 100000 1000000] [--json bench/results/exact_search.json]
"""
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch and FAISS start their thread pools
import faiss
import numpy as np
import torch
from synthetic import clustered, recall

from mosaic.index import ExactIndex

ROOT = Path(__file__).resolve().parents[1]
PEERS = {"fp32": "faiss_flat", "int8": "faiss_sq8_refine", "int8_raw": "faiss_sq8", "int4": "faiss_sq4_refine"}


def faiss_indexes(vectors: np.ndarray) -> dict:
    """Flat, 8-bit (raw and refined) and 4-bit (refined) FAISS indexes: (search, bytes, keep-alive).
    The flat index multiplies batches with BLAS (by default only from 128,000 queries on)."""
    faiss.cvar.distance_compute_blas_threshold = 20
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    out = {"faiss_flat": (flat.search, vectors.nbytes, flat)}
    for bits, kind in ((8, faiss.ScalarQuantizer.QT_8bit), (4, faiss.ScalarQuantizer.QT_4bit)):
        sq = faiss.IndexScalarQuantizer(vectors.shape[1], kind, faiss.METRIC_INNER_PRODUCT)
        sq.train(vectors[:200_000])
        sq.add(vectors)
        refine = faiss.IndexRefine(sq, flat)  # rescoring against the flat index's vectors: no second copy
        refine.k_factor = 4  # as Mosaic reranks 4 x k
        codes = sq.sa_code_size() * sq.ntotal
        if bits == 8:
            out["faiss_sq8"] = (sq.search, codes, sq)
        out[f"faiss_sq{bits}_refine"] = (refine.search, codes + vectors.nbytes, (sq, refine))
    return out


def mosaic_indexes(on_disk: np.ndarray) -> dict:
    indexes = {"int8_raw": ExactIndex(on_disk, "int8", device="cpu", rerank=1)}
    indexes.update({p: ExactIndex(on_disk, p, device="cpu") for p in ("fp32", "int8", "int4")})
    return {name: (index.search, index.nbytes, index) for name, index in indexes.items()}


def timed(methods: dict, queries: np.ndarray, repeats: int, single: int) -> dict:
    """Median seconds per batched call and per single query of each method, interleaved."""
    times = {name: {"batch": [], "single": []} for name in methods}
    for search, _, _ in methods.values():  # warm-up
        search(queries[:1], 10)
    for _ in range(repeats):
        for name, (search, _, _) in methods.items():
            t = time.perf_counter()
            search(queries, 10)
            times[name]["batch"].append(time.perf_counter() - t)
            for q in queries[:single]:
                t = time.perf_counter()
                search(q[None], 10)
                times[name]["single"].append(time.perf_counter() - t)
    return {name: {kind: float(np.median(v)) for kind, v in t.items()} for name, t in times.items()}


def run_size(n: int, args, tmp: Path) -> list[dict]:
    vectors, queries = clustered(n, args.batch)
    np.save(tmp / "vectors.npy", vectors)
    methods = faiss_indexes(vectors)
    del vectors
    on_disk = np.load(tmp / "vectors.npy", mmap_mode="r")  # as a collection's embeddings
    methods.update(mosaic_indexes(on_disk))
    times = timed(methods, queries, args.repeats, args.single)
    reference = methods["fp32"][0](queries, 10)[1]
    rows = []
    for name, (search, nbytes, _) in methods.items():
        row = {"items": n, "method": name if name.startswith("faiss") else f"mosaic_{name}",
               "batch_queries_per_s": round(args.batch / times[name]["batch"], 1),
               "single_query_ms": round(times[name]["single"] * 1e3, 3),
               "recall_at_10_vs_fp32": round(recall(search(queries, 10)[1], reference), 4),
               "memory_mb": round(nbytes / 2**20, 1)}
        if name in PEERS:
            peer = times[PEERS[name]]
            row.update(peer=PEERS[name], batch_speed_vs_peer=round(peer["batch"] / times[name]["batch"], 2),
                       single_speed_vs_peer=round(peer["single"] / times[name]["single"], 2))
        rows.append(row)
        print(f"{n:>8} {row['method']:<18} batched {row['batch_queries_per_s']:9.1f} q/s, single "
              f"{row['single_query_ms']:8.2f} ms, recall@10 {row['recall_at_10_vs_fp32']:.4f}, {row['memory_mb']:8.1f} MB"
              + (f"  | vs {row['peer']}: batched {row['batch_speed_vs_peer']:.2f}x, single {row['single_speed_vs_peer']:.2f}x"
                 if "peer" in row else ""))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--batch", type=int, default=256, help="queries per batched search")
    p.add_argument("--single", type=int, default=20, help="single queries timed one by one per repetition")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "exact_search.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        results = [row for n in args.sizes for row in run_size(n, args, Path(tmp))]
    result = {"threads": args.threads, "dim": 512, "batch": args.batch, "repeats": args.repeats,
              "faiss": faiss.__version__, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
