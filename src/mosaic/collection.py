"""A collection on disk: a self-describing folder, written in shards, read memory-mapped.

    artifacts/<name>/
      manifest.json        models, dims, counts, vocabulary, fields, skipped files, sizes, checksums
      .lock                held by the one process writing the collection
      metadata.parquet     one row per item: id, caption (generated), source metadata
      fingerprints.parquet one row per item: hashes of its image and record, file size and time,
                           perceptual hash
      duplicates.json      groups of exact and of near duplicates (ids)
      captions.parquet     one row per caption: item, text, kind (human|generated)
      image_emb.npy        (items, dim) float32, L2-normalised
      text_emb.npy         (captions, dim) float32, L2-normalised
      omni_emb.npy         (items, dim): image + mean caption embedding, normalised
      tags.npy             (items, tags) cosine of each image to each tag prompt
      tag_emb.npy          (tags, dim) embeddings of the tag prompts
      thumbs.bin           JPEG previews (<= 512 px) of all items, back to back
      thumbs.npy           (items + 1,) int64 byte offsets of each preview in thumbs.bin
      index/*.hnsw         HNSW graphs (FAISS; image, caption, omni): the approximate indexes searched
      index/*.ann          Annoy indexes of the same spaces, when built with --annoy

While building, finished shards live in shards/NNNNN/ and are listed in the manifest; a shard
becomes part of the collection only once it is completely on disk, and the collection only once
the manifest says it is complete. Loading checks every file's size and every array's shape
against the manifest (cheap, always); `Collection.verify` compares checksums (reads everything).
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from .errors import CollectionError
from .query import Bound
from .sources import Fields, fields_of
from .util import sha256, write_json

SCHEMA_VERSION = 2
ITEM_ARRAYS = ("image_emb", "tags")  # one row per item
CAPTION_ARRAYS = ("text_emb",)  # one row per caption
FINGERPRINTS = pa.schema([("id", pa.string()), ("content", pa.string()), ("record", pa.string()),
                          ("size", pa.int64()), ("mtime", pa.int64()), ("phash", pa.int64())])  # mosaic.update, .dedup
EMBEDDINGS = ("image", "text", "omni")  # searchable spaces: <name>_emb.npy, each with approximate indexes
INDEX_NAMES = {"image": "image", "text": "caption", "omni": "omni"}


@dataclass(frozen=True)
class Files:
    """Where each part of a collection (or of one of its shards) lives under its folder."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def metadata(self) -> Path:
        return self.root / "metadata.parquet"

    @property
    def captions(self) -> Path:
        return self.root / "captions.parquet"

    @property
    def fingerprints(self) -> Path:
        return self.root / "fingerprints.parquet"

    @property
    def duplicates(self) -> Path:
        return self.root / "duplicates.json"

    @property
    def thumbs(self) -> Path:
        return self.root / "thumbs.bin"

    @property
    def thumb_offsets(self) -> Path:
        return self.root / "thumbs.npy"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def array(self, name: str) -> Path:
        """`image_emb`, `text_emb`, `omni_emb`, `tags` or `tag_emb`."""
        return self.root / f"{name}.npy"

    def annoy(self, space: str) -> Path:
        """The Annoy index of a searchable space (`image`, `text` or `omni`)."""
        return self.root / "index" / f"{INDEX_NAMES[space]}.ann"

    def hnsw(self, space: str) -> Path:
        """The HNSW graph of a searchable space (`image`, `text` or `omni`)."""
        return self.root / "index" / f"{INDEX_NAMES[space]}.hnsw"

    def shard(self, index: int) -> Path:
        return self.shards / f"{index:05d}"


