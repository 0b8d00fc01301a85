"""Sources: lazy, deterministic streams of `Record`s.

Every source is a function returning an iterator of records in a fixed order; `select` applies
`--limit/--seed` the same way for all of them, so a build reading the same arguments sees the
same records every time (which is what makes resuming a build safe).
"""
from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import random
import stat
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import SourceError

MAX_PIXELS = 40_000_000  # larger images are refused before decoding
UNREADABLE = "not an image Mosaic can read: use a JPEG, PNG, WebP, BMP, GIF or TIFF file"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
try:  # HEIC/HEIF photos (iPhones) when the optional pillow-heif is installed: pip install 'mosaic-search[heic]'
    from pillow_heif import register_heif_opener

    register_heif_opener()
    IMAGE_SUFFIXES |= {".heic", ".heif"}
except ImportError:
    pass


@dataclass(frozen=True)
class Fields:
    """What a source's metadata fields mean to a reader: the one that titles an item, the ones
    that order frames into scenes, and free-text ones (never offered as filters). Written into
    the collection's manifest, so the collection describes itself."""

    title: str | None = None
    scene: str | None = None
    frame: str | None = None
    text: tuple[str, ...] = ("file",)  # free text, or values of one item (a date, a size): no filter lists

    def not_filters(self) -> set[str]:
        """Fields that identify or describe one item rather than group items."""
        return {"id", "caption", *self.text} | {f for f in (self.title, self.frame) if f}


@dataclass
class Record:
    """One item of a collection: an image (loaded lazily), its texts and its metadata."""

    id: str
    image: str | Path | Image.Image | bytes  # a path, raw bytes or an already-decoded image
    texts: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    problem: str | None = None  # why it cannot be read, found by the source (the build skips it)


def select(records: Iterable[Record], limit: int | None = None, seed: int | None = None,
           buffer: int = 1000) -> Iterator[Record]:
    """The first `limit` records; with a seed, of a seeded shuffle, the same every run.

    The shuffle streams through a buffer of `buffer` records (as `datasets` does for streamed
    datasets), so the whole source is never held in memory.
    """
    stream = iter(records) if seed is None else _shuffled(records, random.Random(seed), buffer)
    for i, record in enumerate(stream):
        if limit is not None and i >= limit:
            return
        yield record


def _shuffled(records: Iterable[Record], rng: random.Random, size: int) -> Iterator[Record]:
    buf: list[Record] = []
    for record in records:
        if len(buf) < size:
            buf.append(record)
            continue
        i = rng.randrange(size)
        yield buf[i]
        buf[i] = record
    rng.shuffle(buf)
    yield from buf


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise SourceError(f"{what} not found: {path}. Check the path (or the MOSAIC_DATA variable).")
    return path


def image_folder(path: str | Path) -> Iterator[Record]:
    """Every image under a folder (recursively, sorted); the id is the relative path, and the
    metadata the photo's own (`photo_metadata`)."""
    root = _require(Path(path), "image folder")
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        problem = _unusable(p)
        if problem:
            yield Record(id=rel, image=p, metadata={"file": rel}, problem=problem)
        elif p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            yield Record(id=rel, image=p, metadata={"file": rel, **photo_metadata(p)})


def photo_metadata(path: Path) -> dict:
    """What a photo file says of itself (EXIF, read without decoding the pixels): when it was
    taken (ISO date and time), the camera, whether it has a GPS position, and its size as shown
    (after the EXIF orientation). Unknown values are None."""
    out = {"taken": None, "camera": None, "gps": False, "width": None, "height": None}
    try:
        with Image.open(path) as im:
            exif, (width, height) = im.getexif(), im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return out  # the build reports it as unreadable
    rotated = exif.get(0x0112) in (5, 6, 7, 8)  # orientation: shown turned by 90 degrees
    taken = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)  # DateTimeOriginal, else DateTime
    make, model = (str(exif.get(tag) or "").strip(" \x00") for tag in (0x010F, 0x0110))
    out.update(width=height if rotated else width, height=width if rotated else height,
               gps=bool(exif.get_ifd(0x8825)),
               camera=(model if model.lower().startswith(make.lower()) else f"{make} {model}").strip() or None)
    if isinstance(taken, str) and len(taken) >= 19:  # "2021:06:01 12:30:00"
        out["taken"] = taken[:10].replace(":", "-") + "T" + taken[11:19]
    return out


