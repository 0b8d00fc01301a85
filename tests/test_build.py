import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mosaic.build import BuildConfig, build
from mosaic.collection import Collection
from mosaic.errors import CollectionError
from mosaic.util import sha256

pytestmark = pytest.mark.slow


def flickr_config(flickr_dir, limit):
    return BuildConfig("captions", str(flickr_dir), limit=limit, model="lite", captioner="labels", shard_size=32)


def test_flickr_collection_is_complete_and_self_describing(flickr):
    c = flickr.collection
    m = c.manifest
    assert m.complete and m.counts == {"items": 300, "captions": 1800, "skipped": 0}
    assert m.models == {"encoder": "lite", "captioner": "labels"} and m.dim == 384
    assert c.image_emb.shape == (300, 384) and c.text_emb.shape == (1800, 384) and c.omni_emb.shape == (300, 384)
    np.testing.assert_allclose(np.linalg.norm(c.image_emb, axis=1), 1, atol=1e-5)
    kinds = c.captions["kind"].to_pylist()
    assert kinds.count("human") == 1500 and kinds.count("generated") == 300
    assert c.item(0)["caption"].startswith("a photo of")
    assert c.tags.shape == (300, len(c.tag_names)) and "objects:dog" in c.tag_names
    for name, digest in m.checksums.items():
        assert sha256(c.path / name) == digest
    assert not (c.path / "shards").exists()


def test_rebuilding_with_the_same_arguments_does_nothing(flickr, flickr_dir):
    path = flickr.collection.path
    files = lambda: {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.name != ".lock"}  # noqa: E731 - the lock names its holder
    before = files()
    build(BuildConfig("captions", str(flickr_dir), limit=300, model="lite", captioner="labels", shard_size=128,
                      annoy=True), path, progress=False)
    assert files() == before


def test_other_settings_on_an_existing_collection_are_refused(flickr, flickr_dir):
    with pytest.raises(CollectionError, match="limit: 300 -> 10"):
        build(BuildConfig("captions", str(flickr_dir), limit=10, model="lite", captioner="labels", shard_size=128),
              flickr.collection.path, progress=False)