@dataclass
class Manifest:
    """manifest.json: how a collection was built, what it holds, and how far its build got.

    `config` is the build's identity (a resumed build must match it), `models` the encoder and
    captioner specs, `fields` what the source's metadata fields mean (`sources.Fields`)."""

    name: str
    config: dict
    models: dict
    fields: dict
    schema_version: int = SCHEMA_VERSION
    complete: bool = False
    shards: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    dim: int = 0
    vocabulary: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    dtype: str = "float32"
    checksums: dict = field(default_factory=dict)  # sha256 of every file, compared by `mosaic verify`
    sizes: dict = field(default_factory=dict)  # bytes of every file, compared at every load
    last_update: dict = field(default_factory=dict)  # ids added, changed, removed by the last update

    @classmethod
    def read(cls, root: str | Path) -> Manifest | None:
        """The manifest of the collection at `root`, or None when there is none."""
        path = Files(Path(root)).manifest
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            data.setdefault("fields", asdict(fields_of(data["config"]["source"])))  # written before fields were
            return cls(**{f.name: data[f.name] for f in dataclass_fields(cls) if f.name in data})
        except (ValueError, KeyError, TypeError) as e:
            raise CollectionError(f"The manifest of '{Path(root).name}' is damaged ({type(e).__name__}). "
                                  "Rebuild the collection with `mosaic build ... --overwrite`.") from None

    def write(self, root: Path) -> None:
        write_json(Files(root).manifest, asdict(self))

    def problem(self) -> str | None:
        """Why the collection cannot be searched yet (None when it can)."""
        if self.schema_version != SCHEMA_VERSION:
            return (f"'{self.name}' has schema version {self.schema_version}, this Mosaic reads {SCHEMA_VERSION}. "
                    "Rebuild it with `mosaic build --overwrite`.")
        if not self.complete:
            return f"'{self.name}' is not finished building. Run the same `mosaic build` again to resume it."
        return None

    @property
    def source_fields(self) -> Fields:
        return Fields(**{**self.fields, "text": tuple(self.fields.get("text", ()))})


def write_shard(folder: Path, items: list[dict], columns: dict, prints: list[dict]) -> None:
    """Write one shard atomically (to a temporary folder renamed into place)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = Files(tmp)
    rows = [{**item, "caption": gen} for item, gen in zip(items, columns["generated"])]
    pq.write_table(pa.Table.from_pylist(rows), files.metadata)
    pq.write_table(pa.Table.from_pylist(prints, schema=FINGERPRINTS), files.fingerprints)
    pq.write_table(pa.table({"item": columns["caption_item"], "text": columns["caption_text"],
                             "kind": columns["caption_kind"]}), files.captions)
    for name in ITEM_ARRAYS + CAPTION_ARRAYS:
        np.save(files.array(name), columns[name])
    files.thumbs.write_bytes(b"".join(columns["thumbs"]))
    np.save(files.thumb_offsets, np.cumsum([0] + [len(t) for t in columns["thumbs"]]).astype(np.int64))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def seal(root: Path, manifest: Manifest) -> None:
    """Record the size and checksum of every file of the collection at `root` (not its shards) and
    write the manifest as complete: the one step that makes it a collection."""
    files = Files(root)
    done = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and files.shards not in p.parents and p not in (files.manifest, files.lock))
    manifest.complete = True
    manifest.checksums = {name: sha256(root / name) for name in done}
    manifest.sizes = {name: (root / name).stat().st_size for name in done}
    manifest.write(root)


def _concat_npy(files: list[Path], out: Path) -> np.ndarray:
    """Concatenate .npy files into one, streaming through a memory map (memory stays flat)."""
    arrays = [np.load(f, mmap_mode="r") for f in files]
    rows = sum(a.shape[0] for a in arrays)
    dst = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(rows, *arrays[0].shape[1:]))
    at = 0
    for a in arrays:
        dst[at:at + len(a)] = a
        at += len(a)
    dst.flush()
    return np.load(out, mmap_mode="r")


def consolidate(root: Path, shard_dirs: list[Path], chunk: int = 65536) -> None:
    """Merge finished shards into the collection's final files."""
    out, shards = Files(root), [Files(d) for d in shard_dirs]
    meta = [pq.read_table(s.metadata) for s in shards]
    pq.write_table(pa.concat_tables(meta, promote_options="default"), out.metadata)
    pq.write_table(pa.concat_tables([_fingerprints(s, m) for s, m in zip(shards, meta)]), out.fingerprints)
    caps, offset = [], 0
    for s, m in zip(shards, meta):
        t = pq.read_table(s.captions)
        caps.append(t.set_column(0, "item", pc.add(t["item"], offset)))
        offset += m.num_rows
    captions = pa.concat_tables(caps)
    pq.write_table(captions, out.captions)
    arrays = {name: _concat_npy([s.array(name) for s in shards], out.array(name))
              for name in ITEM_ARRAYS + CAPTION_ARRAYS}
    offsets, at = [np.zeros(1, np.int64)], 0
    with open(out.thumbs, "wb") as dst:
        for s in shards:
            with open(s.thumbs, "rb") as src:
                shutil.copyfileobj(src, dst)
            o = np.load(s.thumb_offsets)
            offsets.append(o[1:] + at)
            at += int(o[-1])
    np.save(out.thumb_offsets, np.concatenate(offsets))
    _write_omni(out, arrays["image_emb"], arrays["text_emb"], captions["item"].to_numpy(), chunk)


