"""The build fed by every core against its model alone: a random-weight open_clip ViT-B-32
(no download; its speed does not depend on its weights), on the GPU when there is one.

Copies the Flickr8k sample's photos (as often as needed) into a folder of `--images` photos,
builds it (no captioner; reading workers: one per core) and times the build with the model
already loaded; then times the model alone on the same photos decoded and preprocessed into
tensors beforehand. Prints both images/s and their ratio; writes JSON.

    python bench/gpu_build.py [--images 10000] [--json bench/results/gpu_build.json]
"""
import argparse
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mosaic.build import BuildConfig, build  # noqa: E402
from mosaic.models import load_encoder  # noqa: E402
from mosaic.reading import cores  # noqa: E402
from mosaic.sources import load_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))
MODEL = "open_clip:ViT-B-32/random"


def photo_folder(folder: Path, n: int) -> list[Path]:
    """`n` photos: the sample's, copied under new names as often as needed."""
    photos = sorted((DATA / "flickr8k-1k" / "images").glob("*.jpg"))
    folder.mkdir()
    paths = [folder / f"{i:06d}.jpg" for i in range(n)]
    for i, path in enumerate(paths):
        shutil.copyfile(photos[i % len(photos)], path)
    return paths


def synced(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


@torch.inference_mode()
def model_alone(encoder, paths: list[Path], batch: int, workers: int) -> float:
    """images/s of the image tower on tensors decoded and preprocessed beforehand."""
    prepare = lambda p: encoder.preprocess(load_image(p))  # noqa: E731
    with ThreadPoolExecutor(workers) as pool:
        tensors = torch.stack(list(pool.map(prepare, paths)))
    encoder.model.encode_image(tensors[:batch].to(encoder.device))  # warm-up
    start = synced(encoder.device)
    for lo in range(0, len(tensors), batch):
        encoder.model.encode_image(tensors[lo:lo + batch].to(encoder.device)).float().cpu()
    return len(paths) / (synced(encoder.device) - start)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "gpu_build.json")
    args = p.parse_args()
    encoder, workers = load_encoder(MODEL), cores()  # loaded once, outside the timings
    with tempfile.TemporaryDirectory() as tmp:
        paths = photo_folder(Path(tmp) / "photos", args.images)
        config = BuildConfig("folder", str(Path(tmp) / "photos"), model=MODEL, captioner="none",
                             batch_size=args.batch_size, shard_size=4096)
        start = time.perf_counter()
        build(config, Path(tmp) / "c", progress=False, workers=workers)
        build_rate = args.images / (time.perf_counter() - start)
        alone = model_alone(encoder, paths, args.batch_size, workers)
    result = {"model": MODEL, "device": encoder.device, "images": args.images, "batch_size": args.batch_size,
              "reading_workers": workers, "build_images_per_s": round(build_rate, 1),
              "model_alone_images_per_s": round(alone, 1), "build_over_model_alone": round(build_rate / alone, 3),
              "gpu": torch.cuda.get_device_name() if encoder.device.startswith("cuda") else None}
    print(f"build, {workers} reading workers: {result['build_images_per_s']:.1f} images/s; model alone on tensors: "
          f"{result['model_alone_images_per_s']:.1f} images/s; ratio {result['build_over_model_alone']:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
