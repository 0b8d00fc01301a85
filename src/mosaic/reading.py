"""Reading a build's records: each image's bytes and fingerprint, its pixels and its preview,
by a pool of threads that runs ahead of the models.

Pillow releases the GIL while it decodes, resizes and encodes images (and hashlib while it
hashes), so threads read in parallel and overlap the model calls. Records come out in the order
they went in, so a build reads the same whatever the number of workers; an unreadable record
comes out with the reason it is skipped.
"""
from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from . import dedup
from . import update as update_mod
from .errors import SourceError
from .sources import Record, load_image

THUMB_SIDE = 512  # previews kept in the collection, so it can be shown without its source


@dataclass
class Read:
    """One record read: its fingerprint and either its decoded image, preview and encoder input
    (`prepared`), the columns an update takes over from the previous collection, or why it is
    skipped."""

    record: Record
    fingerprint: dict | None = None
    image: Image.Image | None = None
    thumb: bytes | None = None
    prepared: object = None
    taken: dict | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class Reader:
    """Reads one record. `at_least` (shorter side, longer side) is what the models and the
    preview need, so JPEGs may be decoded at a reduced scale (see `sources.load_image`);
    `prepare` (the encoder's) makes the model's input from the image; with `previous` (an
    update), unchanged items are taken over instead of decoded."""

    max_pixels: int
    at_least: tuple[int, int] | None = None
    prepare: Callable | None = None
    previous: update_mod.Previous | None = None

    def __call__(self, record: Record) -> Read:
        try:
            return self._read(record)
        except Exception as e:  # noqa: BLE001 - any unreadable image is skipped and reported
            return Read(record, skipped=_reason(e, record))

    def _read(self, record: Record) -> Read:
        if record.problem:
            raise SourceError(record.problem)
        previous = self.previous
        record_sha, stat = update_mod.record_hash(record), update_mod.file_stat(record)
        row = previous.unchanged(record, record_sha, stat) if previous else None
        if row is None:
            raw = update_mod.raw_image(record)
            content = update_mod.content_hash(raw)
            row = previous.unchanged(record, record_sha, stat, content) if previous else None
            if row is None:
                image = load_image(raw, self.max_pixels, self.at_least)
                return Read(record, {"content": content, "record": record_sha, "size": stat[0], "mtime": stat[1],
                                     "phash": dedup.dhash(image)}, image, thumbnail(image),
                            self.prepare(image) if self.prepare else None)
        return Read(record, {**previous.fingerprint(row), "size": stat[0], "mtime": stat[1]},
                    taken=previous.columns(row))


def draft_sides(*models) -> tuple[int, int] | None:
    """(shorter side, longer side) a decoded image must keep for the models' preprocessing and
    the preview; None (decode at full size) when a model does not say what it needs."""
    sides = [m.image_side for m in models if m is not None]
    return None if None in sides else (max(sides, default=0), THUMB_SIDE)


def read_records(records: Iterable[Record], reader: Reader, workers: int, ahead: int) -> Iterator[Read]:
    """`reader` applied to each record, in order, by `workers` threads keeping up to `ahead`
    records read in advance (one worker: in this thread, as they are asked for)."""
    if workers == 1:
        yield from map(reader, records)
        return
    pool, pending = ThreadPoolExecutor(workers, thread_name_prefix="mosaic-read"), deque()
    try:
        for record in records:
            pending.append(pool.submit(reader, record))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(cancel_futures=True)


def cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(encoder) -> int:
    """Reading threads when none are asked for: one per core for a model on a GPU; one for a model
    on the CPU, whose own threads already use every core (more readers do not speed it up)."""
    return cores() if getattr(encoder, "device", "cpu") != "cpu" else 1


def thumbnail(image: Image.Image, side: int = THUMB_SIDE) -> bytes:
    """A JPEG preview at most `side` pixels on its longer side."""
    im = image.copy()
    im.thumbnail((side, side))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _reason(error: Exception, record: Record) -> str:
    """Why a record was skipped, as the manifest keeps it: the error with the record's id in place
    of its path on this machine (a published manifest names no local paths)."""
    text = str(error) if isinstance(error, SourceError) else f"{type(error).__name__}: {error}"
    if isinstance(record.image, (str, Path)):
        text = text.replace(str(record.image), record.id)
    return text[:300]
