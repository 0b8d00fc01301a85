"""Humor scoring on Humicroedit, as the README reports it: train the offline model (a packaged
MiniLM + LoRA cross-encoder blended with a ridge on TF-IDF and MiniLM embeddings) on train.csv
with early stopping on dev.csv, then evaluate it on dev.csv beside its parts and the two
baselines (the training mean; TF-IDF + ridge).

    python bench/humor_training.py              -> bench/results/humor.json, plots/humor_history.png
    python bench/humor_training.py --members 3  -> bench/results/humor_3members.json, plots/humor_3members_history.png
    python bench/humor_training.py --seed 1     -> bench/results/humor_seed1.json, ...
    python bench/humor_training.py --funlines   -> bench/results/humor_funlines.json, ...
                                                   (the model: artifacts/models/humor)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data")) / "humicroedit"
RESULTS = ROOT / "bench" / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "artifacts" / "models" / "humor")
    p.add_argument("--funlines", action="store_true", help="add FunLines as extra training data")
    p.add_argument("--members", type=int, default=1, help="cross-encoders in the model")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.chdir(ROOT)  # the data paths recorded in the model and the report stay relative
    from mosaic import cli

    data = Path(os.path.relpath(DATA, ROOT))

    if args.out.exists():
        shutil.rmtree(args.out)
    extra = ["--extra", str(data / "train_funlines.csv")] if args.funlines else []
    start = time.time()
    cli.main(["humor", "train", str(data), "--out", str(args.out), "--members", str(args.members),
              "--seed", str(args.seed), "--quiet", *extra])
    minutes = (time.time() - start) / 60
    name = "humor" + ("_funlines" if args.funlines else "") + (f"_{args.members}members" if args.members > 1 else "")
    name += f"_seed{args.seed}" if args.seed else ""
    report_path = RESULTS / f"{name}.json"
    cli.main(["humor", "eval", str(args.out), str(data / "dev.csv"), "--json", str(report_path)])
    report = json.loads(report_path.read_text())
    report["training"]["wall_minutes"] = round(minutes, 1)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "plots").mkdir(parents=True, exist_ok=True)
    shutil.copy(args.out / "history.png", RESULTS / "plots" / f"{name}_history.png")
    r = report["results"]
    print(f"\ntraining took {minutes:.1f} min; dev RMSE ratios: model / train mean "
          f"{r['model']['rmse'] / r['train mean']['rmse']:.3f}, model / tf-idf + ridge "
          f"{r['model']['rmse'] / r['tf-idf + ridge']['rmse']:.3f}")


if __name__ == "__main__":
    main()
