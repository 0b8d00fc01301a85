"""Updating a collection in place (fast tier: the fake encoder, a folder of coloured pictures)."""
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
from fakes import FakeEncoder, picture
from PIL import Image

from mosaic import update
from mosaic.build import BuildConfig, build
from mosaic.collection import Collection
from mosaic.errors import CollectionError
from mosaic.index import ExactIndex, HnswIndex

COLOURS = ["red", "green", "blue", "yellow", "black", "white"]


def folder_of_pictures(root, n=12):
    root.mkdir(parents=True)
    for i in range(n):
        picture(COLOURS[i % 6], COLOURS[(i * 5 + 1) % 6]).save(root / f"{i:02d}.png")
    return root


def config(root):
    return BuildConfig("folder", str(root), model="fake", captioner="none", shard_size=4)


@pytest.fixture
def counted(fake_encoder, monkeypatch):
    """How many images the fake encoder embeds."""
    seen = []
    original = FakeEncoder.encode_images
    monkeypatch.setattr(FakeEncoder, "encode_images", lambda self, images: seen.extend(images) or original(self, images))
    return seen


def change_folder(root):
    picture("green", "green").save(root / "new-1.png")
    picture("blue", "blue").save(root / "new-2.png")
    picture("white", "black").save(root / "03.png")  # changed bytes
    (root / "05.png").unlink()
    (root / "07.png").unlink()
    os.utime(root / "08.png", ns=(1, 1))  # touched: other time, same bytes


def assert_same(a: Collection, b: Collection):
    assert a.ids() == b.ids()
    assert a.metadata.equals(b.metadata) and a.captions.equals(b.captions)
    for name in ("image_emb", "text_emb", "omni_emb", "tags"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-5)
    assert a.files.thumbs.read_bytes() == b.files.thumbs.read_bytes()


def test_an_update_equals_a_fresh_build_and_computes_only_what_changed(tmp_path, counted):
    root = folder_of_pictures(tmp_path / "photos")
    out = build(config(root), tmp_path / "c", progress=False)
    change_folder(root)
    counted.clear()
    build(config(root), out, progress=False, update=True)
    assert len(counted) == 3  # two new files, one changed; the touched one is hashed, not embedded
    updated = Collection.load(out)
    assert updated.manifest.last_update == {"added": ["new-1.png", "new-2.png"], "changed": ["03.png"],
                                            "removed": ["05.png", "07.png"], "unchanged": 9}
    assert_same(updated, Collection.load(build(config(root), tmp_path / "fresh", progress=False)))
    assert not update.staging(out).exists() and not list(tmp_path.glob(".c.*"))
    for space in ("image", "text", "omni"):  # the graphs index the updated embeddings
        vectors = np.asarray(getattr(updated, f"{space}_emb"))
        graph = HnswIndex(updated.files.hnsw(space))
        assert len(graph) == len(vectors)
        np.testing.assert_allclose(graph.search(vectors, 3)[0], ExactIndex(vectors, device="cpu").search(vectors, 3)[0],
                                   atol=1e-5)


def test_an_update_keeps_the_settings(tmp_path, fake_encoder):
    root = folder_of_pictures(tmp_path / "photos")
    out = build(config(root), tmp_path / "c", progress=False)
    with pytest.raises(CollectionError, match="other settings.*vocab"):
        build(BuildConfig("folder", str(root), model="fake", captioner="none", shard_size=4, vocab="art"), out,
              update=True)


class Killed(BaseException):
    """Stands for a SIGKILL at one point of an update."""


