"""The app's library of collections (fast tier: the fake encoder): damaged collections are
left out when the app starts, and a collection updated while the app runs is picked up."""
import logging
import shutil

import pytest
from fakes import picture
from test_update import config, folder_of_pictures

from mosaic.app import Library, handlers
from mosaic.build import build
from mosaic.errors import CollectionError


@pytest.fixture
def damaged(tiny, tmp_path):
    """A copy of the tiny collection with one byte of its tag scores changed (sizes and shapes
    still right: only the checksums tell)."""
    path = shutil.copytree(tiny.collection.path, tmp_path / "damaged")
    tags = path / "tags.npy"
    data = bytearray(tags.read_bytes())
    data[-3] ^= 0xFF
    tags.write_bytes(bytes(data))
    return path


def test_a_damaged_collection_is_not_served_and_the_others_are(damaged, drive, caplog):
    with caplog.at_level(logging.INFO, logger="mosaic"):
        library = Library([damaged, drive.collection.path])
    assert list(library.services) == [drive.collection.name]
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert str(damaged) in line and "tags.npy changed since it was built" in line and "--overwrite" in line


def test_no_collection_left_to_serve_is_one_error(damaged):
    with pytest.raises(CollectionError, match="No collection to serve"):
        Library([damaged])


def test_large_collections_are_not_checksummed_at_start(damaged):
    assert list(Library([damaged], verify_limit=5).services) == ["paintings"]


def test_a_running_library_picks_up_an_updated_collection(tmp_path, fake_encoder):
    root = folder_of_pictures(tmp_path / "photos")
    out = build(config(root), tmp_path / "c", progress=False)
    library = Library([out])
    assert handlers.browse(library, "c", [], 1)[3] == "Page 1 of 1 · 12 items"
    picture("green", "green").save(root / "new.png")
    build(config(root), out, progress=False, update=True)
    assert handlers.browse(library, "c", [], 1)[3] == "Page 1 of 1 · 13 items"
    assert handlers.item_details(library, "c", "new.png")[2]["id"] == "new.png"
    _, hits = handlers.image_search(library, "c", None, "new.png", 1, 0)
    assert len(hits) == 1 and hits[0]["id"] != "new.png"  # known, and its search finds the others
