"""The app's handlers called directly, without a server, on the tiny fake-encoder collections
(fast tier): what each tab returns, and the messages a user's mistakes get."""
import pytest
from fakes import picture
from PIL import Image

from mosaic.app import Library, handlers, render
from mosaic.errors import QueryError, SourceError

NO_TAGS = (None, 1, None, 1, None, 1)


@pytest.fixture(scope="module")
def library(tiny, drive):
    return Library([tiny.collection.path, drive.collection.path])


@pytest.fixture(scope="module")
def art(library, tiny):
    return tiny.collection.name


def ids(hits):
    return [h["id"] for h in hits]


def test_caption_search_gallery_agrees_with_the_hits_and_the_cutoff_drops_hits(library, art):
    gallery, hits = handlers.caption_search(library, art, "a red boat", "image", 5, -1)
    assert len(gallery) == len(hits) == 5 and hits[0]["id"] == "red-boat.png"
    assert [label for _, label in gallery] == [f"{h['score']:.3f} · {h['caption'] or h['id']}" for h in hits]
    assert all(isinstance(image, Image.Image) for image, _ in gallery)
    assert hits[0]["explanation"]["mode"] == "image"
    cutoff = (hits[1]["score"] + hits[2]["score"]) / 2
    gallery, kept = handlers.caption_search(library, art, "a red boat", "image", 5, cutoff)
    assert ids(kept) == ids(hits[:2]) and len(gallery) == 2


def test_omni_ors_values_of_a_field_ands_fields_and_sums_tag_weights(library, art, tiny):
    filters = ["style=Baroque", "style=Cubism", "genre=marina"]
    _, hits = handlers.omni_search(library, art, "boat", filters, *NO_TAGS, 12, -1)
    assert set(ids(hits)) == {"red-boat.png", "blue-boat.png", "white-ship.png"}
    tag = tiny.collection.tag_names[0]
    _, twice = handlers.omni_search(library, art, "", [], tag, 1, tag, 0.5, None, 1, 12, -1)
    _, once = handlers.omni_search(library, art, "", [], tag, 1.5, None, 1, None, 1, 12, -1)
    assert ids(twice) == ids(once)
    top = twice[0]
    assert top["explanation"]["parts"] == {tag: pytest.approx(1.5 * tiny.tag_z[top["row"], 0], abs=1e-3)}


def test_image_search_by_item_id_and_by_upload(library, art, tmp_path):
    _, by_id = handlers.image_search(library, art, None, " blue-lake.png ", 3, -1)
    assert by_id[0]["id"] == "blue-lake.png" and by_id[0]["score"] == pytest.approx(1, abs=1e-4)
    upload = tmp_path / "query.png"
    picture("yellow", "blue").save(upload)
    _, by_upload = handlers.image_search(library, art, str(upload), "", 3, 0.99)
    assert ids(by_upload) == ["yellow-sun.png"]
    with pytest.raises(QueryError, match="Upload an image"):
        handlers.image_search(library, art, None, "  ", 3, -1)


def test_browse_pages_and_clamps_the_page(library, art, monkeypatch):
    monkeypatch.setattr(handlers, "PAGE_SIZE", 5)
    pages = [handlers.browse(library, art, [], n) for n in (1, 2, 3)]
    assert [len(items) for _, items, _, _ in pages] == [5, 5, 2]
    assert len({d["id"] for _, items, _, _ in pages for d in items}) == 12
    grid, items, number, info = pages[0]
    assert [label for _, label in grid] == ids(items) and number == 1 and info == "Page 1 of 3 · 12 items"
    assert handlers.browse(library, art, [], 99)[2:] == (3, "Page 3 of 3 · 12 items")
    assert handlers.browse(library, art, [], None)[2] == 1
    _, rococo, _, info = handlers.browse(library, art, ["style=Rococo"], 1)
    assert len(rococo) == 4 and info == "Page 1 of 1 · 4 items"
    assert handlers.turn_page(1, -1) == 1 and handlers.turn_page(2, 1) == 3


def test_item_details(library, art):
    image, text, item = handlers.item_details(library, art, "black-cat.png")
    assert isinstance(image, Image.Image) and item["id"] == "black-cat.png"
    assert item["metadata"]["title"] == "A black cat" and "### black-cat.png" in text and "A black cat" in text
    assert handlers.item_details(library, art, "  ") == (None, "", None)


