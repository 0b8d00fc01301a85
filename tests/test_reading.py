import io
import os
import pickle
import sys
import threading
import time

import numpy as np
import pytest
from fakes import COLOURS, picture
from PIL import Image

from mosaic import reading
from mosaic.build import BuildConfig, build
from mosaic.collection import Collection
from mosaic.errors import CollectionError
from mosaic.models import load_captioner, load_encoder
from mosaic.reading import THUMB_SIDE, Read, Reader, default_workers, draft_sides, read_records
from mosaic.sources import MAX_PIXELS, Record, load_image
from mosaic.util import sha256


def photo_folder(root, n=17):
    """JPEGs and PNGs of several sizes in a folder, with unreadable files among them."""
    root.mkdir()
    colours = list(COLOURS)
    for i in range(n):
        im = picture(colours[i % 6], colours[(i + 1) % 6], size=48 + 37 * i)
        im.save(root / f"{i:02d}.{'png' if i % 4 == 3 else 'jpg'}")
    (root / "05b-truncated.jpg").write_bytes((root / "05.jpg").read_bytes()[:300])
    (root / "09b-notes.jpg").write_text("this is not an image")
    Image.new("L", (3000, 3000)).save(root / "12b-huge.png")  # above the max_pixels given below
    return root


def built(folder, out, workers):
    config = BuildConfig("folder", str(folder), model="fake", captioner="none", shard_size=5, batch_size=3,
                         max_pixels=4_000_000)
    return build(config, out / "photos", progress=False, workers=workers)


def digests(root):
    return {p.relative_to(root).as_posix(): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("forks", [True, False], ids=["processes", "threads"])
def test_any_number_of_workers_writes_the_same_bytes(tmp_path, fake_encoder, monkeypatch, forks):
    monkeypatch.setattr(reading, "_forks", lambda: forks)
    folder = photo_folder(tmp_path / "src")
    serial = built(folder, tmp_path / "one", workers=1)
    for workers in (2, 5):
        parallel = built(folder, tmp_path / f"w{workers}", workers=workers)
        assert digests(parallel) == digests(serial)
    c = Collection.load(serial)
    assert len(c) == 17 and c.manifest.counts["skipped"] == 3


def test_unreadable_images_are_skipped_and_reported_in_order_with_workers(tmp_path, fake_encoder):
    folder = photo_folder(tmp_path / "src")
    skipped = Collection.load(built(folder, tmp_path / "w4", workers=4)).manifest.skipped
    assert [s["id"] for s in skipped] == ["05b-truncated.jpg", "09b-notes.jpg", "12b-huge.png"]
    assert "too large" in skipped[2]["reason"] and str(tmp_path) not in str(skipped)


@pytest.mark.skipif(sys.platform != "linux", reason="the build reads in processes on Linux only")
def test_a_reading_process_that_dies_stops_the_build_with_a_message(tmp_path, fake_encoder, monkeypatch):
    monkeypatch.setattr(reading, "thumbnail", lambda image: os._exit(9))  # as the out-of-memory killer would
    with pytest.raises(CollectionError, match="A reading process ended before its images were read"):
        built(photo_folder(tmp_path / "src"), tmp_path / "out", workers=2)


@pytest.mark.parametrize("forks", [True, False], ids=["processes", "threads"])
def test_reads_come_in_order_from_several_workers(monkeypatch, forks):
    monkeypatch.setattr(reading, "_forks", lambda: forks)
    here = (os.getpid(), threading.current_thread().name)

    def read(x):
        time.sleep(0.002)  # long enough for the work to be shared
        return x * x, (os.getpid(), threading.current_thread().name)

    reads = list(read_records(range(200), read, workers=4, ahead=1))  # every worker busy all the same
    assert [square for square, _ in reads] == [x * x for x in range(200)]
    workers = {worker for _, worker in reads}
    assert len(workers) == 4 and here not in workers
    assert {pid != here[0] for pid, _ in workers} == {forks}
    assert list(read_records(range(5), read, workers=1, ahead=8)) == [(x * x, here) for x in range(5)]


def test_reading_processes_send_the_models_inputs_back_through_shared_memory_unchanged():
    shared, record = reading._Shared(slots=2, size=100_000), Record("a", "a.jpg")
    crop, grey = picture("red", "blue", size=100), picture("green", "red", size=90).convert("L")
    palette, large = crop.convert("P"), picture("blue", "green", size=200)  # no raw pixels; more than the slot holds
    reads = [Read(record, prepared=crop, captioned=crop), Read(record, prepared=grey, captioned=palette),
             Read(record, prepared=large), "not a read"]
    sent = pickle.loads(pickle.dumps(shared.put(reads, slot=1)))  # as a reading process sends them back
    assert all(isinstance(r.prepared, reading._Pixels) for r in sent[:2]) and sent[0].captioned is sent[0].prepared
    assert sent[1].prepared.at >= 100_000 and isinstance(sent[2].prepared, Image.Image)
    got = shared.taken(sent)
    originals = [(crop, crop), (grey, palette), (large, None)]
    for r, (prepared, captioned) in zip(got, originals):
        assert r.prepared.mode == prepared.mode and np.array_equal(np.asarray(r.prepared), np.asarray(prepared))
        assert captioned is None or np.array_equal(np.asarray(r.captioned), np.asarray(captioned))
    assert got[0].captioned is got[0].prepared and got[3] == "not a read"


@pytest.mark.parametrize("forks", [True, False], ids=["processes", "threads"])
def test_the_build_keeps_its_records_a_decoded_image_is_not_sent_back(monkeypatch, forks):
    monkeypatch.setattr(reading, "_forks", lambda: forks)
    records = [Record(f"{i}", picture("red", "blue", size=40 + i)) for i in range(30)]  # as a Hub dataset's
    reads = list(read_records(records, Reader(MAX_PIXELS, None, lambda im: im.resize((32, 32))), workers=2, ahead=8))
    assert all(r.record is record for r, record in zip(reads, records)) and len(reads) == 30
    assert [r.prepared.size for r in reads] == [(32, 32)] * 30 and not any(r.skipped for r in reads)


def jpeg(size, orientation=None):
    gradient = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3).astype(np.uint8)
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(gradient).save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


