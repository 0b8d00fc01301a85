"""Build throughput on the Flickr8k sample with the offline models, against the models alone.

Prints images/s of the whole build (read, decode, embed, caption, tag, write, index) and of the
models alone on the same images already decoded in memory, and their ratio; writes JSON.

    python bench/build_throughput.py [--limit 1000] [--json bench/results/build_throughput.json]
"""
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mosaic.build import BuildConfig, build  # noqa: E402
from mosaic.models import load_captioner, load_encoder  # noqa: E402
from mosaic.sources import captions_csv, load_image  # noqa: E402
from mosaic.stages import Vocabulary, process_batch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "build_throughput.json")
    args = p.parse_args()
    flickr = DATA / "flickr8k-1k"
    encoder, captioner = load_encoder("lite"), load_captioner("labels")  # loaded once, outside both timings
    config = BuildConfig("captions", str(flickr), limit=args.limit, model="lite", captioner="labels",
                         batch_size=args.batch_size)

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        build(config, Path(tmp) / "flickr", progress=False)
        build_s = time.perf_counter() - t

    records = list(captions_csv(flickr))[:args.limit]
    images = [load_image(r.image, config.max_pixels) for r in records]
    tag_emb = encoder.encode_texts(Vocabulary.load("photos").prompts)
    t = time.perf_counter()
    for lo in range(0, len(images), args.batch_size):
        process_batch(images[lo:lo + args.batch_size], [r.texts for r in records[lo:lo + args.batch_size]],
                      encoder, captioner, tag_emb)
    model_s = time.perf_counter() - t

    n = len(images)
    result = {"images": n, "model": "lite", "captioner": "labels", "batch_size": args.batch_size,
              "build_images_per_s": round(n / build_s, 2), "models_only_images_per_s": round(n / model_s, 2),
              "build_over_models_only": round(model_s / build_s, 3),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    print(f"build (decode+models+write+index): {result['build_images_per_s']:.1f} images/s")
    print(f"models alone on decoded images:    {result['models_only_images_per_s']:.1f} images/s")
    print(f"ratio build / models alone:        {result['build_over_models_only']:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