def test_composed_search_by_id_leaves_the_reference_out(library, art):
    _, hits = handlers.composed_search(library, art, None, "red-boat.png", "green", "sum", 0.5, 5, -1)
    assert len(hits) == 5 and "red-boat.png" not in ids(hits)
    why = hits[0]["explanation"]
    assert why["mode"] == "composed:sum" and why["query"] == "green"


def test_scene_search_marks_the_best_frames_and_plays_them(library, drive):
    name = drive.collection.name
    frames, timeline = handlers.scene_search(library, name, "city", "red")
    assert [f["id"] for f in frames] == [f"city/{i:04d}" for i in range(6)]
    assert [f["id"] for f in frames if f["match"]] == ["city/0000", "city/0001", "city/0004"]
    assert timeline.count('title="frame ') == 6 and "best matches: frames 0, 1, 4" in timeline
    image, info, timeline = handlers.scene_frame(library, name, frames, 4)
    assert isinstance(image, Image.Image) and "city/0004" in info and "frame 5 of 6" in timeline
    assert "frame 6 of 6" in handlers.scene_frame(library, name, frames, 99)[2]
    frames, timeline = handlers.scene_search(library, name, "coast", "")
    assert len(frames) == 3 and not any(f["match"] for f in frames) and "search the scene" in timeline
    assert handlers.choices(library, name)["scenes"] == ["city", "coast"]


def test_scene_search_without_scenes_says_so(library, art):
    assert handlers.scene_search(library, art, None, "") == ([], render.NO_SCENES)
    assert "no scenes" in render.NO_SCENES
    assert handlers.scene_frame(library, art, [], 0) == (None, "", "")


def test_unknown_collections_and_empty_queries_are_query_errors(library, art):
    with pytest.raises(QueryError, match="Unknown collection 'nowhere'"):
        handlers.caption_search(library, "nowhere", "a dog", "both", 5, -1)
    with pytest.raises(QueryError, match="empty"):
        handlers.caption_search(library, art, "   ", "both", 5, -1)


def test_why_html_escapes_hostile_text():
    hostile = "<img src=x onerror=alert(1)>"
    explanation = {"mode": "composed:sum", "parts": {hostile: 0.5, "text": 0.1}, "query": hostile,
                   "query_words": [{"word": hostile, "contribution": 0.2}],
                   "caption_words": [{"word": hostile, "similarity": 0.3}], "tags": [{"tag": hostile, "score": 1.0}],
                   "tags_up": [{"tag": hostile, "change": 1.0}], "tags_down": [], "captions": [hostile]}
    page = render.why_html([{"id": hostile, "score": 0.9, "explanation": explanation}], 0)
    assert "<img" not in page and page.count("&lt;img src=x onerror=alert(1)&gt;") == 8
    assert "<img" not in render.details_markdown({"id": hostile, "caption": hostile, "captions": [hostile],
                                                  "tags": [], "metadata": {"title": hostile}})
    assert render.why_html([], 0) == "<p>Select a result to see why it matched.</p>"


def test_humor_without_a_model_says_how_to_get_one(library):
    with pytest.raises(QueryError, match="No humor model is loaded") as error:
        handlers.humor_score(library, "a prompt", None, "an answer")
    assert "<" not in str(error.value) and ">" not in str(error.value)


def test_error_messages_show_typed_text_escaped(library, art):
    import gradio as gr

    from mosaic.app.tabs import user_errors

    with pytest.raises(gr.Error) as error:
        user_errors(handlers.image_search)(library, art, None, "<img src=x onerror=alert(1)>", 3, -1)
    assert "<img" not in error.value.message and "'&lt;img src=x onerror=alert(1)&gt;'" in error.value.message


def test_an_unreadable_upload_is_named_by_its_file_name_only(library, art, tmp_path):
    upload = tmp_path / "gradio" / "0123abcd" / "photo.jpg"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"\xff\xd8\xff" + bytes(2000))
    for given in (str(upload), {"path": str(upload), "orig_name": "photo.jpg", "meta": {"_type": "gradio.FileData"}}):
        with pytest.raises(SourceError) as error:
            handlers.image_search(library, art, given, "", 3, -1)
        assert str(error.value).startswith("photo.jpg is not an image") and str(tmp_path) not in str(error.value)
        assert "gradio" not in str(error.value) and "/" not in str(error.value)
