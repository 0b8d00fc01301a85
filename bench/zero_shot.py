"""The zero-shot offline model's settings, side by side: how label names become text (one prompt,
the bare name, or a prompt ensemble), how many top labels an image keeps, and at what temperature
their probabilities are weighted.

Scored on all 1,000 Flickr8k sample images with their 5,000 captions (every image a candidate),
and out of domain on scikit-image's 17 bundled photos with their descriptions and the 30 WikiArt
paintings with their titles. Nothing is trained, so no split is needed. Rows are sorted by the mean of
the four Flickr8k recalls (5,000 and 1,000 queries: the reliable check); the out-of-domain mean
(47 queries each way, one query is 2-6 points) is the check that a setting does not only fit
Flickr8k.

    python bench/zero_shot.py   -> bench/results/zero_shot.{json,md}
"""
from __future__ import annotations

import csv
import itertools
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "artifacts" / "flickr8k-experiment"

PROMPTS = {"one prompt": ("a photo of a {}",), "bare name": ("{}",),
           "ensemble of 4": ("a photo of a {}", "{}", "a picture of a {}", "a close-up photo of a {}")}
TOP_K = (1, 3, 5, 10, 20)
TEMPERATURES = (1.0, 2.0, 3.0)


def checks(encoder) -> dict:
    """Per check: classifier probabilities of the images, caption embeddings and their owners."""
    from PIL import Image

    from mosaic.build import BuildConfig, build
    from mosaic.collection import Collection
    from mosaic.sources import skimage_photos

    c = Collection.load(build(BuildConfig("captions", str(DATA / "flickr8k-1k"), model="lite", captioner="labels"),
                              WORK / "flickr8k", progress=False))
    human = c.human_captions
    texts = c.captions["text"].to_pylist()
    photos = list(skimage_photos())
    art = list(csv.DictReader(open(DATA / "wikiart-30" / "metadata.csv", encoding="utf-8")))
    sets = {"Flickr8k 1k": ([c.thumbnail(r) for r in range(len(c))], [texts[i] for i in human], c.caption_items[human]),
            "skimage": ([p.image.convert("RGB") for p in photos], [p.texts[0] for p in photos], np.arange(len(photos))),
            "WikiArt": ([Image.open(DATA / "wikiart-30" / "images" / a["file"]).convert("RGB") for a in art],
                        [a["title"] for a in art], np.arange(len(art)))}
    out = {}
    for name, (images, captions, owner) in sets.items():
        probs = np.concatenate([encoder.classifier.probabilities(images[lo:lo + 32]) for lo in range(0, len(images), 32)])
        out[name] = (probs, encoder.text.encode(captions), owner)
    return out


def score(encoder, labels: np.ndarray, data: tuple, settings) -> list[float]:
    """t2i R@1, R@10, i2t R@1, R@10 of one setting on one check."""
    from mosaic.evaluate import Pairs, directions

    probs, texts, owner = data
    report = directions(Pairs(encoder.embed_probabilities(probs, settings, labels), texts, owner))
    return [report[d][m] for d in ("t2i", "i2t") for m in ("R@1", "R@10")]


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mosaic.models.lite import LiteEncoder, ZeroShot

    encoder = LiteEncoder()
    data = checks(encoder)
    recalls = ("t2i R@1", "t2i R@10", "i2t R@1", "i2t R@10")
    rows, head = [], ("| prompt | top labels | temperature | " + " | ".join(f"{n} {m}" for n in data for m in recalls)
                      + " | Flickr8k mean | out-of-domain mean |")
    labels = {prompt: encoder.embed_labels(prompts) for prompt, prompts in PROMPTS.items()}
    for (prompt, prompts), k, t in itertools.product(PROMPTS.items(), TOP_K, TEMPERATURES):
        settings = ZeroShot(prompts, k, t)
        cells = [v for d in data.values() for v in score(encoder, labels[prompt], d, settings)]
        rows.append({"prompt": prompt, "top": k, "temperature": t, "cells": cells, "default": settings == ZeroShot(),
                     "Flickr8k mean": round(float(np.mean(cells[:4])), 2),
                     "out-of-domain mean": round(float(np.mean(cells[4:])), 2)})
    lines = [head, "|---|" + "---|" * (4 + len(rows[0]["cells"]))]
    for r in sorted(rows, key=lambda r: -r["Flickr8k mean"]):
        mark = "**" if r["default"] else ""
        lines.append(f"| {mark}{r['prompt']}{mark} | {r['top']} | {r['temperature']:g} | "
                     + " | ".join(f"{c:.1f}" for c in [*r["cells"], r["Flickr8k mean"], r["out-of-domain mean"]]) + " |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "zero_shot.md").write_text("Zero-shot `lite` settings, best Flickr8k mean first (the default in bold). "
                                          "Recalls in %.\n\n" + table + "\n")
    (RESULTS / "zero_shot.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
