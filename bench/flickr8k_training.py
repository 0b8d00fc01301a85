"""The Flickr8k training experiment end to end, as the README reports it:

1. build the sample with the zero-shot offline model (lite + labels);
2. train projection heads on its 800 train images (`mosaic train`'s default: three runs, one per
   seed, as one ensemble): with hard-negative mining, and the same schedule without it (control);
3. build the sample again with the trained checkpoint (`--model lite:<checkpoint>`);
4. evaluate on the 200 held-out test images (1,000 captions, 200 candidates): random, zero-shot,
   each training round (the mean of the runs), and the trained collection, with the trained collection's sweeps and plots;
5. the out-of-domain check (scikit-image's 17 bundled photos and their descriptions, and the 30
   WikiArt paintings and their titles): the zero-shot model, the heads alone and the checkpoint's
   mix, side by side.

    python bench/flickr8k_training.py   -> bench/results/flickr8k_training.{json,md}, bench/results/plots/
                                           (collections and checkpoints: artifacts/flickr8k-experiment/)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"


def row(label: str, report: dict) -> str:
    cells = [report["t2i"][m] for m in ("R@1", "R@5", "R@10", "MRR", "NDCG@10")]
    cells += [report["i2t"][m] for m in ("R@1", "R@5", "R@10", "MRR", "NDCG@10")]
    return f"| {label} | " + " | ".join(str(c) for c in cells) + " |"


def out_of_domain(checkpoint: Path) -> list[str]:
    """Table rows: the zero-shot model, the heads alone and the checkpoint's mix on the skimage
    photos (the check `mosaic train` records) and on the WikiArt paintings with their titles."""
    import csv

    import torch
    from PIL import Image

    from mosaic.models.lite import LiteEncoder, load_checkpoint
    from mosaic.train import evaluate_heads, ood_features

    heads = load_checkpoint(checkpoint)
    encoder = LiteEncoder()
    art = list(csv.DictReader(open(DATA / "wikiart-30" / "metadata.csv", encoding="utf-8")))
    sets = {"skimage": ood_features(checkpoint.with_suffix("")),
            "wikiart": {"images": encoder.image_features([Image.open(DATA / "wikiart-30" / "images" / a["file"])
                                                          .convert("RGB") for a in art]),
                        "texts": encoder.text.encode([a["title"] for a in art])}}
    chosen, lines = heads.mix, []
    for label, mix in (("zero-shot `lite`", 0.0), ("trained heads alone", 1.0), (f"**checkpoint (mix {chosen})**", chosen)):
        heads.config["mix"] = mix
        cells = []
        for data in sets.values():
            n = len(data["images"])
            report = evaluate_heads(heads, torch.from_numpy(data["images"]), torch.from_numpy(data["texts"]),
                                    np.arange(n), np.arange(n))
            cells += [report[d][m] for d in ("t2i", "i2t") for m in ("R@1", "R@10")]
        lines.append(f"| {label} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    return lines


def significance(mined: Path, control: Path, collection) -> dict:
    """Two-sided p-values (paired bootstrap over the 1,000 test captions, evaluate.paired_bootstrap)
    of text->image hits at 1 and 10: mining against none (heads alone), and the mix against the
    heads alone."""
    import torch

    from mosaic.evaluate import first_ranks, paired_bootstrap, split_rows
    from mosaic.models.lite import load_checkpoint
    from mosaic.train import embedded_pairs

    feats = np.load(mined.with_suffix("") / "features.npz")
    test = split_rows(collection.ids(), "test")

    def ranks(checkpoint: Path, mix: float | None = None) -> np.ndarray:
        heads = load_checkpoint(checkpoint)
        heads.config["mix"] = heads.mix if mix is None else mix
        images, texts = torch.from_numpy(feats["images"]), torch.from_numpy(feats["texts"])
        return first_ranks(embedded_pairs(heads, images, texts, feats["owner"], test))["t2i"]

    mined_alone, control_alone, mixed = ranks(mined, 1.0), ranks(control, 1.0), ranks(mined)
    return {f"{what}, t2i R@{k}": round(paired_bootstrap(a <= k, b <= k), 4)
            for k in (1, 10) for what, a, b in (("mining vs no mining (heads alone)", mined_alone, control_alone),
                                                 ("mix vs heads alone", mixed, mined_alone))}


def heads_alone(checkpoint: Path, collection) -> dict:
    """The checkpoint's runs as one ensemble without the zero-shot model (mix 1), on the test split."""
    import torch

    from mosaic.evaluate import split_rows
    from mosaic.models.lite import load_checkpoint
    from mosaic.train import evaluate_heads

    feats = np.load(checkpoint.with_suffix("") / "features.npz")
    heads = load_checkpoint(checkpoint)
    heads.config["mix"] = 1.0
    return evaluate_heads(heads, torch.from_numpy(feats["images"]), torch.from_numpy(feats["texts"]), feats["owner"],
                          split_rows(collection.ids(), "test"))


