"""Reading a build's records: each image's bytes and fingerprint, its preview and the models'
inputs, by a pool of workers that runs ahead of the models.

The workers are processes on Linux (forked, so they share the models' preprocessing without
pickling it) and threads elsewhere. Processes scale with the cores where threads do not: Pillow
holds the GIL for part of each small image's work. A worker sends back what the models read (the
encoder's input, a 224-pixel crop for the offline model), not the decoded image. Records come out
in the order they went in, so a build reads the same whatever the number of workers; an
unreadable record comes out with the reason it is skipped.
"""
from __future__ import annotations

import ctypes
import gc
import io
import mmap
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from . import dedup
from . import update as update_mod
from .errors import CollectionError, SourceError
from .sources import Record, load_image
from .util import chunks

THUMB_SIDE = 512  # previews kept in the collection, so it can be shown without its source
SHARED_PER_RECORD = 1 << 20  # bytes of the models' inputs a reading process sends back per record through shared memory


@dataclass
class Read:
    """One record read: its fingerprint and either its preview and the models' inputs (`prepared`
    for the encoder, `captioned` for the captioner), the columns an update takes over from the
    previous collection, or why it is skipped."""

    record: Record
    fingerprint: dict | None = None
    thumb: bytes | None = None
    prepared: object = None
    captioned: object = None
    taken: dict | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class Reader:
    """Reads one record. `at_least` (shorter side, longer side) is what the models and the
    preview need, so JPEGs may be decoded at a reduced scale (see `sources.load_image`);
    `prepare` (the encoder's) and `caption_prepare` (the captioner's; None: no captioner) make
    the models' inputs from the image, one input where both prepare alike; with `previous` (an
    update), unchanged items are taken over instead of decoded."""

    max_pixels: int
    at_least: tuple[int, int] | None
    prepare: Callable
    caption_prepare: Callable | None = None
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
                fingerprint = {"content": content, "record": record_sha, "size": stat[0], "mtime": stat[1],
                               "phash": dedup.dhash(image)}
                return Read(record, fingerprint, thumbnail(image), *self._inputs(image))
        return Read(record, {**previous.fingerprint(row), "size": stat[0], "mtime": stat[1]},
                    taken=previous.columns(row))

    def _inputs(self, image: Image.Image) -> tuple:
        """(the encoder's input, the captioner's) made from an image."""
        prepared = self.prepare(image)
        if self.caption_prepare is None:
            return prepared, None
        return prepared, prepared if self.caption_prepare == self.prepare else self.caption_prepare(image)


def draft_sides(*models) -> tuple[int, int] | None:
    """(shorter side, longer side) a decoded image must keep for the models' preprocessing and
    the preview; None (decode at full size) when a model does not say what it needs."""
    sides = [m.image_side for m in models if m is not None]
    return None if None in sides else (max(sides, default=0), THUMB_SIDE)


