"""The build's feeding ceiling: the whole local build (read, hash, decode, EXIF, previews, write,
index) with a model that costs nothing, so what is left is what feeds a model, with 1, 2, ...
reading workers; and what JPEG draft decoding saves on large photos and changes in the embeddings.

Two sets of images: the Flickr8k sample as it is (~500x375: previews need them whole, so no draft
applies), and the same photos enlarged to 2000 px on the longer side (as from a camera; JPEG q90),
read with draft decoding and without. Runs are interleaved (every setting once per round), the
best of the rounds kept. Prints images/s and, per worker count up to the cores, the ratio to
perfect scaling (images/s over workers x the one-worker images/s), with the cores the build got
(its CPU seconds over its wall seconds: on a machine busy with other work, the scheduler's share
caps it, and the ratio with it) and its images per CPU second; then, with the real offline
model on the large photos, the cosine of each image's embedding with draft vs full decoding and
the caption -> image recall@5 of both; and the build's reader alone on the small photos, in one
thread, in threads and in processes (each read sent back pickled, or its pixels dropped in the
worker instead); and, for scale, what work that needs no GIL at all gets from the cores in
threads (this machine's own ceiling). Writes JSON.

    python bench/feeding.py [--limit 1000] [--large 300] [--workers 1 2 4] [--json bench/results/feeding.json]
"""
import argparse
import json
import os
import platform
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mosaic import models  # noqa: E402
from mosaic.build import BuildConfig, build  # noqa: E402
from mosaic.reading import Reader, cores  # noqa: E402
from mosaic.sources import MAX_PIXELS, captions_csv, load_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))
LARGE_SIDE = 2000
READER = Reader(MAX_PIXELS, (224, 512))  # the build's reader for the offline model


class NoModel(models.DualEncoder):
    """A model that costs nothing: every image and text gets the same unit vector. `image_side`
    as the offline model's (224), or None for one that reads images whole (no draft decoding)."""

    dim = 8

    def __init__(self, image_side):
        self.spec, self.image_side = f"none-{image_side}", image_side

    def encode_images(self, images):
        return np.eye(1, self.dim, dtype=np.float32).repeat(len(images), 0)

    encode_texts = encode_images


def enlarged(records, folder: Path) -> Path:
    """The records' photos scaled up to LARGE_SIDE on their longer side, as a captions folder."""
    (folder / "images").mkdir(parents=True)
    rows = ["image,caption"]
    for r in records:
        im = Image.open(r.image)
        f = LARGE_SIDE / max(im.size)
        im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.LANCZOS).save(
            folder / "images" / r.id, quality=90)
        rows += [f'{r.id},"{t.replace(chr(34), chr(39))}"' for t in r.texts]
    (folder / "captions.txt").write_text("\n".join(rows) + "\n")
    return folder


def build_rate(folder: Path, limit: int, model: str, workers: int, out: Path) -> tuple[float, float]:
    """(images/s, CPU seconds over wall seconds) of one build."""
    config = BuildConfig("captions", str(folder), limit=limit, model=model, captioner="none")
    start, cpu = time.perf_counter(), time.process_time()
    build(config, out, overwrite=True, progress=False, workers=workers)
    wall = time.perf_counter() - start
    return limit / wall, (time.process_time() - cpu) / wall


def feeding(sets: dict, workers: list[int], rounds: int, tmp: Path) -> dict:
    """(images/s, cores used) of every (set, workers), the fastest of interleaved rounds."""
    best = {}
    for folder, _, model in sets.values():  # warm-up: the first build pays for imports
        build_rate(folder, 10, model, 1, tmp / "out")
    for _ in range(rounds):
        for name, (folder, limit, model) in sets.items():
            for w in workers:
                rate = build_rate(folder, limit, model, w, tmp / "out")
                best[name, w] = max(best.get((name, w), (0.0, 0.0)), rate)
    return best


def reading_alone(folder: Path, limit: int, workers: int, rounds: int) -> dict:
    """Images/s of the build's reader alone (read, hash, decode, dHash, preview; as for the offline
    model) over the small photos, and its ratio to perfect scaling: in this thread, in `workers`
    threads, in `workers` forked processes that send each read back pickled (what reader processes
    would cost), and in processes that drop the decoded pixels instead of sending them (the
    workers' own ceiling). Reads are dropped as they come, the pools started before the clock
    (the processes forked first, before any thread), the order rotated by round; best of `rounds`."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    records = list(captions_csv(folder))[:limit]
    processes = ProcessPoolExecutor(workers, multiprocessing.get_context("fork"))
    threads = ThreadPoolExecutor(workers)
    runs = {"processes": lambda: processes.map(READER, records, chunksize=16),
            "processes, pixels not sent back": lambda: processes.map(_read_without_pixels, records, chunksize=16),
            "one thread": lambda: map(READER, records),
            "threads": lambda: threads.map(READER, records)}
    kinds, best = list(runs), {}
    with processes, threads:
        for run in runs.values():  # warm-up: workers started, files in the page cache
            deque(run(), maxlen=0)
        for i in range(rounds):
            for kind in kinds[i % len(kinds):] + kinds[:i % len(kinds)]:
                start = time.perf_counter()
                deque(runs[kind](), maxlen=0)
                best[kind] = max(best.get(kind, 0), len(records) / (time.perf_counter() - start))
    return {"images_per_s": {kind: round(rate, 1) for kind, rate in best.items()},
            "vs_linear": {kind: round(rate / (workers * best["one thread"]), 3) for kind, rate in best.items()}}


def machine_ceiling(workers: int, rounds: int) -> float:
    """What perfectly parallel work gets from `workers` cores here: SHA-256 of 32 MB buffers (no
    GIL held, one buffer read by all) in `workers` threads, as a ratio to perfect scaling; best of `rounds`."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    data, jobs = bytes(32 << 20), 4 * workers
    def work(_):
        return hashlib.sha256(data).digest()
    best = {1: 0.0, workers: 0.0}
    with ThreadPoolExecutor(workers) as pool:
        for _ in range(rounds):
            for n in best:
                start = time.perf_counter()
                deque(pool.map(work, range(jobs)) if n > 1 else map(work, range(jobs)), maxlen=0)
                best[n] = max(best[n], jobs / (time.perf_counter() - start))
    return round(best[workers] / (workers * best[1]), 3)


