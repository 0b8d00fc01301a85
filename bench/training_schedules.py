"""Training schedules and mix tolerances side by side, in domain and out of domain: what
`mosaic train`'s defaults are chosen from.

Three runs (seeds 0, 1 and 2, as `mosaic train` trains them) of 4 rounds each (one with in-batch
negatives, three more with mined hard negatives) are trained on three splits of the Flickr8k
sample's frozen-tower features; a schedule of fewer rounds is the runs' earlier round (an
uninterrupted run with the same seed and data order gives the same heads):
- on the fixed split (800 train images; test: the 200 held-out images, in domain);
- on two subject splits, where training never sees the test subjects: the 258 images whose
  captions mention a dog; and the 316 images whose captions mention snow, rocks, mountains or
  cliffs, climbing, bicycles, cars, horses or balls (a varied gallery of other subjects; 62 of
  them also show a dog).
The heads after each round, the three runs as one ensemble (the checkpoint) and each run alone,
are scored with the mix chosen on their validation images at several tolerances, on: the
in-domain test split, the two subject splits, scikit-image's 17 photos with their descriptions,
and the 30 WikiArt paintings with their titles. The out-of-domain score is the mean of R@1 and
R@10 in both directions over the four out-of-domain checks; a run alone is the mean over the
seeds (± the out-of-domain score's standard error over them). The default is chosen by `choose`
from the ensembles within 2 points of the best in-domain t2i R@10.

    python bench/training_schedules.py   -> bench/results/training_schedules.{json,md}
                                            (checkpoints: artifacts/flickr8k-experiment/schedules/)
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "artifacts" / "flickr8k-experiment"
SUBJECTS = {"dogs": re.compile(r"\b(dog|dogs|puppy|puppies)\b", re.I),
            "subjects": re.compile(r"\b(snow\w*|ski|skis|skiers?|skiing|sled\w*|bikes?|bikers?|bicycl\w*|cyclists?|"
                                   r"motorcycl\w*|climb\w*|rocks?|mountains?|cliffs?|cars?|trucks?|horses?|balls?|"
                                   r"soccer|football|basketball|baseball)\b", re.I)}
OUT_OF_DOMAIN = {"dogs": "dogs held out", "subjects": "other subjects held out", "skimage": "skimage",
                 "WikiArt": "WikiArt"}
TOLERANCES = (0.0, 1.0, 2.0, 4.0)
ROUNDS = 3  # hard-negative rounds of the longest schedule compared


def subject_split(c, subject: re.Pattern) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) item rows: test = the items with a caption that mentions the subject."""
    texts = c.captions["text"].to_pylist()
    human = c.human_captions
    test = np.unique(c.caption_items[[i for i in human if subject.search(texts[i])]])
    return np.setdiff1d(np.arange(len(c)), test), test


def wikiart_features() -> dict:
    from PIL import Image

    from mosaic.models.lite import LiteEncoder

    encoder = LiteEncoder()
    art = list(csv.DictReader(open(DATA / "wikiart-30" / "metadata.csv", encoding="utf-8")))
    return {"images": encoder.image_features([Image.open(DATA / "wikiart-30" / "images" / a["file"]).convert("RGB")
                                              for a in art]),
            "texts": encoder.text.encode([a["title"] for a in art])}


def cells(heads, data: dict, rows=None) -> list[float]:
    """t2i R@1, R@10, i2t R@1, R@10 of the heads (at their mix) on a check."""

    from mosaic.train import evaluate_heads

    owner = data.get("owner", np.arange(len(data["images"])))
    rows = np.arange(len(data["images"])) if rows is None else rows
    report = evaluate_heads(heads, torch.from_numpy(data["images"]), torch.from_numpy(data["texts"]), owner, rows)
    return [report[d][m] for d in ("t2i", "i2t") for m in ("R@1", "R@10")]


def trained(c, slug: str, config, split=None) -> Path:
    """The work folder of a finished run (trained here unless a previous run of the bench left it):
    on the fixed split, or on `split` with the fixed split's run's frozen-tower features."""
    from mosaic.train import train

    out = WORK / "schedules" / f"{slug}.pt"
    work = out.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    for cache in ("features.npz", "out_of_domain.npz") if split else ():
        shutil.copy(WORK / "schedules" / "fixed" / cache, work / cache)
    train(c.path, out, config, resume=True, progress=False, split=split)
    return work


def round_heads(work: Path, k: int, r: int):
    """Run `k`'s heads as they were after round `r`."""
    from mosaic.models.lite import Heads

    settings = json.loads((work / f"member-{k}" / "history.json").read_text())["settings"]
    feats = np.load(work / "features.npz")
    heads = Heads(feats["images"].shape[1], feats["texts"].shape[1], settings["dim"], settings["hidden"],
                  zero_shot=settings["zero_shot"])
    heads.load_state_dict(torch.load(work / f"member-{k}" / f"round_{r}.pt", weights_only=True)["state"])
    return heads.eval()


