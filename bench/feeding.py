"""The build's feeding ceiling: the whole local build (read, hash, decode, EXIF, previews, the
model's crop, write, index) with a model that costs nothing but its preprocessing (the offline
model's resize and crop, made by the reading workers), so what is left is what feeds a model,
with 1, 2, ... reading workers; and what JPEG draft decoding saves on large photos and changes in
the embeddings.

Two sets of images: the Flickr8k sample as it is (~500x375: previews need them whole, so no draft
applies), read by processes (the build on Linux) and by threads (elsewhere), and the same photos
enlarged to 2000 px on the longer side (as from a camera; JPEG q90), read with draft decoding and
without. Each build runs in a process of its own; every set's builds run back to back, in turn
forwards and backwards, once per round.
Prints the fastest round's images/s of the feeding pipeline as the build reports it (read, model,
write: not the model's loading, nor the index it builds at the end in one thread) and of the whole
build, and, per worker count up to the cores, the median over the rounds of the ratio to perfect
scaling (images/s over workers x the same round's one-worker images/s: a machine shared with
other work changes speed from one minute to the next, so only builds close in time are
compared), with the cores the build got (its and its reading processes' CPU seconds over its wall seconds: on a machine busy with
other work, the scheduler's share caps it, and the ratio with it) and its images per CPU second;
then, with the real offline model on the large photos, the cosine of each image's embedding with
draft vs full decoding and the caption -> image recall@5 of both; and the build's reader alone
on the small photos, in one thread, in processes (each read sent back, or its preview and crop
dropped in the worker instead) and in threads; how long the reader holds the GIL per photo
(what caps reading threads however many cores there are); and, for scale, what work that needs
no GIL at all gets from the cores in threads (this machine's own ceiling). Writes JSON.

    python bench/feeding.py [--limit 1000] [--large 300] [--workers 1 2] [--rounds 6] [--json bench/results/feeding.json]
"""
import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mosaic import (
    models,  # noqa: E402
    reading,  # noqa: E402
)
from mosaic.build import BuildConfig, build  # noqa: E402
from mosaic.models.lite import crop  # noqa: E402
from mosaic.reading import Reader, cores, read_records  # noqa: E402
from mosaic.sources import MAX_PIXELS, captions_csv, load_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))
LARGE_SIDE = 2000
READER = Reader(MAX_PIXELS, (224, 512), crop)  # the build's reader for the offline model


class NoModel(models.DualEncoder):
    """A model that costs nothing but its preprocessing: every image and text gets the same unit
    vector. `image_side` as the offline model's (224), or None for one that reads images whole (no
    draft decoding)."""

    dim = 8
    prepare = staticmethod(crop)  # the offline model's preprocessing, made by the reading workers

    def __init__(self, image_side):
        self.spec, self.image_side = f"none-{image_side}", image_side
        crop(Image.new("RGB", (8, 8)))  # its preprocessing loaded (torchvision, 2-3 s) as a model's is, before the readers fork

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


class BuildRate(logging.Handler):
    """The images/s a build reports for its records (read, model, write; not the model's loading
    nor its index)."""

    def emit(self, record):
        if record.msg.startswith("built "):
            self.rate = record.args[-1]


def build_rate(folder: Path, limit: int, model: str, workers: int, forks: bool, out: Path) -> tuple:
    """(images/s of the whole build, of its records as it reports them, CPU seconds over wall
    seconds) of one build, reading in processes (`forks`) or threads, in a process of its own
    (so that no build inherits another's memory)."""
    args = [str(folder), str(limit), model, str(workers), str(int(forks)), str(out)]
    done = subprocess.run([sys.executable, __file__, "--one-build", *args], capture_output=True, text=True, check=True)
    return tuple(json.loads(done.stdout.splitlines()[-1]))


def one_build(folder: str, limit: str, model: str, workers: str, forks: str, out: str) -> None:
    """Prints `build_rate`'s answer for one build made here."""
    for side in (224, None):
        models.ENCODERS[f"none-{side}"] = lambda name, device, side=side: NoModel(side)
    config, reported = BuildConfig("captions", folder, limit=int(limit), model=model, captioner="none"), BuildRate()
    reading._forks = lambda: forks == "1"
    logging.getLogger("mosaic").setLevel(logging.INFO)
    logging.getLogger("mosaic").addHandler(reported)
    start, cpu = time.perf_counter(), cpu_seconds()
    build(config, Path(out), overwrite=True, progress=False, workers=int(workers))
    wall = time.perf_counter() - start
    print(json.dumps([int(limit) / wall, reported.rate, (cpu_seconds() - cpu) / wall]))