def _read_without_pixels(record):
    read = READER(record)
    read.image = None
    return read


def recall_at_5(image_emb: np.ndarray, text_emb: np.ndarray, owner: np.ndarray) -> float:
    top = np.argsort(-(text_emb @ image_emb.T), axis=1)[:, :5]
    return float(np.mean([o in row for o, row in zip(owner, top)]))


def draft_effect(folder: Path, limit: int) -> dict:
    """The offline model's embeddings of the large photos decoded whole and as drafts."""
    encoder = models.load_encoder("lite")
    records = list(captions_csv(folder))[:limit]
    full = np.concatenate([encoder.encode_images([load_image(r.image) for r in records[lo:lo + 32]])
                           for lo in range(0, len(records), 32)])
    at_least = (encoder.image_side, 512)
    draft = np.concatenate([encoder.encode_images([load_image(r.image, at_least=at_least) for r in records[lo:lo + 32]])
                            for lo in range(0, len(records), 32)])
    texts = [t for r in records for t in r.texts]
    owner = np.repeat(np.arange(len(records)), [len(r.texts) for r in records])
    text_emb = encoder.encode_texts(texts)
    cos = np.sum(full * draft, axis=1)
    return {"images": len(records), "cosine_mean": round(float(cos.mean()), 5), "cosine_min": round(float(cos.min()), 5),
            "recall_at_5_full": round(recall_at_5(full, text_emb, owner), 4),
            "recall_at_5_draft": round(recall_at_5(draft, text_emb, owner), 4)}


def report(best: dict, workers: list[int], cores: int) -> list[dict]:
    rows = []
    for (name, w), (rate, used) in best.items():
        row = {"images": name, "workers": w, "images_per_s": round(rate, 1), "cores_used": round(used, 2),
               "images_per_cpu_s": round(rate / used, 1)}
        if w <= cores:
            row["vs_linear"] = round(rate / (w * best[name, 1][0]), 3)
        rows.append(row)
        scaling = f"{row['vs_linear']:.2f} x linear" if "vs_linear" in row else f"(more workers than the {cores} cores)"
        print(f"{name:>18} {w} workers: {rate:7.1f} images/s  {scaling:>32}  {used:.2f} cores used, "
              f"{row['images_per_cpu_s']:.1f} images per CPU second")
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=1000, help="Flickr8k photos as they are")
    p.add_argument("--large", type=int, default=300, help="of them enlarged to 2000 px")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "feeding.json")
    args = p.parse_args()
    for side in (224, None):
        models.ENCODERS[f"none-{side}"] = lambda name, device, side=side: NoModel(side)
    flickr, n_cores = DATA / "flickr8k-1k", cores()
    workers = sorted({1, *args.workers})
    with tempfile.TemporaryDirectory() as tmp:
        large = enlarged(list(captions_csv(flickr))[:args.large], Path(tmp) / "large")
        sets = {"flickr8k": (flickr, args.limit, "none-224"), "large, draft": (large, args.large, "none-224"),
                "large, full decode": (large, args.large, "none-None")}
        rows = report(feeding(sets, workers, args.rounds, Path(tmp)), workers, n_cores)
        effect = draft_effect(large, args.large)
    alone = reading_alone(flickr, args.limit, min(2, n_cores), args.rounds)
    print(f"the reader alone on the Flickr8k photos, {min(2, n_cores)} workers: {alone}")
    ceiling = machine_ceiling(n_cores, args.rounds)
    print(f"perfectly parallel work (SHA-256, no GIL) in {n_cores} threads: {ceiling} x perfect scaling on this machine")
    rate = {(r["images"], r["workers"]): r["images_per_s"] for r in rows}
    draft_gain = {w: round(rate["large, draft", w] / rate["large, full decode", w], 2) for w in workers}
    print(f"draft decoding of the large photos: {draft_gain} x the images/s of full decoding, by workers")
    print(f"offline model, draft vs full decoding of {effect['images']} large photos: embedding cosine mean "
          f"{effect['cosine_mean']:.4f} (min {effect['cosine_min']:.4f}); caption->image recall@5 "
          f"{effect['recall_at_5_draft']:.4f} vs {effect['recall_at_5_full']:.4f}")
    result = {"rounds": args.rounds, "large_side": LARGE_SIDE, "results": rows, "draft_speedup": draft_gain,
              "draft_effect": effect, "reading_alone": alone,
              "machine_ceiling": ceiling, "cpu": platform.processor() or platform.machine(), "cores": n_cores}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