def score(c, heads, split, validation: float, tolerance: float, checks: dict, key: str) -> dict:
    """The heads at the mix `tolerance` chooses on their validation images, on the checks of the
    split `key`."""

    from mosaic.train import choose_mix, validation_rows

    feats = checks["features"]
    val = validation_rows(c.ids(), split[0], validation)
    mix, _ = choose_mix(heads, torch.from_numpy(feats["images"]), torch.from_numpy(feats["texts"]), feats["owner"],
                        val, tolerance)
    if key == "fixed":
        return {"mix": mix, "in domain": cells(heads, feats, split[1]), "skimage": cells(heads, checks["skimage"]),
                "WikiArt": cells(heads, checks["WikiArt"])}
    return {"mix": mix, key: cells(heads, feats, split[1])}


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mosaic.build import BuildConfig, build
    from mosaic.collection import Collection
    from mosaic.evaluate import split_rows
    from mosaic.models.lite import Ensemble
    from mosaic.train import TrainConfig, ood_features

    c = Collection.load(build(BuildConfig("captions", str(DATA / "flickr8k-1k"), model="lite", captioner="labels"),
                              WORK / "flickr8k", progress=False))
    default, config = TrainConfig(), TrainConfig(rounds=ROUNDS)
    assert default.rounds <= ROUNDS and default == replace(config, rounds=default.rounds), "a schedule compared here"
    splits = {"fixed": (split_rows(c.ids(), "train"), split_rows(c.ids(), "test")),
              **{key: subject_split(c, subject) for key, subject in SUBJECTS.items()}}
    runs = {"fixed": trained(c, "fixed", config),
            **{key: trained(c, f"{key}-held-out", config, splits[key]) for key in SUBJECTS}}
    checks = {"features": dict(np.load(runs["fixed"] / "features.npz")), "skimage": ood_features(runs["fixed"]),
              "WikiArt": wikiart_features()}
    alone, ensembles, by_seed = [], [], {}
    for r in range(config.rounds + 1):
        members = [{key: round_heads(work, k, r) for key, work in runs.items()} for k in range(config.members)]
        schedule = {"schedule": f"{r + 1} rounds ({r} with hard negatives)" if r else "1 round (no mining)", "rounds": r}
        for tolerance in TOLERANCES:
            by_seed[r, tolerance] = [scored(c, {}, {key: Ensemble.of([h]) for key, h in m.items()}, tolerance, splits,
                                            checks) for m in members]
            alone.append(seeds_mean(by_seed[r, tolerance], {**schedule, "tolerance": tolerance}))
            ensembles.append(scored(c, {**schedule, "tolerance": tolerance, "tie se": alone[-1]["out of domain se"]},
                                    {key: Ensemble.of([m[key] for m in members]) for key in splits}, tolerance, splits,
                                    checks))
    reference = zero_shot_row(c, checks, splits, runs["fixed"])
    chosen, best_in = choose(ensembles)
    seeds = [{"schedule": f"seed {config.seed + k}", **row}
             for k, row in enumerate(by_seed[default.rounds, default.mix_tolerance])]
    write(ensembles, alone, reference, chosen, best_in, seeds)


def seeds_mean(per_seed: list[dict], row: dict) -> dict:
    """`row` with the mean over the seeds of every cell and mix, and the out-of-domain score's
    standard error."""
    for k in per_seed[0]:
        row[k] = np.mean([r[k] for r in per_seed], 0).round(2).tolist()
    row["out of domain se"] = round(float(np.std([r["out of domain"] for r in per_seed], ddof=1) / len(per_seed) ** 0.5), 2)
    return row


def choose(rows: list[dict]) -> tuple[dict, float]:
    """(the default schedule, the best in-domain t2i R@10): of the ensembles within 2 points of
    the best in-domain t2i R@10, those within a standard error (of the same schedule's runs
    alone) of the best out-of-domain score tie, and the one whose checkpoint (the fixed split's
    ensemble) keeps the most of the zero-shot model wins (the lowest mix: the rule that chooses
    the mix, one level up), then the one with fewer rounds."""
    best_in = max(r["in domain"][1] for r in rows)
    eligible = [r for r in rows if r["in domain"][1] >= best_in - 2]
    top = max(eligible, key=lambda r: r["out of domain"])
    ties = [r for r in eligible if r["out of domain"] >= top["out of domain"] - top["tie se"]]
    return min(ties, key=lambda r: (r["mix fixed"], r["rounds"])), best_in


