"""Near-duplicate detection on a seeded set: Flickr8k photos plus copies of some of them (exact,
half size, JPEG quality 25, both, 5% cropped), built into a collection with the offline model.

Prints precision and recall of the duplicate pairs found by the difference hash at each bit
threshold, and by embedding cosine at each threshold (the alternative it replaces), side by side;
writes JSON.

    python bench/dedup.py [--originals 300] [--copies 100] [--json bench/results/dedup.json]
"""
import argparse
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mosaic import dedup  # noqa: E402
from mosaic.build import BuildConfig, build  # noqa: E402
from mosaic.collection import Collection  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


EDITS = {
    "half size": lambda im: im.resize((im.width // 2, im.height // 2)),
    "jpeg 25": lambda im: jpeg(im, 25),
    "half size + jpeg 25": lambda im: jpeg(im.resize((im.width // 2, im.height // 2)), 25),
    "cropped 5%": lambda im: im.crop((im.width // 20, im.height // 20, im.width - im.width // 20,
                                      im.height - im.height // 20)),
}


def seed(folder: Path, originals: int, copies: int) -> set[tuple[str, str]]:
    """Copy `originals` photos, then copies of the first ones (one exact, then the edits in turn);
    returns the true duplicate pairs."""
    photos = sorted((DATA / "flickr8k-1k" / "images").glob("*.jpg"))[:originals]
    folder.mkdir()
    truth = set()
    for p in photos:
        shutil.copy(p, folder / p.name)
    kinds = ["exact", *EDITS]
    for i, p in enumerate(photos[:copies]):
        kind = kinds[i % len(kinds)]
        name = f"copy-{i:03d}-{kind.replace(' ', '').replace('%', '').replace('+', '-')}.jpg"
        if kind == "exact":
            shutil.copy(p, folder / name)
        else:
            EDITS[kind](Image.open(p)).convert("RGB").save(folder / name, quality=95)
        truth.add(tuple(sorted((p.name, name))))
    return truth


def score(found: set, truth: set) -> dict:
    hits = len(found & truth)
    return {"pairs": len(found), "precision": round(hits / len(found), 4) if found else 1.0,
            "recall": round(hits / len(truth), 4)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--originals", type=int, default=300)
    p.add_argument("--copies", type=int, default=100)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "dedup.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        truth = seed(Path(tmp) / "photos", args.originals, args.copies)
        out = build(BuildConfig("folder", str(Path(tmp) / "photos"), model="lite", captioner="none"),
                    Path(tmp) / "c", progress=False)
        c = Collection.load(out)
        prints = pq.read_table(c.files.fingerprints).to_pydict()
        ids, emb = prints["id"], np.asarray(c.image_emb)
        by_hash, by_cosine = [], []
        for bits in range(0, 17, 2):
            found = {tuple(sorted((ids[a], ids[b]))) for a, b in dedup.near_pairs(prints["phash"], bits)}
            by_hash.append({"bits": bits, **score(found, truth)})
        sims = emb @ emb.T
        for t in (0.9, 0.95, 0.98, 0.99, 0.995, 0.999):
            a, b = np.nonzero(np.triu(sims >= t, 1))
            by_cosine.append({"cosine": t, **score({tuple(sorted((ids[i], ids[j]))) for i, j in zip(a, b)}, truth)})
        built = {tuple(sorted(p)) for g in c.duplicate_groups["exact"] + c.duplicate_groups["near"] for p in _pairs(g)}
        chosen = score(built, truth)
        chosen["recall_by_kind"] = {kind: round(np.mean([pair in built for pair in truth if _kind(pair) == kind]), 3)
                                    for kind in ["exact", *EDITS]}
    print(f"{len(ids)} items, {len(truth)} true duplicate pairs ({args.copies} copies of {args.originals} photos)")
    print("difference hash:  " + "  ".join(f"{r['bits']:>2} bits P {r['precision']:.3f} R {r['recall']:.3f}"
                                           for r in by_hash))
    print("embedding cosine: " + "  ".join(f"{r['cosine']} P {r['precision']:.3f} R {r['recall']:.3f}"
                                           for r in by_cosine))
    print(f"as built (NEAR_BITS = {dedup.NEAR_BITS}): precision {chosen['precision']}, recall {chosen['recall']} "
          f"({', '.join(f'{k} {v}' for k, v in chosen['recall_by_kind'].items())})")
    result = {"items": len(ids), "true_pairs": len(truth), "near_bits": dedup.NEAR_BITS, "as_built": chosen,
              "difference_hash": by_hash, "embedding_cosine_lite": by_cosine}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


def _kind(pair) -> str:
    name = next(n for n in pair if n.startswith("copy-"))
    kinds = sorted(["exact", *EDITS], key=len, reverse=True)  # "half size + jpeg 25" before "jpeg 25"
    return next(k for k in kinds if name.endswith(k.replace(" ", "").replace("%", "").replace("+", "-") + ".jpg"))


def _pairs(group):
    return [(a, b) for i, a in enumerate(group) for b in group[i + 1:]]


if __name__ == "__main__":
    main()
