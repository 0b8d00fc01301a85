"""Build throughput on the Flickr8k sample with the offline models, against the models alone,
by reading workers; and the peak memory of the build command.

Runs `python -m mosaic build` in a process of its own with each number of reading workers (1:
every image read and decoded between the model calls, in the main thread, as before the workers
existed; interleaved, the fastest of the rounds kept) and prints its images/s (wall time of the
whole command: start, model loading, read, decode, embed, caption, tag, write, index) and its
peak resident memory (RSS); then the images/s of the models alone on the same images already
decoded in memory, and the ratios. Writes JSON.

    python bench/build_throughput.py [--limit 1000] [--workers 1 2] [--json bench/results/build_throughput.json]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mosaic.build import BuildConfig  # noqa: E402
from mosaic.models import load_captioner, load_encoder  # noqa: E402
from mosaic.reading import cores  # noqa: E402
from mosaic.sources import captions_csv, load_image  # noqa: E402
from mosaic.stages import Vocabulary, process_batch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))


def models_seconds(config: BuildConfig, limit: int, encoder, captioner) -> float:
    records = list(captions_csv(config.path))[:limit]
    images = [load_image(r.image, config.max_pixels) for r in records]
    tag_emb = encoder.encode_texts(Vocabulary.load("photos").prompts)
    b = config.batch_size
    t = time.perf_counter()
    for lo in range(0, len(images), b):
        process_batch(images[lo:lo + b], [r.texts for r in records[lo:lo + b]], encoder, captioner, tag_emb)
    return time.perf_counter() - t


def build_command(config: BuildConfig, workers: int) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of the build command, run in a process of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "mosaic", "build", "captions", config.path, "--limit",
                                 str(config.limit), "--model", config.model, "--captioner", config.captioner,
                                 "--workers", str(workers), "--out", f"{tmp}/c", "--quiet"], stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
    if status:
        raise SystemExit(f"the build command failed ({status})")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=sorted({1, cores()}))
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "build_throughput.json")
    args = p.parse_args()
    config = BuildConfig("captions", str(DATA / "flickr8k-1k"), limit=args.limit, model="lite", captioner="labels",
                         batch_size=args.batch_size)
    build_s, rss = {}, {}
    for _ in range(args.rounds):
        for w in args.workers:
            seconds, rss[w] = build_command(config, w)
            build_s[w] = min(build_s.get(w, float("inf")), seconds)
    model_s = models_seconds(config, args.limit, load_encoder("lite"), load_captioner("labels"))

    n, serial = args.limit, build_s[min(args.workers)]
    rows = [{"workers": w, "build_images_per_s": round(n / s, 2), "build_over_models_only": round(model_s / s, 3),
             "speed_vs_serial": round(serial / s, 3), "peak_rss_mb": round(rss[w])} for w, s in build_s.items()]
    result = {"images": n, "model": "lite", "captioner": "labels", "batch_size": args.batch_size, "rounds": args.rounds,
              "models_only_images_per_s": round(n / model_s, 2), "builds": rows,
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    print(f"models alone on decoded images: {result['models_only_images_per_s']:.1f} images/s")
    for r in rows:
        print(f"build, {r['workers']} reading workers: {r['build_images_per_s']:6.1f} images/s = "
              f"{r['build_over_models_only']:.2f} x the models alone, {r['speed_vs_serial']:.2f} x one worker; "
              f"peak RSS {r['peak_rss_mb']} MB")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
