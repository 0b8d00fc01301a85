"""Updating a collection against rebuilding it: a folder of the Flickr8k sample built with the
offline models, then 1% more photos added (and, separately, one edited and one deleted).

Prints the seconds of the update and of a full build of the same final folder, their ratio, and
how many images the update embedded; writes JSON.

    python bench/update.py [--photos 1000] [--new 10] [--json bench/results/update.json]
"""
import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mosaic.build import BuildConfig, build  # noqa: E402
from mosaic.collection import Collection  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=1000)
    p.add_argument("--new", type=int, default=10)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "update.json")
    args = p.parse_args()
    photos = sorted((DATA / "flickr8k-1k" / "images").glob("*.jpg"))[:args.photos]
    with tempfile.TemporaryDirectory() as tmp:
        folder, out, fresh = Path(tmp) / "photos", Path(tmp) / "c", Path(tmp) / "fresh"
        folder.mkdir()
        for photo in photos[:len(photos) - args.new]:
            shutil.copy(photo, folder / photo.name)
        config = BuildConfig("folder", str(folder), model="lite", captioner="labels")
        first = timed(lambda: build(config, out, progress=False))
        for photo in photos[len(photos) - args.new:]:
            shutil.copy(photo, folder / photo.name)
        update = timed(lambda: build(config, out, progress=False, update=True))
        added = Collection.load(out).manifest.last_update
        Image.open(photos[0]).rotate(90, expand=True).save(folder / photos[0].name)  # edited
        (folder / photos[1].name).unlink()
        edit = timed(lambda: build(config, out, progress=False, update=True))
        edited = Collection.load(out).manifest.last_update
        full = timed(lambda: build(config, fresh, progress=False))
    result = {"photos": args.photos, "first_build_s": round(first, 1), "full_build_s": round(full, 1),
              "update_new_s": round(update, 1), "update_new_vs_full": round(update / full, 4),
              "update_new": {k: len(v) if isinstance(v, list) else v for k, v in added.items()},
              "update_edit_s": round(edit, 1), "update_edit_vs_full": round(edit / full, 4),
              "update_edit": {k: len(v) if isinstance(v, list) else v for k, v in edited.items()}}
    print(f"full build of {args.photos} photos: {full:.1f} s")
    print(f"update with {args.new} new: {update:.1f} s = {update / full:.1%} of a full build ({result['update_new']})")
    print(f"update with 1 edited, 1 deleted: {edit:.1f} s = {edit / full:.1%} ({result['update_edit']})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
