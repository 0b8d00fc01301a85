"""Peak memory (RSS) of serving a large collection: a fresh process loads the search service over a
synthetic collection (bench/query_latency.py's: 384-d embedding-like vectors for images, one
caption per item and omni, real tag scores), answers 20 text queries, and reports its peak RSS
(getrusage). With the default index choice: above 200k items, candidates from the HNSW graphs
(memory-mapped) rescored by the exact indexes (in memory, at the given precision).

The graph is built as bench/query_latency.py builds it (expansion_add 32 rather than 200, to spare
time): the file, hence what memory-mapping it costs, has the same size and layout.

    python bench/serve_memory.py [--items 1000000] [--json bench/results/serve_memory.json]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from query_latency import QUERIES, synthetic_collection

from mosaic.models import load_encoder
from mosaic.stages import Vocabulary

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import resource, sys, time
from mosaic.search import SearchService
t = time.perf_counter()
service = SearchService(sys.argv[1], precision=sys.argv[2])
load_s = time.perf_counter() - t
for q in QUERIES:
    service.text_to_image(q, k=10)
print(len(service.ann), round(load_s, 1), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "serve_memory.json")
    args = p.parse_args()
    encoder = load_encoder("lite")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = synthetic_collection(Path(tmp) / "synthetic", args.items, encoder, Vocabulary.load("photos"))
        files = {f.name: round(f.stat().st_size / 2**20, 1) for f in folder.rglob("*") if f.is_file()}
        code = f"QUERIES = {QUERIES!r}\n{CHILD}"
        for precision in args.precisions:
            out = subprocess.run([sys.executable, "-c", code, str(folder), precision], capture_output=True, text=True,
                                 check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
            graphs, load_s, peak_kb = out.stdout.split()[-3:]
            rows.append({"items": args.items, "precision": precision, "approximate_indexes": int(graphs),
                         "load_s": float(load_s), "peak_rss_mb": round(int(peak_kb) / 1024, 1)})
            print(f"{args.items:,} items, exact indexes in {precision}: peak RSS {rows[-1]['peak_rss_mb']:,.0f} MB "
                  f"(loaded in {load_s} s; {graphs} HNSW graphs)")
    result = {"dim": encoder.dim, "files_mb": files, "cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "results": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
