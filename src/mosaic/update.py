"""Updating a finished collection: what changed in its source, and a swap that is never half done.

Every item of a collection has a fingerprint (`fingerprints.parquet`): the SHA-256 of its image's
bytes and of its texts and metadata, and, for files, their size and modification time. An update
rebuilds the collection from its source into a staging folder beside it, taking over the columns
of every item whose id and fingerprint are unchanged (a file whose size and modification time
are unchanged is not even read; one whose bytes are unchanged is not decoded), so only new and
changed items meet the models. Then two renames swap the staging folder in: a kill at any point
leaves the old collection or the new one, and `recover` finishes or undoes a swap that was cut
short.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from .collection import Collection, Manifest, writing
from .errors import CollectionError
from .sources import Record


def record_hash(record: Record) -> str:
    """What the source says of an item besides its image: texts and metadata."""
    text = json.dumps({"texts": record.texts, "metadata": record.metadata}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_stat(record: Record) -> tuple[int | None, int | None]:
    """(size, modification time in ns) of a record's image file; (None, None) for other images."""
    image = record.image["path"] if isinstance(record.image, dict) and not record.image.get("bytes") else record.image
    if not isinstance(image, (str, Path)):
        return None, None
    stat = os.stat(image)
    return stat.st_size, stat.st_mtime_ns


def raw_image(record: Record) -> bytes | Image.Image:
    """The record's image as stored: file or dataset bytes, or an image a source decoded itself."""
    image = record.image
    if isinstance(image, dict):
        image = image.get("bytes") or image["path"]
    return Path(image).read_bytes() if isinstance(image, (str, Path)) else image


def content_hash(raw: bytes | Image.Image) -> str:
    return hashlib.sha256(raw if isinstance(raw, bytes) else raw.tobytes()).hexdigest()


class Previous:
    """The finished collection an update starts from: which of its items a record may take over,
    and their columns as the stages would compute them."""

    def __init__(self, collection: Collection):
        self.c, self.ids = collection, collection.ids()
        path = collection.files.fingerprints
        prints = pq.read_table(path).to_pylist() if path.exists() else []  # built before fingerprints: none
        self.prints = {p["id"]: (row, p) for row, p in enumerate(prints)}

    def unchanged(self, record: Record, record_sha: str, stat: tuple, content: str | None = None) -> int | None:
        """The row of the record's item when it is unchanged: same id, texts and metadata, and the
        same file size and time or, failing that, the same image bytes (`content`)."""
        row, old = self.prints.get(record.id, (None, None))
        if old is None or old["record"] != record_sha:
            return None
        if stat[0] is not None and (old["size"], old["mtime"]) == stat:
            return row
        return row if content is not None and old["content"] == content else None

    def fingerprint(self, row: int) -> dict:
        return {k: v for k, v in self.prints[self.ids[row]][1].items() if k != "id"}

    def columns(self, row: int) -> dict:
        """One item's columns, as `stages.process_batch` returns them for a batch of one."""
        c = self.c
        caps = np.flatnonzero(c.caption_items == row)
        return {"image_emb": np.asarray(c.image_emb[row:row + 1]), "generated": [c.item(row)["caption"]],
                "caption_text": [c.captions["text"][int(i)].as_py() for i in caps],
                "caption_item": np.zeros(len(caps), np.int64),
                "caption_kind": [c.captions["kind"][int(i)].as_py() for i in caps],
                "text_emb": np.asarray(c.text_emb[caps]), "tags": np.asarray(c.tags[row:row + 1]),
                "thumbs": [c.thumbnail_bytes(row)]}


def staging(root: Path) -> Path:
    """Where an update of `root` builds the new collection."""
    return root.with_name(f".{root.name}.update")


def _backup(root: Path) -> Path:
    return root.with_name(f".{root.name}.old")


def swap(root: Path, new: Path) -> None:
    """Put the finished collection `new` in the place of `root` (two renames; `recover` handles a
    kill between them), then delete the old one."""
    os.rename(root, _backup(root))
    os.rename(new, root)
    shutil.rmtree(_backup(root))


def recover(root: Path) -> None:
    """Finish or undo a swap cut short: when the old collection was moved aside but the new one
    not moved in, the new one goes in if it is complete, else the old one goes back."""
    backup = _backup(root)
    if not backup.exists():
        return
    with writing(backup):  # the lock moved with the old collection: an update still swapping holds it
        if root.exists():
            shutil.rmtree(backup)
            return
        new = Manifest.read(staging(root)) if staging(root).exists() else None
        os.rename(staging(root) if new and new.complete else backup, root)
    if backup.exists():  # the old collection, once the new one is in
        shutil.rmtree(backup)


def changes(old: Collection, new: Collection) -> dict:
    """What an update changed: ids added, changed (other bytes, texts or metadata) and removed,
    and how many items stayed as they were."""
    before, after = (Previous(c).prints for c in (old, new))
    same = lambda i: before[i][1]["content"] == after[i][1]["content"] and before[i][1]["record"] == after[i][1]["record"]  # noqa: E731
    both = [i for i in after if i in before]
    return {"added": [i for i in after if i not in before], "changed": [i for i in both if not same(i)],
            "removed": [i for i in before if i not in after], "unchanged": sum(map(same, both))}


def check_update(old: Manifest, identity: dict) -> None:
    """An update may read more records (`limit`) but must keep every other setting."""
    differs = {k for k in identity if k != "limit" and old.config.get(k) != identity[k]}
    if differs:
        raise CollectionError(f"'{old.name}' was built with other settings ({', '.join(sorted(differs))}); an update "
                              "keeps them. Rebuild it with --overwrite to change them.")
