"""Exact search on the GPU (the CPU without one), on synthetic clustered 512-d unit vectors.

For each collection size and precision (fp32 as the reference, fp16, int8 with 40 candidates
reranked against the fp32 vectors), prints batched queries/s, single-query milliseconds and
recall@10 against fp32, and the speed against fp32; writes JSON.

    python bench/gpu_search.py [--sizes 1000000 10000000] [--json bench/results/gpu_search.json]
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from synthetic import clustered, recall

from mosaic.index import ExactIndex
from mosaic.util import default_device

ROOT = Path(__file__).resolve().parents[1]


def best_time(f, device: str, repeats: int = 5) -> float:
    f()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(vectors: np.ndarray, queries: np.ndarray, precision: str, device: str, single: int) -> dict:
    index = ExactIndex(vectors, precision, device=device)
    batch_s = best_time(lambda: index.search(queries, 10), device)
    single_s = float(np.median([best_time(lambda: index.search(q[None], 10), device, 3) for q in queries[:single]]))
    ids = index.search(queries, 10)[1]
    return {"precision": precision, "batch_s": batch_s, "single_s": single_s, "ids": ids, "mb": index.nbytes / 2**20}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--batch", type=int, default=256, help="queries per batched search")
    p.add_argument("--single", type=int, default=10, help="single queries timed one by one")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "gpu_search.json")
    args = p.parse_args()
    device, results = default_device(), []
    for n in args.sizes:
        vectors, queries = clustered(n, args.batch)
        rows = [measure(vectors, queries, precision, device, args.single) for precision in ("fp32", "fp16", "int8")]
        del vectors
        fp32 = rows[0]
        for r in rows:
            out = {"items": n, "precision": r["precision"], "batch_queries_per_s": round(args.batch / r["batch_s"], 1),
                   "batch_speed_vs_fp32": round(fp32["batch_s"] / r["batch_s"], 2),
                   "single_query_ms": round(r["single_s"] * 1e3, 3),
                   "single_speed_vs_fp32": round(fp32["single_s"] / r["single_s"], 2),
                   "recall_at_10_vs_fp32": round(recall(r["ids"], fp32["ids"]), 4), "memory_mb": round(r["mb"], 1)}
            results.append(out)
            print(f"{n:>9} {out['precision']}: batched {out['batch_queries_per_s']:9.1f} q/s "
                  f"({out['batch_speed_vs_fp32']:.2f} x fp32), single {out['single_query_ms']:8.3f} ms "
                  f"({out['single_speed_vs_fp32']:.2f} x fp32), recall@10 {out['recall_at_10_vs_fp32']:.4f}")
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else None
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": device, "gpu": gpu, "dim": 512, "batch": args.batch,
                                     "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