@pytest.mark.parametrize("size, at_least, expected", [
    ((4000, 3000), (224, 512), (1000, 750)),  # 1/4: the longer side keeps 512, 1/8 would not
    ((4000, 1000), (224, 512), (1000, 250)),  # 1/4: the shorter side keeps 224
    ((4000, 3000), (384, 512), (1000, 750)),
    ((4000, 3000), (800, 512), (2000, 1500)),
    ((900, 600), (224, 512), (900, 600)),  # halving would take the longer side below 512
])
def test_draft_decoding_keeps_what_the_models_and_previews_need(size, at_least, expected):
    assert load_image(jpeg(size), at_least=at_least).size == expected
    assert load_image(jpeg(size)).size == size


def test_draft_decoding_follows_the_exif_orientation():
    assert load_image(jpeg((4000, 3000), orientation=6), at_least=(224, 512)).size == (750, 1000)


def test_draft_decodes_nearly_the_same_pixels():
    full = load_image(jpeg((2000, 1500))).resize((224, 168), Image.Resampling.BICUBIC)
    draft = load_image(jpeg((2000, 1500)), at_least=(224, 512)).resize((224, 168), Image.Resampling.BICUBIC)
    assert np.abs(np.asarray(full, np.float32) - np.asarray(draft, np.float32)).mean() < 2


def test_a_model_that_reads_whole_images_gets_them_whole(fake_encoder):
    assert draft_sides(fake_encoder, None) is None


def test_a_model_on_the_cpu_gets_one_reader_as_its_own_threads_use_the_cores(fake_encoder):
    assert default_workers(fake_encoder) == 1


@pytest.mark.slow
def test_the_offline_models_need_224_pixels_and_the_previews_512():
    assert draft_sides(load_encoder("lite"), load_captioner("labels")) == (224, THUMB_SIDE) == (224, 512)


@pytest.mark.slow
def test_the_offline_models_read_their_crop_as_they_read_the_whole_image():
    encoder, captioner = load_encoder("lite"), load_captioner("labels")
    image = load_image(jpeg((500, 375)))
    cropped = encoder.prepare(image)
    assert cropped.size == (224, 224) and captioner.prepare == encoder.prepare  # one crop made for both
    np.testing.assert_array_equal(encoder.encode_images([cropped]), encoder.encode_images([image]))
    assert captioner.caption([cropped]) == captioner.caption([image])


@pytest.mark.slow
def test_an_encoder_that_prepares_its_input_in_the_reading_threads_writes_the_same_bytes(tmp_path):
    folder = photo_folder(tmp_path / "src", n=8)
    model = "open_clip:ViT-S-32-alt/random"  # random weights: the plumbing, not a quality figure
    config = BuildConfig("folder", str(folder), model=model, captioner="none", shard_size=5, batch_size=3,
                         max_pixels=4_000_000)
    serial, parallel = (build(config, tmp_path / f"w{w}" / "photos", progress=False, workers=w) for w in (1, 3))
    assert digests(parallel) == digests(serial)
    encoder, image = load_encoder(model), Image.open(folder / "06.jpg").convert("RGB")
    np.testing.assert_array_equal(encoder.encode_images([encoder.prepare(image)]), encoder.encode_images([image]))