def read_records(records: Iterable[Record], reader: Reader, workers: int, ahead: int, chunk: int = 8) -> Iterator[Read]:
    """`reader` applied to each record, in order, by `workers` workers that are handed `chunk`
    records at a time and keep up to `ahead` records read in advance, and at least two chunks
    each, so that none waits (one worker: in this thread, as they are asked for)."""
    if workers == 1:
        yield from map(reader, records)
        return
    ahead = max(ahead, 2 * workers * chunk)
    gc.freeze()  # the objects there are now stay out of the reading processes' collections: shared, not copied
    shared = _Shared(ahead // chunk + 1, chunk * SHARED_PER_RECORD) if _forks() else None
    pool, pending = _pool(workers, reader, shared), deque()
    given = None if shared else reader  # a process has its own
    try:
        for i, some in enumerate(chunks(records, chunk)):
            pending.append((some, pool.submit(_read_all, some, given, None if shared is None else i % shared.slots)))
            if len(pending) * chunk > ahead:  # so at most `shared.slots` chunks are in flight
                yield from _received(*pending.popleft(), shared)
        while pending:
            yield from _received(*pending.popleft(), shared)
    except BrokenProcessPool as e:
        raise CollectionError("A reading process ended before its images were read (out of memory?). "
                              "Run the build again to go on from the last shard written, or with fewer --workers.") from e
    finally:
        pool.shutdown(cancel_futures=True)
        gc.unfreeze()


def _forks() -> bool:
    """Whether the build reads in forked processes (Linux) rather than in threads."""
    return sys.platform == "linux"


def _pool(workers: int, reader: Reader, shared: _Shared | None) -> Executor:
    if shared is None:
        return ThreadPoolExecutor(workers, thread_name_prefix="mosaic-read")
    return ProcessPoolExecutor(workers, multiprocessing.get_context("fork"), initializer=_start_process,
                               initargs=(reader, shared))


_reader: Reader | None = None  # a reading process's reader, inherited when it is forked
_shared: _Shared | None = None  # and the memory it shares with the build


def _start_process(reader: Reader, shared: _Shared) -> None:
    """Set up a reading process: its reader and the memory it sends pixels through; one torch
    thread (the cores are its siblings'); no Ctrl-C of its own (the build stops it); and an end
    when the build's process ends, killed or not."""
    global _reader, _shared
    _reader, _shared = reader, shared
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _read_all(records: tuple, reader: Reader | None, slot: int | None) -> list[Read]:
    """The reads of a chunk of records, without the records (the build has them: a record may
    hold a decoded image); in a reading process, with their images put in `slot`."""
    reads = list(map(reader or _reader, records))
    for r in (r for r in reads if isinstance(r, Read)):
        r.record = None
    return reads if slot is None else _shared.put(reads, slot)


def _received(records: tuple, done: Future, shared: _Shared | None) -> list[Read]:
    """A chunk's reads as the build takes them: with their records, their images out of the shared memory."""
    reads = done.result()
    for record, r in zip(records, reads):
        if isinstance(r, Read):
            r.record = record
    return reads if shared is None else shared.taken(reads)


@dataclass(frozen=True)
class _Pixels:
    """Where a reading process put an image in the shared memory."""

    at: int
    mode: str
    size: tuple[int, int]
    length: int


class _Shared:
    """Memory that the reading processes share with the build (mapped before they fork), through
    which they send back the models' inputs as raw pixels: pickling them costs both sides more
    than the copy. A slot of `size` bytes per chunk in flight, used in turn; an input that is not
    an RGB or grey image, or that no longer fits its chunk's slot, is pickled as before."""

    def __init__(self, slots: int, size: int):
        self.slots, self.size = slots, size
        self.memory = mmap.mmap(-1, slots * size)

    def put(self, reads: list[Read], slot: int) -> list[Read]:
        """In a reading process: `reads` with their images written into `slot` (each input once,
        when the encoder and the captioner share it)."""
        at, end = slot * self.size, (slot + 1) * self.size

        def place(image):
            nonlocal at
            if not isinstance(image, Image.Image) or image.mode not in ("RGB", "L"):
                return image
            data = image.tobytes()
            if at + len(data) > end:
                return image
            self.memory[at:at + len(data)] = data
            at += len(data)
            return _Pixels(at - len(data), image.mode, image.size, len(data))

        return _each_input(reads, place)

    def taken(self, reads: list[Read]) -> list[Read]:
        """In the build: `reads` with their images copied out of the shared memory (their slot is
        free again)."""
        def take(pixels):
            if not isinstance(pixels, _Pixels):
                return pixels
            return Image.frombytes(pixels.mode, pixels.size, self.memory[pixels.at:pixels.at + pixels.length])

        return _each_input(reads, take)


def _each_input(reads: list[Read], change: Callable) -> list[Read]:
    """`reads` with `change` applied to their models' inputs, once to an input both models share."""
    for r in (r for r in reads if isinstance(r, Read)):
        same = r.captioned is r.prepared
        r.prepared = change(r.prepared)
        r.captioned = r.prepared if same else change(r.captioned)
    return reads


def cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(encoder) -> int:
    """Reading workers when none are asked for: one per core for a model on a GPU; one for a model
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