def test_an_update_cut_short_while_building_leaves_the_old_collection_and_resumes(tmp_path, fake_encoder, monkeypatch):
    root = folder_of_pictures(tmp_path / "photos")
    out = build(config(root), tmp_path / "c", progress=False)
    before = Collection.load(out).ids()
    change_folder(root)
    from mosaic import build as build_module

    written = []
    real = build_module._write_shard
    monkeypatch.setattr(build_module, "_write_shard",
                        lambda *a: real(*a) if not written.append(1) and len(written) < 3 else (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        build(config(root), out, progress=False, update=True)
    assert Collection.load(out).ids() == before and update.staging(out).exists()
    monkeypatch.setattr(build_module, "_write_shard", real)
    build(config(root), out, progress=False, update=True)
    assert_same(Collection.load(out), Collection.load(build(config(root), tmp_path / "fresh", progress=False)))


@pytest.mark.parametrize("renames_done", [1, 2])
def test_an_update_cut_short_while_swapping_leaves_old_or_new(tmp_path, fake_encoder, monkeypatch, renames_done):
    root = folder_of_pictures(tmp_path / "photos")
    out = build(config(root), tmp_path / "c", progress=False)
    change_folder(root)
    fresh = Collection.load(build(config(root), tmp_path / "fresh", progress=False))
    with monkeypatch.context() as m:
        m.setattr(update, "os", KilledAfter(os, "rename", renames_done))
        m.setattr(update, "shutil", KilledAfter(shutil, "rmtree", 0))
        with pytest.raises(Killed):
            build(config(root), out, progress=False, update=True)
    assert (tmp_path / "c").exists() == (renames_done == 2)
    assert_same(Collection.load(out), fresh)  # the staged update was complete: it goes in
    build(config(root), out, progress=False, update=True)  # nothing changed since; leftovers go
    assert_same(Collection.load(out), fresh)
    assert not list(tmp_path.glob(".c.*"))


class KilledAfter:
    """A module whose function `name` works `n` times, then stands for a kill."""

    def __init__(self, module, name, n):
        self.module, self.name, self.left = module, name, n

    def __getattr__(self, attr):
        if attr != self.name:
            return getattr(self.module, attr)
        if not self.left:
            raise Killed()
        self.left -= 1
        return getattr(self.module, attr)


def test_the_update_and_verify_commands(tmp_path, fake_encoder, capsys):
    from mosaic import cli

    root = folder_of_pictures(tmp_path / "photos")
    cli.main(["build", "folder", str(root), "--model", "fake", "--captioner", "none", "--out", str(tmp_path / "c"),
              "--quiet"])
    change_folder(root)
    cli.main(["update", str(tmp_path / "c"), "--quiet"])
    assert "2 added, 1 changed, 2 removed, 9 unchanged" in capsys.readouterr().out
    cli.main(["build", "folder", str(root), "--model", "fake", "--captioner", "none", "--out", str(tmp_path / "c"),
              "--update", "--quiet"])
    cli.main(["verify", str(tmp_path / "c")])
    assert "c: 12 items; all" in capsys.readouterr().out
    (tmp_path / "c" / "tags.npy").write_bytes((tmp_path / "c" / "tags.npy").read_bytes()[:-4] + b"\x00\x00\x80\x7f")
    with pytest.raises(SystemExit, match="error: .*tags.npy changed since it was built"):
        cli.main(["verify", str(tmp_path / "c")])


@pytest.mark.slow
def test_a_captions_collection_updates_like_a_fresh_build(tmp_path, flickr_dir, monkeypatch):
    """On a copy of the Flickr8k sample: 10 photos added, 3 changed, 2 deleted (with their caption
    rows); the update embeds those 13 only and equals a fresh build of the final data."""
    from mosaic.models import load_encoder

    rows = (flickr_dir / "captions.txt").read_text().splitlines()
    header, by_image = rows[0], {}
    for line in rows[1:]:
        by_image.setdefault(line.split(",", 1)[0], []).append(line)
    names = sorted(by_image)[:70]
    data = tmp_path / "flickr"
    (data / "images").mkdir(parents=True)

    def write(keep):
        for name in keep:
            if not (data / "images" / name).exists():
                shutil.copy(flickr_dir / "images" / name, data / "images" / name)
        (data / "captions.txt").write_text("\n".join([header] + [r for n in keep for r in by_image[n]]) + "\n")

    write(names[:60])
    cfg = BuildConfig("captions", str(data), model="lite", captioner="labels", shard_size=16)
    out = build(cfg, tmp_path / "c", progress=False)
    for name in names[:3]:  # changed pictures
        Image.open(data / "images" / name).rotate(180).save(data / "images" / name)
    for name in names[3:5]:
        (data / "images" / name).unlink()
    write(names[:3] + names[5:70])
    encoder, embedded = load_encoder("lite"), []
    original = encoder.encode_images
    monkeypatch.setattr(encoder, "encode_images", lambda images: embedded.extend(images) or original(images))
    build(cfg, out, progress=False, update=True)
    assert len(embedded) == 13
    monkeypatch.undo()
    changes = Collection.load(out).manifest.last_update
    assert (len(changes["added"]), len(changes["changed"]), len(changes["removed"])) == (10, 3, 2)
    assert_same(Collection.load(out), Collection.load(build(cfg, tmp_path / "fresh", progress=False)))


def test_the_progress_bar_knows_the_total(tmp_path, fake_encoder, capsys):
    from mosaic.sources import source_size

    root = folder_of_pictures(tmp_path / "photos")
    (root / "notes.txt").write_text("not an image")
    assert source_size("folder", str(root)) == 12 and source_size("hub", "any/repo") is None
    build(config(root), tmp_path / "c", progress=True)
    assert "12/12" in capsys.readouterr().err  # a total (and so an ETA) from the start
    build(replace(config(root), limit=5), tmp_path / "d", progress=True)
    assert "5/5" in capsys.readouterr().err
