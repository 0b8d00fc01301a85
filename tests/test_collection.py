"""The collection format's guarantees on the tiny fake-encoder collection (fast tier): damage is
found and named, writers exclude each other, leftovers go."""
import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from fakes import write_paintings

from mosaic import collection as coll
from mosaic.build import BuildConfig, build
from mosaic.collection import Collection
from mosaic.errors import CollectionError


@pytest.fixture
def copy(tiny, tmp_path):
    return shutil.copytree(tiny.collection.path, tmp_path / "paintings")


def overwrite_middle(path, seed=0):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 512] = np.random.default_rng(seed).bytes(512)
    path.write_bytes(bytes(data))


def cut(path, keep):
    path.write_bytes(path.read_bytes()[:keep])


CORRUPTIONS = {  # name -> (how, what the message names)
    "random bytes in image_emb.npy": (lambda c: overwrite_middle(c / "image_emb.npy"), "image_emb.npy"),
    "image_emb.npy halved": (lambda c: cut(c / "image_emb.npy", (c / "image_emb.npy").stat().st_size // 2), "image_emb.npy"),
    "text_emb.npy header cut": (lambda c: (c / "text_emb.npy").write_bytes((c / "text_emb.npy").read_bytes()[60:]),
                                "text_emb.npy"),
    "manifest.json broken": (lambda c: cut(c / "manifest.json", 100), "manifest"),
    "metadata.parquet with fewer rows": (lambda c: pq.write_table(pq.read_table(c / "metadata.parquet").slice(0, 10),
                                                                  c / "metadata.parquet"), "metadata.parquet"),
    "index/image.hnsw truncated": (lambda c: cut(c / "index" / "image.hnsw", 1000), "image.hnsw"),
    "thumbs.bin truncated": (lambda c: cut(c / "thumbs.bin", 100), "thumbs.bin"),
    "tags.npy missing": (lambda c: (c / "tags.npy").unlink(), "tags.npy"),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_damage_is_found_and_named_at_load(copy, name):
    damage, file = CORRUPTIONS[name]
    damage(copy)
    with pytest.raises(CollectionError, match=f"(?s){file}.*--overwrite"):
        Collection.load(copy)


def test_same_size_damage_is_found_by_verify(copy):
    assert Collection.load(copy).verify() == len(json.loads((copy / "manifest.json").read_text())["checksums"])
    data = bytearray((copy / "tags.npy").read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"  # the last tag score becomes +inf: same size, valid array
    (copy / "tags.npy").write_bytes(bytes(data))
    with pytest.raises(CollectionError, match="tags.npy changed since it was built"):
        Collection.load(copy).verify()


def test_a_second_writer_stops_with_the_holders_pid(tiny, tmp_path):
    root = write_paintings(tmp_path / "src")
    with coll.writing(tmp_path / "out"):
        with pytest.raises(CollectionError, match=r"being written by another Mosaic process \(pid \d+\)"):
            build(BuildConfig("wikiart", str(root), model="fake", captioner="none"), tmp_path / "out", progress=False)
    build(BuildConfig("wikiart", str(root), model="fake", captioner="none"), tmp_path / "out", progress=False)
    assert len(Collection.load(tmp_path / "out")) == 12


def test_shards_left_by_a_kill_after_finishing_are_removed(copy, tiny):
    (copy / "shards" / "00000").mkdir(parents=True)
    config = BuildConfig(**{k: v for k, v in Collection.load(copy).manifest.config.items()})
    build(config, copy, progress=False)
    assert not (copy / "shards").exists()


def test_a_failed_build_leaves_no_empty_folder(tmp_path, fake_encoder):
    with pytest.raises(Exception, match="not found"):
        build(BuildConfig("wikiart", str(tmp_path / "nothing"), model="fake", captioner="none"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_folder_build_lists_every_skipped_entry_without_local_paths(tmp_path, fake_encoder):
    from fakes import picture

    root = tmp_path / "photos"
    root.mkdir()
    picture("red", "blue").save(root / "good.png")
    (root / "gone.jpg").symlink_to(root / "nowhere.jpg")
    os.mkfifo(root / "pipe.png")
    (root / "notes.jpg").write_text("not an image")
    c = Collection.load(build(BuildConfig("folder", str(root), model="fake", captioner="none"), tmp_path / "c",
                              progress=False))
    assert c.ids() == ["good.png"]
    skipped = {s["id"]: s["reason"] for s in c.manifest.skipped}
    assert skipped["gone.jpg"] == "broken symbolic link" and skipped["pipe.png"].startswith("not a regular file")
    assert skipped["notes.jpg"].startswith("not an image Mosaic can read") and str(tmp_path) not in json.dumps(skipped)


def test_a_build_started_before_fingerprints_were_kept_resumes(tmp_path, fake_encoder, monkeypatch):
    from mosaic import build as build_module

    root = write_paintings(tmp_path / "src")
    config = BuildConfig("wikiart", str(root), model="fake", captioner="none", shard_size=4)
    real, written = build_module._write_shard, []

    def stop_after_one(*args):
        if written:
            raise KeyboardInterrupt
        written.append(real(*args))
    monkeypatch.setattr(build_module, "_write_shard", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        build(config, tmp_path / "out", progress=False)
    monkeypatch.setattr(build_module, "_write_shard", real)
    (tmp_path / "out" / "shards" / "00000" / "fingerprints.parquet").unlink()  # as an older version wrote it
    c = Collection.load(build(config, tmp_path / "out", progress=False))
    assert len(c) == 12 and c.duplicate_groups["exact"] == []  # the four without fingerprints are not "the same"


def test_caption_rows_match_a_scan_of_all_captions():
    """The per-item caption index gives what a pass over every caption does: each item's captions in
    caption order (none for an item without one), also for repeated and unsorted items."""
    import pyarrow as pa

    owners = np.array([3, 0, 3, 5, 0, 3, 1])  # item 2 and 4 have no caption
    c = Collection(None, None, pa.table({"id": [f"i{r}" for r in range(6)]}),
                   pa.table({"item": owners, "text": [f"t{i}" for i in range(len(owners))]}),
                   *[None] * 5)
    items = np.array([5, 3, 2, 0, 3, 4, 1])
    rows, owner = c.caption_rows(items)
    for i, item in enumerate(items):
        assert rows[owner == i].tolist() == np.flatnonzero(owners == item).tolist()
    assert c.item_captions(3) == ["t0", "t2", "t5"] and c.item_captions(4) == []