def by_round(members: list[list[dict]]) -> list[dict]:
    """Each round, with its test report averaged over the runs (`mosaic train`'s members)."""
    def mean(rounds: tuple[dict, ...], d: str, m: str) -> float:
        return round(float(np.mean([r["test"][d][m] for r in rounds])), 1 if m.startswith("R@") else 4)

    return [{"round": rounds[0]["round"], "hard_negatives": rounds[0]["hard_negatives"],
             "test": {d: {m: mean(rounds, d, m) for m in rounds[0]["test"][d]} for d in ("t2i", "i2t")}}
            for rounds in zip(*members)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=ROOT / "artifacts" / "flickr8k-experiment",
                   help="folder for the collections and checkpoints (a rerun reuses what is there)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from mosaic.build import BuildConfig, build
    from mosaic.collection import Collection
    from mosaic.evaluate import plot, retrieval
    from mosaic.train import TrainConfig, train

    work = args.work
    source = str(DATA / "flickr8k-1k")
    zero_shot = Collection.load(build(BuildConfig("captions", source, model="lite", captioner="labels"),
                                      work / "flickr8k", progress=False))
    mined = train(zero_shot.path, work / "models" / "flickr8k.pt", TrainConfig(), resume=True, progress=False)
    control_dir = work / "models" / "flickr8k-no-mining"
    control_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(mined.with_suffix("") / "features.npz", control_dir / "features.npz")  # same frozen towers
    train(zero_shot.path, control_dir.with_suffix(".pt"), TrainConfig(negatives=0), resume=True, progress=False)
    trained = Collection.load(build(BuildConfig("captions", source, model=f"lite:{mined}", captioner="labels"),
                                    work / "flickr8k-trained", progress=False))

    base = retrieval(zero_shot, "test")
    final = retrieval(trained, "test", sweep=True)
    history = by_round(json.loads((mined.with_suffix("") / "history.json").read_text())["members"])
    control_history = by_round(json.loads((control_dir / "history.json").read_text())["members"])
    plots = plot(final, RESULTS / "plots")

    head = ("| model | t2i R@1 | t2i R@5 | t2i R@10 | t2i MRR | t2i NDCG@10 | i2t R@1 | i2t R@5 | i2t R@10 "
            "| i2t MRR | i2t NDCG@10 |\n|---|" + "---|" * 10)
    lines = [head, row("random scores", base["random"]), row("zero-shot `lite`", base)]
    lines += [row(f"a run alone (mean of 3), round {h['round']} (no mining)", h["test"]) for h in control_history]
    lines += [row(f"a run alone (mean of 3), round {h['round']}" + (" + hard negatives" if h["hard_negatives"]
                                                    else " (in-batch negatives)"), h["test"]) for h in history]
    mix = json.loads((mined.with_suffix("") / "history.json").read_text())
    lines.append(row(f"trained checkpoint: the {len(mix['members'])} runs as one ensemble, heads alone",
                     heads_alone(mined, zero_shot)))
    lines.append(row(f"trained checkpoint: heads mixed with zero-shot (mix {mix['mix']['chosen']}, chosen on "
                     f"{mix['mix']['validation_images']} validation images)", mix["final"]["test"]))
    lines.append(row("**trained checkpoint, collection rebuilt with it**", final))
    ood = ["| model | skimage t2i R@1 | t2i R@10 | i2t R@1 | i2t R@10 | WikiArt t2i R@1 | t2i R@10 | i2t R@1 | i2t R@10 |",
           "|---|" + "---|" * 8, *out_of_domain(mined)]
    p_values = significance(mined, control_dir.with_suffix(".pt"), zero_shot)
    table = ("\n".join(lines) + "\n\nOut of domain:\n\n" + "\n".join(ood) + "\n\nPaired bootstrap p-values:\n\n"
             + "\n".join(f"- {what}: p = {p}" for what, p in p_values.items()))
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "flickr8k_training.md").write_text(
        "Flickr8k sample, 200 held-out test images, their 1,000 captions; every query against all 200 "
        "test images (t2i) or all 1,000 test captions (i2t). Rounds are scored on the collection's "
        "stored previews; the last row rebuilt the collection from the original images with the checkpoint.\n\n"
        + table + "\n")
    report = {"split": "test", "candidates": final["candidates"], "zero_shot": base, "trained": final,
              "rounds": history, "rounds_without_mining": control_history, "mix": mix["mix"],
              "mixed": mix["final"], "out_of_domain_table": ood, "p_values": p_values,
              "plots": [str(p.relative_to(ROOT)) for p in plots]}
    (RESULTS / "flickr8k_training.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
