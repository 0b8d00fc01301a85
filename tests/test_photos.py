"""A folder of photos: their EXIF date, camera and GPS as metadata, date ranges and cameras as
filters, results sorted by date, HEIC files read (fast tier: the fake encoder)."""
import pytest
from fakes import picture
from PIL import Image

from mosaic.build import BuildConfig, build
from mosaic.errors import CollectionError, QueryError
from mosaic.query import parse_filters
from mosaic.search import SearchService, sort_hits

PHOTOS = [  # file, colours, taken, make, model, gps
    ("beach.jpg", ("yellow", "blue"), "2021:06:01 10:00:00", "Canon", "Canon EOS 5D", True),
    ("forest.jpg", ("green", "green"), "2021:06:15 09:30:00", "Apple", "iPhone 12", False),
    ("snow.jpg", ("white", "blue"), "2020:12:24 15:00:00", "Apple", "iPhone 12", True),
    ("night.jpg", ("black", "blue"), "2022:01:03 23:10:00", "Canon", "Canon EOS 5D", False),
]


def exif_of(taken, make, model, gps) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = make, model
    exif.get_ifd(0x8769)[0x9003] = taken
    if gps:
        exif.get_ifd(0x8825)[1] = "N"
    return exif


@pytest.fixture(scope="module")
def photos(tmp_path_factory, fake_encoder):
    root = tmp_path_factory.mktemp("photos")
    for name, colours, *exif in PHOTOS:
        picture(*colours).save(root / name, exif=exif_of(*exif))
    picture("red", "white").save(root / "plain.png")  # no EXIF at all
    picture("red", "blue").save(root / "phone.heic")
    return SearchService(build(BuildConfig("folder", str(root), model="fake", captioner="none"),
                               tmp_path_factory.mktemp("c") / "photos", progress=False))


def test_exif_becomes_metadata(photos):
    meta = {h.id: h.metadata for h in photos.text_to_image("photo", k=10, target="image")}
    assert meta["beach.jpg"] == {"file": "beach.jpg", "taken": "2021-06-01T10:00:00", "camera": "Canon EOS 5D",
                                 "gps": True, "width": 64, "height": 64}
    assert meta["forest.jpg"]["camera"] == "Apple iPhone 12" and meta["forest.jpg"]["gps"] is False
    assert meta["plain.png"]["taken"] is None and meta["plain.png"]["camera"] is None
    assert "phone.heic" in meta  # read through pillow-heif
    assert set(photos.collection.filter_fields()) == {"camera", "gps"}  # dates and sizes are ranges, not lists


def test_date_ranges_and_cameras_filter(photos):
    june = parse_filters(["taken>=2021-06-01", "taken<=2021-06-30"])
    assert {h.id for h in photos.text_to_image("photo", k=10, filters=june)} == {"beach.jpg", "forest.jpg"}
    canon_2022 = parse_filters(["camera=Canon EOS 5D", "taken>=2022"])
    assert [h.id for h in photos.omni("", k=10, filters=canon_2022)] == ["night.jpg"]
    wide = parse_filters(["width>=60", "width<=64"])
    assert len(photos.collection.filter_rows(wide)) == 6
    with pytest.raises(CollectionError, match="needs a number"):
        photos.collection.filter_rows(parse_filters(["width>=wide"]))
    with pytest.raises(QueryError, match="field>=value"):
        parse_filters(["taken>>2021"])


def test_hits_sort_by_date(photos):
    hits = photos.text_to_image("photo", k=10, target="image")
    assert [h.id for h in sort_hits(photos, hits, "taken")][:4] == ["snow.jpg", "beach.jpg", "forest.jpg", "night.jpg"]
    newest = [h.id for h in sort_hits(photos, hits, "-taken")]
    assert newest[:4] == ["night.jpg", "forest.jpg", "beach.jpg", "snow.jpg"] and set(newest[4:]) == {"plain.png",
                                                                                                   "phone.heic"}
    assert sort_hits(photos, hits, "relevance") == hits
    with pytest.raises(CollectionError, match="Cannot sort by 'colour'"):
        sort_hits(photos, hits, "colour")
