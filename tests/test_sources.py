import io
import json
import os

import numpy as np
import pytest
from conftest import data_dir

from mosaic.errors import SourceError
from mosaic.sources import open_source, select


@pytest.mark.slow
def test_flickr_captions_stream_every_image_with_its_five_captions(flickr_dir):
    records = list(open_source("captions", str(flickr_dir)))
    assert len(records) == 1000
    assert all(len(r.texts) == 5 and r.image.exists() for r in records)
    assert records[0].id == "1000268201_693b08cb0e.jpg"
    assert "pink dress" in records[0].texts[0]


@pytest.mark.slow
def test_selection_is_deterministic_and_seeded(flickr_dir):
    ids = lambda seed: [r.id for r in select(open_source("captions", str(flickr_dir)), 50, seed)]  # noqa: E731
    assert ids(1) == ids(1)
    assert ids(1) != ids(2)
    assert len(set(ids(1))) == 50
    assert ids(None) == [r.id for r in open_source("captions", str(flickr_dir))][:50]


@pytest.mark.slow
def test_wikiart_csv_keeps_metadata_and_odd_file_names(wikiart_dir):
    records = list(open_source("wikiart", str(wikiart_dir)))
    assert len(records) == 30
    assert all(r.image.exists() for r in records)  # names with spaces and non-ASCII characters
    first = records[0]
    assert first.metadata == {"artist": "John French Sloan", "style": "New Realism",
                              "genre": "cityscape", "title": "Cornelia Street"}


@pytest.mark.slow
def test_driving_frame_folders_become_ordered_scenes():
    records = list(open_source("driving", str(data_dir("driving"))))
    scenes = {r.metadata["scene"] for r in records}
    assert scenes == {"example_01", "example_02", "scene-0061"}
    s61 = [r for r in records if r.metadata["scene"] == "scene-0061"]
    assert len(s61) == 39
    assert [r.metadata["frame_index"] for r in s61] == list(range(39))
    assert s61[5].image.name == "frame_0005.jpg"


@pytest.mark.slow
def test_nuscenes_tables_give_scenes_descriptions_and_conditions(tmp_path):
    """A nuScenes v1.0 dataroot: scenes, linked samples and CAM_FRONT key frames (real frames)."""
    frames = sorted(data_dir("driving").joinpath("scene-0061").glob("*.jpg"))[:3]
    cam = tmp_path / "samples" / "CAM_FRONT"
    cam.mkdir(parents=True)
    samples, sample_data = [], []
    for i, f in enumerate(frames):
        (cam / f.name).write_bytes(f.read_bytes())
        samples.append({"token": f"s{i}", "next": f"s{i + 1}" if i < len(frames) - 1 else "", "prev": ""})
        sample_data.append({"sample_token": f"s{i}", "filename": f"samples/CAM_FRONT/{f.name}", "is_key_frame": True})
        sample_data.append({"sample_token": f"s{i}", "filename": f"samples/CAM_BACK/{f.name}", "is_key_frame": True})
    tables = tmp_path / "v1.0-mini"
    tables.mkdir()
    (tables / "sample.json").write_text(json.dumps(samples))
    (tables / "sample_data.json").write_text(json.dumps(sample_data))
    (tables / "scene.json").write_text(json.dumps([{"name": "scene-0061", "first_sample_token": "s0",
                                                    "description": "Night, rain, parked truck, turn left"}]))
    records = list(open_source("driving", str(tmp_path)))
    assert [r.id for r in records] == ["scene-0061/0000", "scene-0061/0001", "scene-0061/0002"]
    assert records[0].metadata["weather"] == "rain" and records[0].metadata["time_of_day"] == "night"
    assert records[2].image.name == frames[2].name


@pytest.mark.slow
def test_cirr_images_follow_the_split_file():
    records = list(open_source("cirr", str(data_dir("cirr-dev-sample"))))
    assert len(records) == 13  # the split lists 2,000+ images; only those present are read
    assert all(r.image.exists() and r.id.startswith("dev-") for r in records)