def _unusable(p: Path) -> str | None:
    """Why an entry of an image folder cannot be read (None when it can, or is simply not an
    image): the build lists these in the manifest instead of leaving them out silently."""
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        return "broken symbolic link" if p.is_symlink() else None
    except OSError as e:
        return "symbolic link loop" if e.errno == errno.ELOOP else f"cannot be read ({e.strerror})"
    if stat.S_ISDIR(mode):
        return None if os.access(p, os.R_OK | os.X_OK) else "folder cannot be read (permission denied)"
    return None if stat.S_ISREG(mode) else "not a regular file (a FIFO, socket or device)"


def captions_csv(path: str | Path, images: str | Path | None = None) -> Iterator[Record]:
    """A Flickr8k-style `image,caption` CSV (several rows per image) next to an images folder."""
    path = _require(Path(path), "captions file")
    if path.is_dir():
        path = _require(path / "captions.txt", "captions file")
    images = Path(images) if images else path.parent / "images"
    _require(images, "images folder")
    captions: dict[str, list[str]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"image", "caption"} - set(reader.fieldnames or [])
        if missing:
            raise SourceError(f"{path} lacks the column(s) {sorted(missing)}; expected 'image,caption'.")
        for row in reader:
            captions[row["image"]].append(row["caption"].strip())
    for name in sorted(captions):
        yield Record(id=name, image=images / name, texts=captions[name], metadata={"file": name})


def coco_json(path: str | Path, images: str | Path | None = None, split: str | None = None) -> Iterator[Record]:
    """COCO captions: the official `captions_*.json` or Karpathy's `dataset_coco.json`."""
    path = _require(Path(path), "COCO annotations")
    root = Path(images) if images else path.parent
    data = json.loads(path.read_text())
    if "annotations" in data:  # official format
        caps: dict[int, list[str]] = defaultdict(list)
        for a in data["annotations"]:
            caps[a["image_id"]].append(a["caption"].strip())
        for im in sorted(data["images"], key=lambda im: im["id"]):
            yield Record(id=str(im["id"]), image=root / im["file_name"], texts=caps[im["id"]],
                         metadata={"file": im["file_name"]})
    else:  # Karpathy split format
        for im in data["images"]:
            if split and im.get("split") != split:
                continue
            rel = Path(im.get("filepath", "")) / im["filename"]
            yield Record(id=str(im.get("cocoid", im["filename"])), image=root / rel,
                         texts=[s["raw"].strip() for s in im["sentences"]],
                         metadata={"file": rel.as_posix(), "split": im.get("split", "")})


def wikiart_csv(path: str | Path) -> Iterator[Record]:
    """WikiArt as `metadata.csv` (file,artist,style,genre,title) plus an `images/` folder."""
    root = _require(Path(path), "WikiArt folder")
    meta = _require(root / "metadata.csv", "WikiArt metadata.csv")
    with open(meta, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"file", "artist", "style", "genre"} - set(reader.fieldnames or [])
        if missing:
            raise SourceError(f"{meta} lacks the column(s) {sorted(missing)}.")
        for row in reader:
            title = row.get("title", "").strip()
            yield Record(id=row["file"], image=root / "images" / row["file"],
                         texts=[f"{title} by {row['artist']}"] if title else [],
                         metadata={k: row.get(k, "").strip() for k in ("artist", "style", "genre", "title")})


def hub_dataset(repo: str, split: str = "train", image_column: str = "image",
                text_column: str | None = None) -> Iterator[Record]:
    """A Hugging Face dataset read with `streaming=True`: a Hub repository, or a local dataset
    folder or data file (read offline). Class-label columns become their names."""
    from .. import hub

    ds = hub.load_streaming(repo, split)
    features = ds.features or {}
    if features and image_column not in features:
        raise SourceError(f"{repo} has no column '{image_column}' (it has {sorted(features)}).")
    names = {k: f.names for k, f in features.items() if hasattr(f, "names")}
    for i, row in enumerate(hub.rows(ds, repo)):
        meta = {}
        for k, v in row.items():
            if k in (image_column, text_column):
                continue
            if k in names and isinstance(v, int):
                v = names[k][v]
            if isinstance(v, (str, int, float, bool)):
                meta[k] = v
        texts = row.get(text_column) if text_column else []
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        yield Record(id=f"{i:08d}", image=row.get(image_column), texts=texts, metadata=meta,
                     problem=None if row.get(image_column) is not None else "no image")


