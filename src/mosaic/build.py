"""The build: source -> stages -> shards -> collection -> indexes, streaming and resumable.

Records are read lazily in a fixed order and processed one shard at a time; each finished shard
is written atomically and recorded in the manifest. A killed build, run again with the same
arguments, skips the records of finished shards and carries on; a finished one is left alone.

Shards are processed in this process (engine "local": a pool of threads reads and decodes the
images ahead of the models, see `mosaic.reading`) or by a pool of Ray actors, each holding the
models (engine "ray", on a local or multi-node Ray cluster). Either way the driver writes the
same shards in the same order, so the collection is the same (embeddings up to float rounding:
actors may use other thread counts or devices) and resumes the same way; a local build writes
the same bytes whatever its number of workers.
"""
from __future__ import annotations

import errno
import itertools
import logging
import pickle
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from . import collection as coll
from . import dedup
from . import update as update_mod
from .cluster import ray_session
from .collection import Collection, Files, Manifest
from .errors import CollectionError, UsageError
from .index import build_annoy, build_hnsw
from .models import load_captioner, load_encoder, resolve_captioner, resolve_encoder
from .reading import Read, Reader, default_workers, draft_sides, read_records
from .sources import MAX_PIXELS, fields_of, open_source, select, source_size
from .stages import Vocabulary, concat_columns, item_columns, process_batch
from .util import chunks, write_json

log = logging.getLogger("mosaic")

DEFAULT_VOCAB = {"wikiart": "art", "wikiart-hub": "art", "driving": "driving"}
ENGINES = ("local", "ray")
RAY_WINDOW = 256  # shards handed to a Ray actor pool at a time (its actors load the models once)


@dataclass
class BuildConfig:
    """Everything that decides a collection's contents (a resumed build must match it)."""

    source: str
    path: str | None = None
    limit: int | None = None
    seed: int | None = None
    model: str = "auto"
    captioner: str = "auto"
    vocab: str | None = None
    shard_size: int = 256
    batch_size: int = 32
    max_pixels: int = MAX_PIXELS
    n_trees: int = 50
    annoy: bool = False  # also write Annoy indexes (the HNSW graphs are always written)
    options: dict = field(default_factory=dict)

    def resolved(self) -> BuildConfig:
        """A copy with `auto` models and the default vocabulary made concrete."""
        return replace(self, vocab=self.vocab or DEFAULT_VOCAB.get(self.source, "photos"),
                       model=resolve_encoder(self.model), captioner=resolve_captioner(self.captioner))

    def identity(self) -> dict:
        """The fields a resumed build must share with the one it resumes (not batching; `annoy`
        only when set, as collections built before it was an option have no such field)."""
        d = asdict(self)
        d.pop("batch_size")
        if not d["annoy"]:
            d.pop("annoy")
        return d


def build(config: BuildConfig, out: str | Path, overwrite: bool = False, progress: bool = True,
          engine: str = "local", workers: int | None = None, update: bool = False) -> Path:
    """Build (or resume, or leave alone when finished) the collection described by `config`;
    with `update`, bring a finished one up to date with its source (see `mosaic.update`).

    `engine` "local" reads and decodes images in `workers` threads (default: one per core with
    the model on a GPU, else one);
    "ray" runs the stages in `workers` Ray actors (default: one per CPU of the cluster, or one per
    GPU when it has GPUs) on the cluster at $RAY_ADDRESS, or on a local one."""
    if engine not in ENGINES:
        raise UsageError(f"Unknown engine '{engine}'. Use one of {', '.join(ENGINES)}.")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {workers}).")
    if engine == "ray" and update:
        raise UsageError("An update runs here: leave out --engine ray.")
    if engine == "ray":
        ray_session()  # before the models load: no Ray, or no cluster, fails here
    out, config = Path(out), config.resolved()
    created = not out.exists()
    try:
        with coll.writing(out):
            _build(out, config, overwrite, progress, engine, workers, update)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise CollectionError(f"The disk is full while building '{out.name}'. Free some space and run the same "
                              "command again: it resumes after the last finished shard.") from None
    finally:
        if created and not Files(out).manifest.exists():  # nothing was built: leave no empty folder
            shutil.rmtree(out, ignore_errors=True)
    return out


