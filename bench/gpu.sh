#!/usr/bin/env bash
# The GPU benchmarks in one run (about 8 minutes on one GPU with 16 cores), written to one JSON file:
#  - exact search on CUDA, fp16 and int8 against fp32, at 1M and 10M vectors (bench/gpu_search.py);
#  - the build with a random-weight open_clip ViT-B-32 fed by every core, against that model alone
#    on tensors decoded beforehand (bench/gpu_build.py);
#  - the feeding ceiling: the build with a model that costs nothing, with 1, 2, 4, ... all cores
#    reading, as a ratio to perfect scaling (bench/feeding.py).
# Needs the project's environment (.venv, or $PYTHON) and the sample data (../shared/data or $MOSAIC_DATA).
#
#   bench/gpu.sh              the full sizes; writes bench/results/gpu.json
#   bench/gpu.sh --dry-run    tiny sizes, on the CPU when there is no GPU; prints the JSON, keeps no file
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
cores=$(nproc)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if [[ "${1:-}" == "--dry-run" ]]; then
  sizes="5000 10000"; images=32; limit=40; large=8; workers="1 2"; json=$out/gpu.json
else
  sizes="1000000 10000000"; images=10000; limit=1000; large=200; json=bench/results/gpu.json
  workers=$(w=1; while ((w < cores)); do echo -n "$w "; w=$((w * 2)); done; echo "$cores")
fi
start=$SECONDS
"$PY" bench/gpu_search.py --sizes $sizes --json "$out/search.json"
"$PY" bench/gpu_build.py --images "$images" --json "$out/build.json"
"$PY" bench/feeding.py --limit "$limit" --large "$large" --rounds 1 --workers $workers --json "$out/feeding.json"
"$PY" - "$out" "$json" "$((SECONDS - start))" <<'PY'
import json, sys
from pathlib import Path
out, target, seconds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
parts = {name: json.loads((out / f"{name}.json").read_text()) for name in ("search", "build", "feeding")}
target.write_text(json.dumps({"seconds": seconds, **parts}, indent=2) + "\n")
print(target.read_text() if target.parent == out else f"wrote {target} ({seconds} s)")
PY