def wikiart_hub(repo: str = "huggan/wikiart", split: str = "train") -> Iterator[Record]:
    """WikiArt streamed from the Hub (or a local copy in its layout), with artist/style/genre as names."""
    return hub_dataset(repo, split)


def driving(path: str | Path) -> Iterator[Record]:
    """Driving scenes: a nuScenes v1.0 dataroot, or folders of ordered frames (one folder a scene)."""
    root = _require(Path(path), "driving data")
    tables = sorted(root.glob("v1.0-*/scene.json"))
    if tables:
        yield from _nuscenes(root, tables[0].parent)
        return
    folders = sorted({p.parent for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES})
    if not folders:
        raise SourceError(f"No frames found under {root}.")
    for folder in folders:
        scene = folder.relative_to(root).as_posix() if folder != root else root.name
        frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for i, p in enumerate(frames):
            yield Record(id=f"{scene}/{i:04d}", image=p,
                         metadata={"scene": scene, "frame_index": i, "file": p.name})


def _nuscenes(root: Path, tables: Path) -> Iterator[Record]:
    """Front-camera key frames of each nuScenes scene, with its description, weather and time of day."""
    load = lambda name: json.loads((tables / f"{name}.json").read_text())  # noqa: E731
    samples = {s["token"]: s for s in load("sample")}
    front = {d["sample_token"]: d for d in load("sample_data")
             if d.get("is_key_frame") and d["filename"].startswith("samples/CAM_FRONT/")}
    for scene in sorted(load("scene"), key=lambda s: s["name"]):
        desc = scene.get("description", "")
        low = desc.lower()
        meta = {"scene": scene["name"], "description": desc,
                "weather": "rain" if "rain" in low else "dry",
                "time_of_day": "night" if "night" in low else "day"}
        token, i = scene["first_sample_token"], 0
        while token:
            if token in front:
                yield Record(id=f"{scene['name']}/{i:04d}", image=root / front[token]["filename"],
                             texts=[desc] if desc else [], metadata={**meta, "frame_index": i})
                i += 1
            token = samples[token]["next"]


def cirr(path: str | Path, split: str = "val") -> Iterator[Record]:
    """CIRR images of one split (release layout: image_splits/, captions/, images)."""
    root = _require(Path(path), "CIRR folder")
    split_file = _require(root / "image_splits" / f"split.rc2.{split}.json", "CIRR split file")
    for name, rel in sorted(json.loads(split_file.read_text()).items()):
        for candidate in (root / rel, root / "images" / f"{name}.png", root / "images" / Path(rel).name):
            if candidate.exists():
                yield Record(id=name, image=candidate, metadata={"split": split})
                break


SAMPLES_FILE = Path(__file__).with_name("skimage_photos.json")


def skimage_photos() -> Iterator[Record]:
    """scikit-image's bundled photos, with a written description each: the default collection."""
    import numpy as np
    from skimage import data

    for item in json.loads(SAMPLES_FILE.read_text()):
        pixels = np.asarray(getattr(data, item["name"])())
        if pixels.dtype == bool:  # the horse silhouette
            pixels = pixels.astype(np.uint8) * 255
        yield Record(id=item["name"], image=Image.fromarray(pixels), texts=[item["description"]],
                     metadata={"name": item["name"], "kind": item["kind"]})


SOURCES: dict[str, Callable[..., Iterator[Record]]] = {
    "folder": image_folder,
    "captions": captions_csv,
    "coco": coco_json,
    "wikiart": wikiart_csv,
    "wikiart-hub": wikiart_hub,
    "hub": hub_dataset,
    "driving": driving,
    "cirr": cirr,
    "skimage": skimage_photos,
}