def _build(out: Path, config: BuildConfig, overwrite: bool, progress: bool, engine: str, workers: int | None,
           update: bool = False) -> None:
    """`build` while holding the collection's write lock."""
    update_mod.recover(out)
    manifest = _existing(out, config, overwrite, update)
    if manifest and manifest.complete and update:
        _update(out, config, progress, workers)
        return
    if manifest and manifest.complete:
        shutil.rmtree(Files(out).shards, ignore_errors=True)  # a build killed right after finishing
        log.info("%s is already built (%d items); nothing to do.", out, manifest.counts["items"])
        return
    _fill(out, manifest, config, progress, engine, workers)


def _update(out: Path, config: BuildConfig, progress: bool, workers: int | None) -> None:
    """Rebuild into the staging folder, taking over every unchanged item, then swap it in."""
    old = Collection.load(out)
    new = update_mod.staging(out)
    staged = Manifest.read(new)
    if staged and staged.config != config.identity():  # an update to other settings, cut short
        shutil.rmtree(new)
        staged = None
    new.mkdir(exist_ok=True)
    _fill(new, staged, config, progress, "local", workers, update_mod.Previous(old))
    changes = update_mod.changes(old, Collection.load(new))
    manifest = Manifest.read(new)
    manifest.name, manifest.last_update = out.name, changes
    manifest.write(new)
    update_mod.swap(out, new)
    log.info("updated %s: %d added, %d changed, %d removed, %d unchanged", out, len(changes["added"]),
             len(changes["changed"]), len(changes["removed"]), changes["unchanged"])


def _fill(out: Path, manifest: Manifest | None, config: BuildConfig, progress: bool, engine: str,
          workers: int | None, previous: update_mod.Previous | None = None) -> None:
    """Process the source's records after the finished shards, then finish the collection."""
    records = _records(config)
    encoder, tag_emb, vocab = _encoder_and_tags(config)
    manifest = manifest or Manifest(out.name, config.identity(), {"encoder": config.model, "captioner": config.captioner},
                                    asdict(fields_of(config.source)))
    manifest.dim, manifest.vocabulary = encoder.dim, vocab.names
    manifest.write(out)

    done = sum(s["records"] for s in manifest.shards)
    todo = itertools.islice(records, done, None)
    if engine == "ray":  # the actors hold the models; the captioner is not needed here
        shards = _ray_shards(chunks(todo, config.shard_size), config, workers)
    else:
        captioner = _captioner(config)
        reader = _reader(config, encoder, captioner, previous)
        reads = read_records(todo, reader, workers or default_workers(encoder), ahead=2 * config.batch_size)
        shards = _local_shards(reads, config, encoder, captioner, tag_emb)
    bar = tqdm(total=_total(config) if progress else None, initial=done, unit="img", desc=f"building {out.name}",
               disable=not progress)
    started, built = time.perf_counter(), 0
    for shard in shards:
        _write_shard(out, manifest, shard)
        built += len(shard.items) - shard.reused
        bar.update(shard.records_read)
    bar.close()
    elapsed = time.perf_counter() - started
    _finish(out, manifest, config, tag_emb)
    log.info("built %s: %d items (%d computed this run, %.1f images/s)", out, manifest.counts["items"],
             built, built / elapsed if elapsed else 0.0)


def _total(config: BuildConfig) -> int | None:
    """The records the build will read, when known (the progress bar's total and ETA)."""
    known = [n for n in (source_size(config.source, config.path, **config.options), config.limit) if n]
    return min(known) if known else None