@pytest.mark.slow
def test_coco_official_and_karpathy_formats(tmp_path, flickr_dir):
    images = sorted((flickr_dir / "images").glob("*.jpg"))[:2]
    official = {"images": [{"id": 7, "file_name": images[0].name}, {"id": 3, "file_name": images[1].name}],
                "annotations": [{"image_id": 7, "caption": "a girl "}, {"image_id": 3, "caption": "dogs"},
                                {"image_id": 7, "caption": "a child"}]}
    (tmp_path / "captions.json").write_text(json.dumps(official))
    recs = list(open_source("coco", str(tmp_path / "captions.json"), images=str(flickr_dir / "images")))
    assert [(r.id, r.texts) for r in recs] == [("3", ["dogs"]), ("7", ["a girl", "a child"])]
    karpathy = {"images": [{"filename": images[0].name, "filepath": "", "cocoid": 1, "split": "test",
                            "sentences": [{"raw": "a girl"}]},
                           {"filename": images[1].name, "filepath": "", "cocoid": 2, "split": "train",
                            "sentences": [{"raw": "dogs"}]}]}
    (tmp_path / "dataset_coco.json").write_text(json.dumps(karpathy))
    recs = list(open_source("coco", str(tmp_path / "dataset_coco.json"), images=str(flickr_dir / "images"), split="test"))
    assert [(r.id, r.texts) for r in recs] == [("1", ["a girl"])]
    assert recs[0].image.exists()


def test_skimage_default_needs_no_download():
    records = list(open_source("skimage"))
    assert len(records) >= 15
    assert all(r.texts and r.image.size[0] > 100 for r in records)


def test_missing_paths_and_columns_get_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        list(open_source("captions", str(tmp_path / "nope")))
    (tmp_path / "images").mkdir()
    (tmp_path / "captions.txt").write_text("file,text\na.jpg,hello\n")
    with pytest.raises(SourceError, match="caption"):
        list(open_source("captions", str(tmp_path)))
    with pytest.raises(SourceError, match="Unknown source"):
        open_source("parquet", str(tmp_path))


def test_hub_dataset_offline_gives_one_clear_message():
    from mosaic.errors import HubError

    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        list(open_source("wikiart-hub"))


def test_query_images_that_cannot_be_used_say_why_without_server_paths(tmp_path):
    from PIL import Image

    from mosaic.sources import read_query_image

    Image.new("L", (9000, 5000)).save(tmp_path / "huge.png")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(SourceError, match=r"^huge.png is too large: 9000x5000 pixels, above the limit of 40 megapixels\.$"):
        read_query_image(tmp_path / "huge.png")
    with pytest.raises(SourceError, match="^notes.jpg is not an image Mosaic can read") as e:
        read_query_image(tmp_path / "notes.jpg")
    assert str(tmp_path) not in str(e.value)
    with pytest.raises(SourceError, match="^gone.png: no such file"):
        read_query_image(tmp_path / "gone.png")


def test_exif_orientation_is_applied():
    from fakes import picture
    from PIL import Image

    from mosaic.sources import load_image

    upright = picture("red", "blue", 64).resize((64, 32))  # wide: red left, blue right
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera stores a portrait shot: tall
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif, quality=95)
    loaded = load_image(buf.getvalue())
    assert loaded.size == (64, 32)
    assert np.abs(np.asarray(loaded, np.int16) - np.asarray(upright, np.int16)).mean() < 8


def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    from mosaic.sources import load_image

    ramp = np.linspace(0, 1, 256 * 16).reshape(16, 256)
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "float.tif")
    for name in ("deep.png", "float.tif"):
        pixels = np.asarray(load_image(tmp_path / name))[..., 0]
        assert pixels.min() == 0 and pixels.max() == 255
        assert abs(pixels.mean() - 127.5) < 2  # a ramp stays a ramp: not all white, not all black


def test_unreadable_folder_entries_are_records_with_their_problem(tmp_path):
    from fakes import picture

    root = tmp_path / "photos"
    root.mkdir()
    picture("red", "blue").save(root / "good.png")
    (root / "gone.jpg").symlink_to(root / "nowhere.jpg")
    (root / "loop.jpg").symlink_to(root / "loop.jpg")
    os.mkfifo(root / "pipe.png")
    (root / "notes.txt").write_text("not an image: not a record")
    problems = {r.id: r.problem for r in open_source("folder", str(root))}
    assert problems == {"good.png": None, "gone.jpg": "broken symbolic link", "loop.jpg": "symbolic link loop",
                        "pipe.png": "not a regular file (a FIFO, socket or device)"}