def _fingerprints(shard: Files, meta: pa.Table) -> pa.Table:
    """A shard's fingerprints; empty ones for a shard written before they were kept."""
    if shard.fingerprints.exists():
        return pq.read_table(shard.fingerprints)
    return pa.Table.from_pylist([{"id": i} for i in meta["id"].to_pylist()], schema=FINGERPRINTS)


def _write_omni(out: Files, image: np.ndarray, text: np.ndarray, owner: np.ndarray, chunk: int) -> None:
    """omni = image + mean of its captions' embeddings, normalised; summed chunk by chunk."""
    omni = np.lib.format.open_memmap(out.array("omni_emb"), mode="w+", dtype=np.float32, shape=image.shape)
    omni[:] = image
    counts = np.bincount(owner, minlength=len(image)).astype(np.float32)
    for i in range(0, len(owner), chunk):
        np.add.at(omni, owner[i:i + chunk], text[i:i + chunk] / counts[owner[i:i + chunk], None])
    omni /= np.maximum(np.linalg.norm(omni, axis=1, keepdims=True), 1e-12)
    omni.flush()


@contextlib.contextmanager
def writing(root: Path):
    """Hold the collection's write lock while building or changing it. A second writer stops at
    once with a message naming the holder; the lock goes with its process, however it ends."""
    root.mkdir(parents=True, exist_ok=True)
    with open(Files(root).lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise CollectionError(f"'{root.name}' is being written by another Mosaic process (pid {f.read().strip()}). "
                                  "Wait for it to finish (or stop it), then run the command again.") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield


def clear(root: Path) -> None:
    """Remove everything in a collection's folder but its lock (held by the caller)."""
    for entry in root.iterdir():
        if entry.name != Files(root).lock.name:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _bound_mask(name: str, values: list, bound: Bound) -> np.ndarray:
    """Which values lie on the right side of a range's end: numbers compare as numbers."""
    numeric = all(isinstance(v, (int, float)) for v in values if v is not None)
    try:
        limit = float(bound.value) if numeric else bound.value
    except ValueError:
        raise CollectionError(f"The filter '{name}{bound.op}{bound.value}' needs a number.") from None
    keep = (lambda v: v >= limit) if bound.op == ">=" else (lambda v: v <= limit)
    return np.array([v is not None and keep(v if numeric else str(v)) for v in values], bool)


def _damaged(manifest: Manifest, what: str) -> CollectionError:
    return CollectionError(f"Collection '{manifest.name}' is damaged: {what}. Rebuild it: run the same "
                           "`mosaic build` command with --overwrite.")


def _check_sizes(root: Path, manifest: Manifest) -> None:
    """Every file has the size it had when the build finished (cut or missing files are found
    before anything reads them; an index read past its end would crash the process)."""
    for name, size in manifest.sizes.items():
        path = root / name
        actual = path.stat().st_size if path.exists() else None
        if actual != size:
            raise _damaged(manifest, f"{name} is {'missing' if actual is None else f'{actual:,} bytes, not {size:,}'}")


def _read(manifest: Manifest, path: Path, reader):
    """`reader(path)`, or a CollectionError naming the file when numpy or pyarrow cannot parse it."""
    try:
        return reader(path)
    except (OSError, ValueError, EOFError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise _damaged(manifest, f"{path.name} cannot be read ({type(e).__name__})") from None


@dataclass
class Collection:
    """A finished collection, loaded read-only (embeddings memory-mapped)."""

    path: Path
    manifest: Manifest
    metadata: pa.Table
    captions: pa.Table
    image_emb: np.ndarray
    text_emb: np.ndarray
    omni_emb: np.ndarray
    tags: np.ndarray
    tag_emb: np.ndarray

    @classmethod
    def load(cls, path: str | Path) -> Collection:
        """A collection from its folder, or from a Hub dataset repository given as hf://user/repo."""
        if str(path).startswith("hf://"):
            from .hub import download_dataset

            path = download_dataset(str(path).removeprefix("hf://"))
        path = Path(path)
        manifest = Manifest.read(path)
        if manifest is None:  # perhaps an update was cut short while it swapped folders
            from .update import recover

            recover(path)
            manifest = Manifest.read(path)
        if manifest is None:
            raise CollectionError(f"No collection at {path} (no manifest.json). Build one with `mosaic build`.")
        if manifest.problem():
            raise CollectionError(manifest.problem())
        _check_sizes(path, manifest)
        files = Files(path)
        table = lambda file: _read(manifest, file, pq.read_table)  # noqa: E731
        npy = lambda name: _read(manifest, files.array(name), lambda f: np.load(f, mmap_mode="r"))  # noqa: E731
        c = cls(path, manifest, table(files.metadata), table(files.captions), npy("image_emb"), npy("text_emb"),
                npy("omni_emb"), np.asarray(npy("tags")), np.asarray(npy("tag_emb")))
        c._check_shapes()
        return c

    def _check_shapes(self) -> None:
        """Every array agrees with the metadata and the manifest; embeddings are unit vectors
        (a sample of rows: enough to catch overwritten bytes without reading everything)."""
        n, m, dim, tags = len(self), self.captions.num_rows, self.manifest.dim, len(self.tag_names)
        expected = {"image_emb": (n, dim), "omni_emb": (n, dim), "text_emb": (m, dim), "tags": (n, tags),
                    "tag_emb": (tags, dim)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise _damaged(self.manifest, f"{name}.npy holds {getattr(self, name).shape} values, "
                                              f"the collection needs {shape}")
        if (n, m) != (self.manifest.counts["items"], self.manifest.counts["captions"]):
            raise _damaged(self.manifest, f"it holds {n} items and {m} captions, its manifest says "
                                          f"{self.manifest.counts['items']} and {self.manifest.counts['captions']}")
        if len(self._thumb_offsets) != n + 1:
            raise _damaged(self.manifest, "thumbs.npy does not index every preview")
        for name in ("image_emb", "text_emb", "omni_emb"):
            array = getattr(self, name)
            sample = np.asarray(array[np.unique(np.linspace(0, len(array) - 1, min(len(array), 64)).astype(int))])
            with np.errstate(all="ignore"):  # overwritten bytes overflow
                unit = np.allclose(np.linalg.norm(sample, axis=1), 1, atol=1e-3)
            if not unit:
                raise _damaged(self.manifest, f"{name}.npy holds values that are not unit-length embeddings")

    def verify(self) -> int:
        """Compare every file with the checksum recorded when the collection was built (reads
        everything); returns how many files were checked, or raises CollectionError naming the
        files that differ."""
        bad = [name for name, digest in self.manifest.checksums.items()
               if not (self.path / name).exists() or sha256(self.path / name) != digest]
        if bad:
            raise _damaged(self.manifest, f"{', '.join(bad)} changed since it was built")
        return len(self.manifest.checksums)

    @property
    def files(self) -> Files:
        return Files(self.path)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def tag_names(self) -> list[str]:
        return self.manifest.vocabulary

    def __len__(self) -> int:
        return self.metadata.num_rows

    def ids(self) -> list[str]:
        return self.metadata["id"].to_pylist()

    @cached_property
    def rows_by_id(self) -> dict[str, int]:
        return {item_id: row for row, item_id in enumerate(self.ids())}

    def item(self, row: int) -> dict:
        """Metadata of one item (its generated caption under 'caption')."""
        return self.metadata.slice(row, 1).to_pylist()[0]

    @cached_property
    def _thumb_offsets(self) -> np.ndarray:
        return _read(self.manifest, self.files.thumb_offsets, lambda f: np.load(f, mmap_mode="r"))

    def thumbnail_bytes(self, row: int) -> bytes:
        """The item's stored JPEG preview, encoded."""
        start, end = self._thumb_offsets[row:row + 2]
        with open(self.files.thumbs, "rb") as f:
            f.seek(int(start))
            return f.read(int(end - start))

    def thumbnail(self, row: int) -> Image.Image:
        return Image.open(io.BytesIO(self.thumbnail_bytes(row))).convert("RGB")

    def item_captions(self, row: int, human: bool = False) -> list[str]:
        """An item's captions, in order; with `human`, only those written by people."""
        rows = self.caption_rows([row])[0]
        if human:
            rows = rows[np.isin(rows, self.human_captions)]
        return [self.captions["text"][int(i)].as_py() for i in rows]

    def caption_rows(self, items) -> tuple[np.ndarray, np.ndarray]:
        """The caption rows of `items` (item rows), in caption order for each item, and for each
        caption the position in `items` of its item; reads only those captions' entries."""
        order, starts = self._captions_by_item
        items = np.asarray(items, np.int64)
        first, counts = starts[items], starts[items + 1] - starts[items]
        owner = np.repeat(np.arange(len(items)), counts)
        within = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        return order[np.repeat(first, counts) + within], owner

    @cached_property
    def _captions_by_item(self) -> tuple[np.ndarray, np.ndarray]:
        """Caption rows sorted by item (stably) and where each item's run starts (n + 1 offsets)."""
        order = np.argsort(self.caption_items, kind="stable")
        return order, np.searchsorted(self.caption_items[order], np.arange(len(self) + 1))

    @cached_property
    def caption_items(self) -> np.ndarray:
        """The item row of every caption."""
        return self.captions["item"].to_numpy()

    @cached_property
    def human_captions(self) -> np.ndarray:
        """The rows of the captions written by people (not generated), in caption order."""
        return np.flatnonzero(np.asarray(self.captions["kind"].to_pylist()) == "human")

    @cached_property
    def first_human_caption(self) -> dict[int, str]:
        """The first caption written by a person for every item that has one, by item row."""
        out: dict[int, str] = {}
        texts = self.captions["text"]
        for i in self.human_captions:
            out.setdefault(int(self.caption_items[i]), texts[int(i)].as_py())
        return out

    def filter_fields(self) -> dict[str, list]:
        """Metadata fields usable as filters, with their values (fields with few distinct values, and
        not an identifier: a different value for every item that has one)."""
        out, skip = {}, self.manifest.source_fields.not_filters()
        for name in self.metadata.column_names:
            if name in skip:
                continue
            present = self.metadata[name].drop_null()
            values = pc.unique(present).to_pylist()
            identifier = len(values) == len(present) > 1
            if 1 <= len(values) <= max(50, len(self) // 10) and not identifier:
                out[name] = sorted(values, key=str)
        return out

    def filter_rows(self, filters: dict | None) -> np.ndarray | None:
        """Rows matching every filter (None when there are no filters): `field: values` where a
        list of values matches any of them and `query.Bound`s bound a range (see `query`).

        Unknown fields or values raise CollectionError naming the valid ones."""
        if not filters:
            return None
        mask = np.ones(len(self), bool)
        for name, wanted in filters.items():
            if name not in self.metadata.column_names:
                fields = ", ".join(self.filter_fields())
                raise CollectionError(f"Unknown filter '{name}'. " + (f"This collection can be filtered by: {fields}."
                                      if fields else "This collection has no metadata to filter by."))
            wanted = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
            values = self.metadata[name].to_pylist()
            equal = {str(v) for v in wanted if not isinstance(v, Bound)}
            if equal:
                mask &= self._equal_mask(name, values, equal)
            for bound in (v for v in wanted if isinstance(v, Bound)):
                mask &= _bound_mask(name, values, bound)
        return np.flatnonzero(mask)

    def _equal_mask(self, name: str, values: list, wanted: set[str]) -> np.ndarray:
        column = np.asarray([str(v) for v in values], dtype=object)
        missing = wanted - set(column)
        if missing:
            known = sorted(set(column) - {"None"})
            shown = ", ".join(known[:30]) + (" ..." if len(known) > 30 else "")
            raise CollectionError(f"Unknown value '{sorted(missing)[0]}' for filter '{name}'. Known values: {shown}.")
        return np.isin(column, list(wanted))

    def sorted_rows(self, rows: np.ndarray, by: str) -> np.ndarray:
        """`rows` ordered by a metadata field (`-field`: descending), items without it last; the
        order among equals kept."""
        name = by.removeprefix("-")
        if name not in self.metadata.column_names:
            raise CollectionError(f"Cannot sort by '{name}': this collection's fields are "
                                  f"{', '.join(c for c in self.metadata.column_names if c != 'caption')}.")
        values = self.metadata[name].to_pylist()
        present = [r for r in rows if values[r] is not None]
        present.sort(key=lambda r: values[r], reverse=by.startswith("-"))
        return np.asarray(present + [r for r in rows if values[r] is None], dtype=np.int64)

    @cached_property
    def duplicate_groups(self) -> dict:
        """{"exact": [[ids]], "near": [[ids]]} (empty for collections built before duplicates were kept)."""
        path = self.files.duplicates
        return json.loads(path.read_text()) if path.exists() else {"exact": [], "near": []}

    @cached_property
    def scenes(self) -> dict[str, list[int]]:
        """The rows of each scene in frame order (empty for collections without scenes)."""
        fields = self.manifest.source_fields
        if not fields.scene or not {fields.scene, fields.frame} <= set(self.metadata.column_names):
            return {}
        out: dict[str, list[tuple[int, int]]] = {}
        for row, (scene, frame) in enumerate(zip(self.metadata[fields.scene].to_pylist(),
                                                 self.metadata[fields.frame].to_pylist())):
            out.setdefault(scene, []).append((frame, row))
        return {scene: [row for _, row in sorted(frames)] for scene, frames in out.items()}