def scored(c, row: dict, heads: dict, tolerance: float, splits: dict, checks: dict) -> dict:
    """`row` with each split's heads (`heads[key]`) scored at the mix `tolerance` chooses, and the
    out-of-domain score."""
    from mosaic.train import TrainConfig

    for key, split in splits.items():
        result = score(c, heads[key], split, TrainConfig().validation, tolerance, checks, key)
        row[f"mix {key}"] = result.pop("mix")
        row.update(result)
    return out_of_domain(row)


def out_of_domain(row: dict) -> dict:
    """`row` with its out-of-domain score: the mean of R@1 and R@10, both directions, over the
    subject splits, skimage and WikiArt."""
    row["out of domain"] = round(float(np.mean([v for k in OUT_OF_DOMAIN for v in row[k]])), 2)
    return row


def zero_shot_row(c, checks: dict, splits: dict, work: Path) -> dict:
    """The zero-shot model (mix 0) on the same checks, for reference, with each split's test images."""
    from mosaic.models.lite import load_checkpoint

    heads = load_checkpoint(work.with_suffix(".pt"))  # at mix 0: the zero-shot model alone
    heads.config["mix"] = 0.0
    feats = checks["features"]
    row = {"schedule": "zero-shot `lite`", "in domain": cells(heads, feats, splits["fixed"][1]),
           **{key: cells(heads, feats, splits[key][1]) for key in SUBJECTS}, "skimage": cells(heads, checks["skimage"]),
           "WikiArt": cells(heads, checks["WikiArt"]), "test images": {key: len(test) for key, (_, test) in splits.items()}}
    return out_of_domain(row)


def write(ensembles: list[dict], alone: list[dict], reference: dict, chosen: dict, best_in: float,
          seeds: list[dict]) -> None:
    checks = ("in domain", *OUT_OF_DOMAIN)
    head = (f"| schedule | mix tolerance | mix ({' / '.join(('fixed', *SUBJECTS))} split) | in domain t2i R@1 / R@10 "
            "| i2t R@1 / R@10 | " + " | ".join(f"{name} t2i | i2t" for name in OUT_OF_DOMAIN.values())
            + " | out-of-domain score |")
    top = [head, "|" + "---|" * (head.count("|") - 1)]

    def line(r: dict) -> str:
        bold = "**" if r is chosen else ""
        mixes = " / ".join(f"{r.get(f'mix {key}', 0):g}" for key in ("fixed", *SUBJECTS))
        se = f" ± {r['out of domain se']:.2f}" if "out of domain se" in r else ""
        cells = " | ".join(f"{r[k][0]:.1f} / {r[k][1]:.1f} | {r[k][2]:.1f} / {r[k][3]:.1f}" for k in checks)
        return f"| {bold}{r['schedule']}{bold} | {r.get('tolerance', '')} | {mixes} | {cells} | {r['out of domain']:.2f}{se} |"

    lines = ["`mosaic train`'s checkpoint: the three runs as one ensemble.", "", *top, *map(line, [reference, *ensembles])]
    lines += ["", "One run alone (the mean over the three seeds):", "", *top, *map(line, alone)]
    lines += ["", "The default schedule's runs alone, by seed:", "", *top, *map(line, seeds)]
    by_check = {k: np.array([r[k] for r in seeds]) for k in (*checks, "out of domain")}
    mean = {k: v.mean(0) for k, v in by_check.items()}
    sd = {k: v.std(0, ddof=1) for k, v in by_check.items()}
    lines.append("| mean ± sd | | | " + " | ".join(
        f"{mean[k][i]:.1f} ± {sd[k][i]:.1f} / {mean[k][i + 1]:.1f} ± {sd[k][i + 1]:.1f}" for k in checks for i in (0, 2))
        + f" | {mean['out of domain']:.2f} ± {sd['out of domain']:.2f} |")
    summary = (f"Chosen (bold): {chosen['schedule']}, mix tolerance {chosen['tolerance']}: out-of-domain score "
               f"{chosen['out of domain']:.2f} (zero-shot {reference['out of domain']:.2f}), in-domain t2i R@10 "
               f"{chosen['in domain'][1]:.1f} (best {best_in:.1f}).")
    table = "\n".join(lines) + "\n\n" + summary
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training_schedules.md").write_text("Recalls in %. " + __doc__.split("\n\n")[1] + "\n\n" + table + "\n")
    (RESULTS / "training_schedules.json").write_text(json.dumps({"ensembles": ensembles, "runs_alone": alone,
                                                                 "zero_shot": reference, "chosen": chosen,
                                                                 "seeds": seeds}, indent=2) + "\n")


if __name__ == "__main__":
    main()