def started(cmd: list[str], manifest, shards: int) -> subprocess.Popen:
    """A build command in a session of its own, once it has written `shards` shards."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 300
    while not (manifest.exists() and len(json.loads(manifest.read_text())["shards"]) >= shards):
        assert proc.poll() is None and time.time() < deadline, "the build ended before it could be stopped"
        time.sleep(0.2)
    return proc


def left_in_session(proc: subprocess.Popen) -> list[str]:
    """The processes still running in a command's session (its reading processes) after a moment,
    then killed."""
    for _ in range(50):
        left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if not left:
            return left
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    return left


def test_killed_build_resumes_to_the_same_collection(tmp_path, flickr_dir, caplog):
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mosaic", "build", "captions", str(flickr_dir), "--limit", "160", "--workers", "2",
           "--shard-size", "32", "--model", "lite", "--captioner", "labels", "--out", str(killed), "--quiet"]
    proc = started(cmd, killed / "manifest.json", shards=2)
    proc.kill()  # the command's process alone: its reading processes end with it
    proc.wait(timeout=60)
    proc.stdout.close()
    assert left_in_session(proc) == []
    done = json.loads((killed / "manifest.json").read_text())
    assert not done["complete"] and 2 <= len(done["shards"]) < 5
    with caplog.at_level(logging.INFO, logger="mosaic"):
        build(flickr_config(flickr_dir, 160), killed, progress=False)
    # only the records of unfinished shards were processed again
    assert f"({160 - 32 * len(done['shards'])} computed this run" in caplog.text
    straight = build(flickr_config(flickr_dir, 160), tmp_path / "straight", progress=False)
    a, b = Collection.load(killed), Collection.load(straight)
    assert a.ids() == b.ids() and len(a) == 160  # no duplicates, nothing missing
    assert a.captions.equals(b.captions) and a.metadata.equals(b.metadata)
    for name in ("image_emb", "text_emb", "omni_emb", "tags"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-5)
    assert a.manifest.shards == b.manifest.shards
    assert [s["records"] for s in a.manifest.shards] == [32] * 5


def test_ctrl_c_stops_a_build_in_one_line_and_it_goes_on_when_run_again(tmp_path, flickr_dir):
    out = tmp_path / "c"
    # started as a terminal's shell starts it, with Ctrl-C neither ignored nor blocked, whatever the test run's own state
    shell = ("import signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT]); "
             "signal.signal(signal.SIGINT, signal.default_int_handler); from mosaic.cli import main; main(sys.argv[1:])")
    cmd = [sys.executable, "-c", shell, "build", "captions", str(flickr_dir), "--limit", "160", "--workers", "2",
           "--shard-size", "32", "--model", "lite", "--captioner", "none", "--out", str(out), "--quiet"]
    proc = started(cmd, out / "manifest.json", shards=1)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the command and its reading processes
    printed, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in printed, printed[-3000:]
    assert printed.strip().splitlines()[-1].startswith("stopped (a build, update or training run again goes on")
    assert left_in_session(proc) == []
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and len(Collection.load(out)) == 160


def test_ray_engine_builds_the_same_collection_on_a_local_cluster(tmp_path, flickr_dir):
    import ray
    from ray._private.state import actors  # the state API proper needs the dashboard

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    try:
        on_ray = build(flickr_config(flickr_dir, 96), tmp_path / "ray", progress=False, engine="ray", workers=2)
        workers = [a for a in actors().values() if "_RayShardWorker" in a["ActorClassName"]]
    finally:
        ray.shutdown()
    assert len(workers) == 2  # the shards were processed by the actor pool
    local = build(flickr_config(flickr_dir, 96), tmp_path / "local", progress=False)
    a, b = Collection.load(on_ray), Collection.load(local)
    assert a.ids() == b.ids() and len(a) == 96
    assert a.captions.equals(b.captions) and a.metadata.equals(b.metadata)
    for name in ("image_emb", "text_emb", "omni_emb", "tags"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-5)
    assert a.manifest.shards == b.manifest.shards
    assert (on_ray / "thumbs.bin").read_bytes() == (local / "thumbs.bin").read_bytes()


def test_corrupt_huge_and_wrong_files_are_skipped_and_reported(tmp_path, flickr_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    good = sorted((flickr_dir / "images").glob("*.jpg"))[:3]
    for p in good:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "truncated.jpg").write_bytes(good[0].read_bytes()[:2000])
    (folder / "notes.jpg").write_text("this is not an image")
    Image.new("L", (9000, 9000)).save(folder / "huge.png")  # 81 megapixels, a small file
    out = build(BuildConfig("folder", str(folder), model="lite", captioner="labels"), tmp_path / "c", progress=False)
    c = Collection.load(out)
    assert sorted(c.ids()) == sorted(p.name for p in good)
    skipped = {s["id"]: s["reason"] for s in c.manifest.skipped}
    assert set(skipped) == {"truncated.jpg", "notes.jpg", "huge.png"}
    assert "too large" in skipped["huge.png"]
    assert c.manifest.counts["skipped"] == 3


def test_a_source_with_nothing_readable_is_an_error_not_an_empty_collection(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "x.jpg").write_text("nope")
    with pytest.raises(CollectionError, match="No readable images"):
        build(BuildConfig("folder", str(folder), model="lite", captioner="labels"), tmp_path / "c", progress=False)
    with pytest.raises(CollectionError, match="not finished"):
        Collection.load(tmp_path / "c")


def test_wikiart_collection_keeps_its_metadata(wikiart):
    c = wikiart.collection
    assert len(c) == 30 and "style" in c.filter_fields()
    assert pq.read_table(c.path / "metadata.parquet").column_names[:5] == ["id", "artist", "style", "genre", "title"]
    assert any(t.startswith("style:") for t in c.tag_names)  # the art vocabulary


def test_embedded_default_builds_offline_and_answers(tmp_path):
    from mosaic.search import SearchService

    out = build(BuildConfig("skimage"), tmp_path / "skimage", progress=False)  # auto models
    service = SearchService(out)
    assert service.collection.manifest.models == {"encoder": "lite", "captioner": "labels"}
    assert service.text_to_image("a cat with green eyes", k=1)[0].id == "chelsea"
    assert service.image_to_image("rocket", k=1)[0].id == "rocket"
    assert list(service.collection.filter_fields()) == ["kind"]  # not "name": one per image, no filter
    astronaut = service.details("astronaut")
    assert astronaut["captions"] == ["Portrait of astronaut Eileen Collins in an orange flight suit, smiling, with the "
                                     "American flag behind her"] and astronaut["caption"]  # the model's, apart
    hit = service.text_to_image("an astronaut", k=1, target="both")[0]
    assert hit.explanation["captions"] == service.details(hit.id)["captions"]  # people's, not the model's