def _existing(out: Path, config: BuildConfig, overwrite: bool, update: bool) -> Manifest | None:
    """The manifest of the collection already at `out` (None when there is none, or with
    `overwrite`, which removes it); one built with other settings is refused (an update may
    only read more or fewer records)."""
    manifest = Manifest.read(out)
    if manifest and overwrite:
        coll.clear(out)
        return None
    if manifest and manifest.complete and update:
        update_mod.check_update(manifest, config.identity())
        return manifest
    if manifest and manifest.config != config.identity():
        raise CollectionError(
            f"{out} was built with other settings ({_diff(manifest.config, config.identity())}). "
            "Use another output folder, or --overwrite to rebuild it.")
    return manifest


def _records(config: BuildConfig):
    """The source's records, the first already read: a missing path or an offline Hub fails
    here, before any model loads."""
    records = iter(select(open_source(config.source, config.path, **config.options), config.limit, config.seed))
    first = next(records, None)
    if first is None:
        raise CollectionError(f"The source '{config.source}' {config.path or ''} yielded no records.")
    return itertools.chain([first], records)


def _encoder_and_tags(config: BuildConfig) -> tuple:
    """(encoder, tag prompt embeddings, vocabulary); the vocabulary first, so a wrong name fails
    before a model loads."""
    vocab = Vocabulary.load(config.vocab)
    encoder = load_encoder(config.model)
    return encoder, encoder.encode_texts(vocab.prompts), vocab


def _captioner(config: BuildConfig):
    return None if config.captioner == "none" else load_captioner(config.captioner)


def _reader(config: BuildConfig, encoder, captioner, previous: update_mod.Previous | None = None) -> Reader:
    return Reader(config.max_pixels, draft_sides(encoder, captioner), encoder.prepare,
                  captioner.prepare if captioner else None, previous)


@dataclass
class Shard:
    """One shard's records processed: its items (metadata rows) with their columns and
    fingerprints, the records skipped with the reason, and how many items an update took over."""

    records_read: int
    items: list[dict]
    columns: dict
    prints: list[dict]
    skipped: list[dict]
    reused: int = 0


def _local_shards(reads, config: BuildConfig, encoder, captioner, tag_emb: np.ndarray):
    """The shards of a stream of reads, each processed here as its reads come."""
    while (shard := process_shard(itertools.islice(reads, config.shard_size), config, encoder, captioner,
                                  tag_emb)).records_read:
        yield shard


def process_shard(reads, config: BuildConfig, encoder, captioner, tag_emb: np.ndarray) -> Shard:
    """Process one shard's reads (`mosaic.reading`), taken one batch at a time, so memory holds a
    batch of pixels (and those read ahead), not a shard. Skipped records are reported; items an
    update takes over are not computed again."""
    shard = Shard(0, [], {}, [], [])
    parts = []
    for batch in chunks(reads, config.batch_size):
        shard.records_read += len(batch)
        todo = []  # (position in parts, read) of the items the models must see
        for r in batch:
            if r.skipped:
                shard.skipped.append({"id": r.record.id, "reason": r.skipped})
                continue
            shard.items.append({"id": r.record.id, **r.record.metadata})
            shard.prints.append({"id": r.record.id, **r.fingerprint})
            if r.taken is None:
                todo.append((len(parts), r))
            shard.reused += r.taken is not None
            parts.append(r.taken)
        if todo:
            parts = _computed(parts, todo, encoder, captioner, tag_emb)
    shard.columns = concat_columns(parts, encoder.dim, len(tag_emb))
    return shard


def _computed(parts: list, todo: list[tuple[int, Read]], encoder, captioner, tag_emb: np.ndarray) -> list:
    """`parts` with the columns of the reads in `todo` computed by the models in one batch."""
    reads = [r for _, r in todo]
    computed = process_batch([r.captioned for r in reads], [r.record.texts for r in reads], encoder, captioner,
                             tag_emb, [r.prepared for r in reads])
    computed["thumbs"] = [r.thumb for _, r in todo]
    for i, (at, _) in enumerate(todo):
        parts[at] = item_columns(computed, i)
    return parts