def cpu_seconds() -> float:
    """CPU seconds of this process and of its reading processes (counted once they have ended)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def feeding(sets: dict, workers: list[int], rounds: int, tmp: Path) -> dict:
    """(images/s, images/s as reported, cores used) of every (set, workers), by round: every set's
    builds run back to back, in turn forwards and backwards, so that each ratio is taken between
    builds that met the same machine."""
    runs = {}
    for folder, _, model, forks in sets.values():  # warm-up: the files in the page cache
        build_rate(folder, 10, model, 1, forks, tmp / "out")
    for i in range(rounds):
        for name, (folder, limit, model, forks) in sets.items():
            for w in workers[::-1] if i % 2 else workers:
                runs.setdefault((name, w), []).append(build_rate(folder, limit, model, w, forks, tmp / "out"))
    return runs


def reading_alone(folder: Path, limit: int, workers: int, rounds: int) -> dict:
    """Images/s of the build's reader alone (read, hash, decode, dHash, preview, the offline model's
    crop) over the small photos by `mosaic.reading.read_records`, and its ratio to perfect scaling:
    in this thread, in `workers` processes as the build reads on Linux (each read sent back), in
    processes that send back no preview and no crop (the workers' own ceiling), and in threads
    (the build elsewhere). Reads are dropped as they come, the order rotated by round; the fastest
    round's images/s, and the median of the ratios to the same round's one thread."""
    records = list(captions_csv(folder))[:limit]

    def read(reader, forks=True, n=workers):
        def run():
            reading._forks = lambda: forks
            return read_records(records, reader, n, ahead=64)
        return run

    runs = {"one thread": read(READER, n=1), "processes": read(READER),
            "processes, preview and crop not sent back": read(_read_and_drop), "threads": read(READER, forks=False)}
    kinds, rates = list(runs), {kind: [] for kind in runs}
    for run in runs.values():  # warm-up: files in the page cache
        deque(run(), maxlen=0)
    for i in range(rounds):
        for kind in kinds[i % len(kinds):] + kinds[:i % len(kinds)]:
            start = time.perf_counter()
            deque(runs[kind](), maxlen=0)
            rates[kind].append(len(records) / (time.perf_counter() - start))
    return {"images_per_s": {kind: round(max(r), 1) for kind, r in rates.items()},
            "vs_linear": {kind: round(float(np.median(np.divide(r, rates["one thread"]))) / workers, 3)
                          for kind, r in rates.items() if kind != "one thread"}}


def gil_held(folder: Path, limit: int, switch: float = 1e-4) -> dict:
    """How long the build's reader holds the GIL per small photo, which caps reading threads at
    1 / that many images/s on any number of cores (processes have no such cap): the reader runs
    in this thread while another thread counts as fast as it can, asking for the GIL every
    `switch` seconds; the share of its count it loses is the share of the time the reader held
    the GIL (an estimate: the handovers cost it a little more)."""
    import threading

    records = list(captions_csv(folder))[:limit]
    deque(map(READER, records), maxlen=0)  # the files in the page cache
    previous = sys.getswitchinterval()
    sys.setswitchinterval(switch)

    def counted(work) -> tuple[float, float]:
        stop, count = threading.Event(), [0]

        def spin():
            while not stop.is_set():
                count[0] += 1
        spinner, start = threading.Thread(target=spin), time.perf_counter()
        spinner.start()
        work()
        stop.set()
        spinner.join()
        seconds = time.perf_counter() - start
        return count[0] / seconds, seconds

    try:
        alone, _ = counted(lambda: time.sleep(2))
        beside, seconds = counted(lambda: deque(map(READER, records), maxlen=0))
    finally:
        sys.setswitchinterval(previous)
    held = (1 - beside / alone) * seconds / len(records)
    return {"ms_per_image": round(held * 1e3, 2), "threads_cap_images_per_s": round(1 / held),
            "reader_ms_per_image": round(seconds / len(records) * 1e3, 2)}


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


def _read_and_drop(record):
    read = READER(record)
    read.thumb = read.prepared = None
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


def report(runs: dict, cores: int) -> list[dict]:
    """A row per (set, workers): the fastest round, and the median and range over the rounds of
    the ratio to perfect scaling against the same round's one-worker build."""
    rows = []
    for (name, w), rounds in runs.items():
        (rate, stage, used), one = max(rounds), runs[name, 1]
        row = {"images": name, "workers": w, "images_per_s": round(rate, 1), "records_images_per_s": round(stage, 1),
               "cores_used": round(used, 2), "images_per_cpu_s": round(rate / used, 1)}
        if w <= cores:
            for key, k in (("vs_linear", 0), ("records_vs_linear", 1)):
                ratios = [r[k] / (w * o[k]) for r, o in zip(rounds, one)]
                row[key] = round(float(np.median(ratios)), 3)
                row[key + "_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
        rows.append(row)
        scaling = (f"{row['records_vs_linear']:.2f} x linear (rounds {row['records_vs_linear_range'][0]:.2f}-"
                   f"{row['records_vs_linear_range'][1]:.2f}; the whole build {row['vs_linear']:.2f} x)"
                   if "vs_linear" in row else f"(more workers than the {cores} cores)")
        print(f"{name:>18} {w} workers: {stage:6.1f} images/s {scaling:>50}; the whole build {rate:6.1f} images/s, "
              f"{used:.2f} cores, {row['images_per_cpu_s']:.1f} images per CPU second")
    return rows


def main():
    if sys.argv[1:2] == ["--one-build"]:
        return one_build(*sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=1000, help="Flickr8k photos as they are")
    p.add_argument("--large", type=int, default=300, help="of them enlarged to 2000 px")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "feeding.json")
    args = p.parse_args()
    flickr, n_cores = DATA / "flickr8k-1k", cores()
    workers = sorted({1, *args.workers})
    with tempfile.TemporaryDirectory() as tmp:
        large = enlarged(list(captions_csv(flickr))[:args.large], Path(tmp) / "large")
        sets = {"flickr8k": (flickr, args.limit, "none-224", True),
                "flickr8k, threads": (flickr, args.limit, "none-224", False),
                "large, draft": (large, args.large, "none-224", True),
                "large, full decode": (large, args.large, "none-None", True)}
        rows = report(feeding(sets, workers, args.rounds, Path(tmp)), n_cores)
        effect = draft_effect(large, args.large)
    alone = reading_alone(flickr, args.limit, min(2, n_cores), args.rounds)
    print(f"the reader alone on the Flickr8k photos, {min(2, n_cores)} workers: {alone}")
    gil = gil_held(flickr, min(args.limit, 300))
    print(f"the reader holds the GIL {gil['ms_per_image']} ms per small photo (of {gil['reader_ms_per_image']} ms): "
          f"reading threads top out near {gil['threads_cap_images_per_s']} images/s on any number of cores")
    ceiling = machine_ceiling(n_cores, args.rounds)
    print(f"perfectly parallel work (SHA-256, no GIL) in {n_cores} threads: {ceiling} x perfect scaling on this machine")
    rate = {(r["images"], r["workers"]): r["images_per_s"] for r in rows}
    draft_gain = {w: round(rate["large, draft", w] / rate["large, full decode", w], 2) for w in workers}
    print(f"draft decoding of the large photos: {draft_gain} x the images/s of full decoding, by workers")
    print(f"offline model, draft vs full decoding of {effect['images']} large photos: embedding cosine mean "
          f"{effect['cosine_mean']:.4f} (min {effect['cosine_min']:.4f}); caption->image recall@5 "
          f"{effect['recall_at_5_draft']:.4f} vs {effect['recall_at_5_full']:.4f}")
    result = {"rounds": args.rounds, "large_side": LARGE_SIDE, "results": rows, "draft_speedup": draft_gain,
              "draft_effect": effect, "reading_alone": alone, "gil_held": gil,
              "machine_ceiling": ceiling, "cpu": platform.processor() or platform.machine(), "cores": n_cores}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