FIELDS: dict[str, Fields] = {
    "wikiart": Fields(title="title"),
    "wikiart-hub": Fields(title="title"),
    "driving": Fields(scene="scene", frame="frame_index", text=("file", "description")),
    "folder": Fields(text=("file", "taken", "width", "height")),
}


def fields_of(kind: str) -> Fields:
    """The fields a source of this kind declares (plain `Fields()` for most)."""
    return FIELDS.get(kind, Fields())


STREAMED = ("hub", "wikiart-hub")  # their size is not known without reading them all


def source_size(kind: str, path: str | None = None, **options) -> int | None:
    """How many records a source holds, for a progress bar's total: an image folder's image files
    are counted (their EXIF is not read), the other files' sources listed; None for a streamed one."""
    if kind in STREAMED:
        return None
    if kind == "folder":
        return sum(1 for p in Path(path).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return sum(1 for _ in open_source(kind, path, **options))


def open_source(kind: str, path: str | None = None, **options) -> Iterator[Record]:
    """Records from a source named by kind ('captions', 'wikiart', ...) and its path or repo."""
    if kind not in SOURCES:
        raise SourceError(f"Unknown source '{kind}'. Choose one of: {', '.join(SOURCES)}.")
    args = [path] if path else []
    return SOURCES[kind](*args, **{k: v for k, v in options.items() if v is not None})


def load_image(image: str | Path | Image.Image | bytes | dict, max_pixels: int = MAX_PIXELS,
               at_least: tuple[int, int] | None = None) -> Image.Image:
    """Decode a record's image to RGB, refusing anything above `max_pixels` before decoding it.
    With `at_least` (shorter side, longer side), a JPEG is decoded at a reduced scale (1/2, 1/4
    or 1/8: its draft mode, much faster) as long as its sides stay at least that long."""
    if isinstance(image, dict):  # datasets' Image feature without decoding
        image = image.get("bytes") or image["path"]
    if isinstance(image, Image.Image):
        im = image
    else:
        try:
            im = Image.open(io.BytesIO(image) if isinstance(image, bytes) else os.fspath(image))
        except Image.UnidentifiedImageError:
            raise SourceError(UNREADABLE) from None
    if im.width * im.height > max_pixels:
        raise SourceError(f"too large: {im.width}x{im.height} pixels, above the limit of "
                          f"{max_pixels / 1e6:g} megapixels")
    if at_least and im.format == "JPEG":
        im.draft(im.mode, _draft_size(im.size, at_least))
    return _rgb(ImageOps.exif_transpose(im))


def _draft_size(size: tuple[int, int], at_least: tuple[int, int]) -> tuple[int, int]:
    """The size a draft may reduce an image of `size` to, keeping both sides of `at_least`."""
    shorter, longer = sorted(size)
    f = max(1.0, min(shorter / at_least[0], longer / at_least[1]))
    return math.ceil(size[0] / f), math.ceil(size[1] / f)


def _rgb(im: Image.Image) -> Image.Image:
    """RGB pixels; 16-bit and 32-bit integer images are scaled from their range and floating-point
    ones from 0..1 (or their own range), where a plain conversion would clip them to white."""
    if im.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return im.convert("RGB")
    a = np.asarray(im, np.float64)
    if im.mode == "F":
        lo, hi = (0.0, 1.0) if a.min() >= 0 and a.max() <= 1 else (a.min(), a.max())
    else:
        lo, hi = 0.0, 65535.0 if a.max() <= 65535 else a.max()
    scaled = (a - lo) / max(hi - lo, 1e-12) * 255
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8)).convert("RGB")


def read_query_image(path: str | Path) -> Image.Image:
    """A user's query image, or a SourceError saying plainly why it cannot be used."""
    try:
        return load_image(Path(path))
    except FileNotFoundError:
        raise SourceError(f"{Path(path).name}: no such file.") from None
    except SourceError as e:
        raise SourceError(f"{Path(path).name} is {e}.") from None
    except (OSError, ValueError, Image.DecompressionBombError):  # their messages name server paths
        raise SourceError(f"{Path(path).name} is {UNREADABLE}.") from None