class _RayShardWorker:
    """A Ray actor holding the models; each call processes whole shards (pickled record lists)."""

    def __init__(self, config: dict, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.config = BuildConfig(**config)
        self.encoder, self.tag_emb, _ = _encoder_and_tags(self.config)
        self.captioner = _captioner(self.config)
        self.reader = _reader(self.config, self.encoder, self.captioner)

    def __call__(self, batch: dict) -> dict:
        done = [pickle.dumps(process_shard(map(self.reader, rs), self.config, self.encoder, self.captioner,
                                           self.tag_emb)) for rs in map(pickle.loads, batch["records"])]
        return {"shard": np.array(done, dtype=object)}


def _ray_shards(shard_records, config: BuildConfig, workers: int | None):
    """Each shard processed, in order, by a Ray actor pool."""
    ray = ray_session()
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # shards are written in record order
    context.enable_progress_bars = False  # ours counts the shards
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    gpus = int(sum(n.get("GPU", 0) for n in nodes))
    cpus = int(sum(n.get("CPU", 0) for n in nodes))
    workers = workers or gpus or max(1, cpus)
    if workers > (gpus or cpus):
        raise UsageError(f"--workers {workers} is more than the cluster's {gpus or cpus} "
                                   f"{'GPUs' if gpus else 'CPUs'}.")
    # CPU threads per actor: a fair share, and no more than the smallest node has
    threads = max(1, min(cpus // workers, int(min(n.get("CPU", 1) for n in nodes))))
    for window in chunks(shard_records, RAY_WINDOW):
        ds = ray.data.from_items([{"records": pickle.dumps(c)} for c in window], override_num_blocks=len(window))
        ds = ds.map_batches(_RayShardWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
                            fn_constructor_kwargs={"config": asdict(config), "threads": threads},
                            num_cpus=threads, num_gpus=1 if gpus else 0)
        for row in ds.iter_rows():
            yield pickle.loads(row["shard"])


def _diff(old: dict, new: dict) -> str:
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k))


def _write_shard(out: Path, manifest: Manifest, shard: Shard) -> None:
    index = len(manifest.shards)
    coll.write_shard(Files(out).shard(index), shard.items, shard.columns, shard.prints)
    manifest.shards.append({"index": index, "records": shard.records_read, "items": len(shard.items)})
    manifest.skipped.extend(shard.skipped)
    for s in shard.skipped:
        log.warning("skipped %s: %s", s["id"], s["reason"])
    manifest.write(out)


def _finish(out: Path, manifest: Manifest, config: BuildConfig, tag_emb: np.ndarray) -> None:
    files = Files(out)
    shards = [files.shard(s["index"]) for s in manifest.shards if s["items"]]
    if not shards:
        raise CollectionError(f"No readable images in the source; {len(manifest.skipped)} skipped "
                              "(see manifest.json).")
    coll.consolidate(out, shards)
    prints = pq.read_table(files.fingerprints).to_pydict()
    write_json(files.duplicates, dedup.find(prints["id"], prints["content"], prints["phash"]))
    np.save(files.array("tag_emb"), tag_emb.astype(np.float32))
    for space in coll.EMBEDDINGS:
        vectors = np.load(files.array(f"{space}_emb"), mmap_mode="r")
        files.hnsw(space).parent.mkdir(exist_ok=True)
        build_hnsw(vectors, files.hnsw(space))
        if config.annoy:
            build_annoy(vectors, files.annoy(space), config.n_trees)
    captions = np.load(files.array("text_emb"), mmap_mode="r").shape[0]
    manifest.counts = {"items": sum(s["items"] for s in manifest.shards), "captions": captions,
                       "skipped": len(manifest.skipped)}
    coll.seal(out, manifest)  # a kill after it leaves shards/ to the next build
    shutil.rmtree(files.shards)
