"""The app's handlers called directly, without a server, on the tiny fake-encoder collections
(fast tier): what each tab returns, and the messages a user's mistakes get."""
import pytest
from fakes import picture
from PIL import Image

from mosaic.app import Library, handlers, render
from mosaic.errors import QueryError, SourceError
from mosaic.search import TAG_SCALE

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
    gallery, hits = handlers.caption_search(library, art, "a red boat", "image", 5, -1, False)
    assert len(gallery) == len(hits) == 5 and hits[0]["id"] == "red-boat.png"
    assert [label for _, label in gallery] == [f"{h['strength']} · {h['label']}" for h in hits]
    assert hits[0]["label"] == "A red boat at sea by Anna Alba"  # the human caption, not the file name
    assert all(isinstance(image, Image.Image) for image, _ in gallery)
    assert hits[0]["explanation"]["mode"] == "image"
    strengths = [h["strength"] for h in hits]
    assert strengths == sorted(strengths, reverse=True) and 0 < strengths[0] <= 100
    cutoff = strengths[1]
    gallery, kept = handlers.caption_search(library, art, "a red boat", "image", 5, cutoff, False)
    assert ids(kept) == [h["id"] for h in hits if h["strength"] >= cutoff] and len(gallery) == len(kept) >= 2
    assert handlers.caption_search(library, art, "a red boat", "image", 5, 0, False)[1] == hits


def test_labels_prefer_human_captions_then_titles_then_generated_captions(library, art, tiny):
    row = tiny.row("black-cat.png")
    assert handlers.label(tiny, row) == "A black cat by Bruno Berg"
    meta = {"id": "x", "title": "Sunflowers", "artist": "vincent-van-gogh", "caption": "a photo of a vase"}
    no_human = type("S", (), {"collection": type("C", (), {"first_human_caption": {}, "manifest": tiny.collection.manifest,
                                                             "item": lambda self, r: meta})()})()
    assert handlers.label(no_human, 0) == "Sunflowers, Vincent Van Gogh"
    assert handlers.label(no_human, 0, metadata={"id": "x", "caption": "a photo of a vase"}) == "a vase"
    assert handlers.label(no_human, 0, metadata={"id": "x"}) == "x"
    # Flickr8k's captions are tokenised; people read them untokenised (labels, examples, details)
    assert render.tidy("Three people on atv 's outside , do n't they ?") == "Three people on atv's outside, don't they?"
    assert render.tidy("A dog runs in the snow .") == "A dog runs in the snow"


def test_the_landing_offers_examples_from_the_collection_a_summary_and_a_strip(library, art, drive):
    examples = handlers.example_queries(library[art])
    assert 1 <= len(examples) <= handlers.EXAMPLES and len(set(examples)) == len(examples)
    captions = {c.lower() for r in range(12) for c in library[art].collection.item_captions(r)}
    assert all(e in captions for e in examples)  # taken from the collection's own captions
    assert handlers.example_query(library, art, 0) == examples[0]
    with pytest.raises(QueryError, match="example"):
        handlers.example_query(library, art, 99)
    _, hits = handlers.caption_search(library, art, examples[0], "both", 5, 0)
    assert hits  # every example finds something
    assert "12 images" in handlers.summary(library[art]) and "searched by fake" in handlers.summary(library[art])
    assert handlers.searched_by("lite:/srv/checkpoints/flickr8k") == (
        "searched by the offline model, trained (approximate: image labels matched as text)")
    assert handlers.searched_by("open_clip:ViT-B-32/laion2b_s34b_b79k") == "searched by CLIP ViT-B-32"
    assert handlers.searched_by("hf:/srv/models/clip-vit-base-patch32/") == "searched by CLIP clip-vit-base-patch32"
    assert "2 driving scenes" in handlers.summary(library[drive.collection.name])
    strip = handlers.collection_strip(library[art])
    assert len(strip) == handlers.STRIP and all(isinstance(image, Image.Image) for image, _ in strip)
    assert handlers.strip_item(library, art, 0) == library[art].collection.ids()[0]
    assert handlers.link_state(library, {"collection": art, "q": "a boat"}) == (art, "a boat", None)
    assert handlers.link_state(library, {"collection": "nowhere", "tab": "Omni"}) == (art, "", "omni")
    assert handlers.link_state(library, {"tab": "<script>"}) == (art, "", None)
    assert handlers.shown_tabs(library) == ("search", "image", "omni", "composed", "browse", "scenes")  # no humor
    assert handlers.link_state(library, {"tab": "humor"}) == (art, "", None)


def test_empty_results_say_why_and_what_to_change(library, art):
    _, hits = handlers.caption_search(library, art, "a red boat", "both", 5, 101)
    assert hits == []
    assert "lower the minimum match" in handlers.result_note(library, art, 101, hits)
    impossible = ["style=Cubism", "genre=animal"]
    assert handlers.omni_search(library, art, "boat", impossible, *NO_TAGS, 5, 0)[1] == []
    note = handlers.result_note(library, art, 0, [], impossible)
    assert note.startswith("No image is style Cubism and genre animal at once: remove a filter")
    _, items, page, info = handlers.browse(library, art, impossible, 1)
    assert items == [] and page == 1 and "remove a filter" in info
    _, hits = handlers.caption_search(library, art, "a red boat", "both", 5, 0, False)
    assert handlers.result_note(library, art, 0, hits).startswith(f"5 results · best match {hits[0]['strength']}/100")
    assert handlers.result_note(library, art, 0, None) == ""


def test_results_export_as_csv_and_old_exports_are_removed(library, art):
    import csv
    import os

    _, hits = handlers.caption_search(library, art, "a red boat", "both", 3, 0)
    old = handlers.export_csv(hits)
    os.utime(old, (0, 0))
    path = handlers.export_csv(hits)
    assert not os.path.exists(old) and path != old
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ids(hits) and rows[0]["label"] == hits[0]["label"]
    assert rows[0]["match"] == str(hits[0]["strength"]) and rows[0]["style"] == hits[0]["metadata"]["style"]


def test_omni_ors_values_of_a_field_ands_fields_and_sums_tag_weights(library, art, tiny):
    filters = ["style=Baroque", "style=Cubism", "genre=marina"]
    _, hits = handlers.omni_search(library, art, "boat", filters, *NO_TAGS, 12, -1, False)
    assert set(ids(hits)) == {"red-boat.png", "blue-boat.png", "white-ship.png"}
    tag = tiny.collection.tag_names[0]
    _, twice = handlers.omni_search(library, art, "", [], tag, 1, tag, 0.5, None, 1, 12, -1)
    _, once = handlers.omni_search(library, art, "", [], tag, 1.5, None, 1, None, 1, 12, -1)
    assert ids(twice) == ids(once)
    top = twice[0]
    assert top["explanation"]["parts"] == {tag: pytest.approx(1.5 * TAG_SCALE * tiny.tag_z[top["row"], 0], abs=1e-3)}


def test_image_search_by_item_id_and_by_upload(library, art, tmp_path):
    plain = library[art].image_to_image("blue-lake.png", k=7)
    assert plain[0].id == "blue-lake.png" and plain[0].score == pytest.approx(1, abs=1e-4)
    _, by_id = handlers.image_search(library, art, None, " blue-lake.png ", 3, -1, False)
    assert ids(by_id) == [h.id for h in plain[1:4]]  # the other items: the query is not its own match
    _, after = handlers.image_search(library, art, None, "blue-lake.png", 3, -1, False, 3)
    assert ids(after) == [h.id for h in plain[4:7]]
    upload = tmp_path / "query.png"
    picture("yellow", "blue").save(upload)
    _, by_upload = handlers.image_search(library, art, str(upload), "", 3, 0)
    assert ids(by_upload)[0] == "yellow-sun.png" and by_upload[0]["strength"] > by_upload[-1]["strength"]
    with pytest.raises(QueryError, match="Upload an image"):
        handlers.image_search(library, art, None, "  ", 3, -1)
    assert isinstance(handlers.query_preview(library, art, None, "blue-lake.png"), Image.Image)
    assert handlers.query_preview(library, art, str(upload), "blue-lake.png") is None  # the upload shows itself
    assert handlers.query_preview(library, art, None, "nowhere.png") is None


def test_browse_pages_and_clamps_the_page(library, art, monkeypatch):
    monkeypatch.setattr(handlers, "PAGE_SIZE", 5)
    pages = [handlers.browse(library, art, [], n) for n in (1, 2, 3)]
    assert [len(items) for _, items, _, _ in pages] == [5, 5, 2]
    assert len({d["id"] for _, items, _, _ in pages for d in items}) == 12
    grid, items, number, info = pages[0]
    assert [label for _, label in grid] == [d["label"] for d in items] and number == 1 and info == "Page 1 of 3 · 12 items"
    assert handlers.browse(library, art, [], 99)[2:] == (3, "Page 3 of 3 · 12 items")
    assert handlers.browse(library, art, [], None)[2] == 1
    _, rococo, _, info = handlers.browse(library, art, ["style=Rococo"], 1)
    assert len(rococo) == 4 and info == "Page 1 of 1 · 4 items"
    assert handlers.pages(library, art, []) == 3 and handlers.pages(library, art, ["style=Rococo"]) == 1
    assert handlers.turn_page(1, -1) == 1 and handlers.turn_page(2, 1) == 3


def test_item_details(library, art):
    image, text, item = handlers.item_details(library, art, "black-cat.png")
    assert isinstance(image, Image.Image) and item["id"] == "black-cat.png"
    assert item["metadata"]["title"] == "A black cat" and "### A black cat by Bruno Berg" in text and "id: black-cat.png" in text
    assert handlers.item_details(library, art, "  ") == (None, "", None)


def test_composed_search_by_id_leaves_the_reference_out(library, art):
    _, hits = handlers.composed_search(library, art, None, "red-boat.png", "green", "sum", 0.5, 5, -1, False)
    assert len(hits) == 5 and "red-boat.png" not in ids(hits)
    why = hits[0]["explanation"]
    assert why["mode"] == "composed:sum" and why["query"] == "green"


def test_scene_search_marks_the_best_frames_and_plays_them(library, drive):
    name = drive.collection.name
    frames, timeline = handlers.scene_search(library, name, "city", "red")
    assert [f["id"] for f in frames] == [f"city/{i:04d}" for i in range(6)]
    assert [f["id"] for f in frames if f["match"]] == ["city/0000", "city/0001", "city/0004"]
    assert timeline.count('title="frame ') == 6 and "best matches: frames 1, 2, 5" in timeline  # counted from 1
    best = handlers.best_frame(frames)
    assert frames[best - 1]["score"] == max(f["score"] for f in frames) and f"frame {best} of 6" in timeline
    image, info, timeline = handlers.scene_frame(library, name, frames, 5)
    assert isinstance(image, Image.Image) and "city/0004" in info and "frame 5 of 6" in timeline
    assert "frame 6 of 6" in handlers.scene_frame(library, name, frames, 99)[2]
    frames, timeline = handlers.scene_search(library, name, "coast", "")
    assert len(frames) == 3 and not any(f["match"] for f in frames) and "search the scene" in timeline
    assert handlers.best_frame(frames) == 1
    assert handlers.choices(library, name)["scenes"] == ["city", "coast"]


def test_scene_search_without_scenes_says_so(library, art):
    assert handlers.scene_search(library, art, None, "") == ([], render.NO_SCENES)
    assert "no scenes" in render.NO_SCENES
    assert handlers.scene_frame(library, art, [], 0) == (None, render.NO_SCENES_TEXT, "")


def test_unknown_collections_and_empty_queries_are_query_errors(library, art):
    with pytest.raises(QueryError, match="Unknown collection 'nowhere'"):
        handlers.caption_search(library, "nowhere", "a dog", "both", 5, -1)
    with pytest.raises(QueryError, match="empty"):
        handlers.caption_search(library, art, "   ", "both", 5, -1)
    with pytest.raises(QueryError, match="Say what should change"):
        handlers.composed_search(library, art, None, "red-boat.png", " ", "sum", 0.5, 5, -1)


def test_why_html_escapes_hostile_text():
    hostile = "<img src=x onerror=alert(1)>"
    explanation = {"mode": "composed:sum", "parts": {hostile: 0.5, "text": 0.1}, "query": hostile,
                   "query_words": [{"word": hostile, "contribution": 0.2}],
                   "caption_words": [{"word": hostile, "similarity": 0.3}], "tags": [{"tag": hostile, "score": 1.0}],
                   "tags_up": [{"tag": hostile, "change": 1.0}], "tags_down": [], "captions": [hostile]}
    page = render.why_html([{"id": hostile, "score": 0.9, "caption": hostile, "explanation": explanation}], 0)
    assert "<img" not in page and page.count("&lt;img src=x onerror=alert(1)&gt;") == 11
    assert "<img" not in render.details_markdown({"id": hostile, "caption": hostile, "captions": [hostile],
                                                  "tags": [], "metadata": {"title": hostile}})
    assert render.why_html([], 0) == "<p>Select a result to see why it matched.</p>"


def test_humor_without_a_model_says_how_to_get_one(library):
    with pytest.raises(QueryError, match="No humor model is loaded") as error:
        handlers.humor_score(library, "a prompt", None, "an answer")
    assert "<" not in str(error.value) and ">" not in str(error.value)


def test_explanations_keep_only_tags_that_raise_the_score():
    tags = [{"tag": "objects:dog", "score": 8.7}, {"tag": "mood:calm", "score": 3.0}, {"tag": "objects:cat", "score": 2.3},
            {"tag": "objects:horse", "score": 0.5}]
    explanation = {"mode": "image", "tags": tags}
    page = render.why_html([{"id": "a", "label": "A dog", "score": 0.9, "strength": 80, "explanation": explanation}], 0)
    assert ">dog <small></small>" in page and "calm (mood)" in page and "cat" not in page and "horse" not in page
    assert "match 80/100" in page and "A dog" in page
    assert "z-score" not in page and " sd" not in page
    parts = render.parts_bar({"text": 1.5, "style:Baroque": -0.5}, render.tag_name)
    assert "width:75.0%" in parts and "width:25.0%" in parts and "Baroque (style) -0.50" in parts
    text = render.details_markdown({"id": "a", "caption": "", "captions": [], "metadata": {},
                                    "tags": [{"tag": "up", "z": 1.5}, {"tag": "down", "z": -0.2}]})
    assert "up" in text and "down" not in text and "sd" not in text
def test_error_messages_show_typed_text_escaped(library, art):
    import gradio as gr

    from mosaic.app.tabs import user_errors

    with pytest.raises(gr.Error) as error:
        user_errors(handlers.image_search)(library, art, None, "<img src=x onerror=alert(1)>", 3, 0)
    assert "<img" not in error.value.message and "'&lt;img src=x onerror=alert(1)&gt;'" in error.value.message


def test_an_unreadable_upload_is_named_by_its_file_name_only(library, art, tmp_path):
    upload = tmp_path / "gradio" / "0123abcd" / "photo.jpg"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"\xff\xd8\xff" + bytes(2000))
    for given in (str(upload), {"path": str(upload), "orig_name": "photo.jpg", "meta": {"_type": "gradio.FileData"}}):
        with pytest.raises(SourceError) as error:
            handlers.image_search(library, art, given, "", 3, 0)
        assert str(error.value).startswith("photo.jpg is not an image") and str(tmp_path) not in str(error.value)
        assert "gradio" not in str(error.value) and "/" not in str(error.value)


def test_duplicates_hidden_by_default_and_load_more_continues_the_ranking(library, art, tiny):
    group_of = tiny._group_of
    assert group_of, "the tiny paintings include near duplicates"
    _, shown = handlers.caption_search(library, art, "a red boat", "both", 5, 0)
    groups = [group_of.get(h["row"], -1 - h["row"]) for h in shown]
    assert len(set(groups)) == len(groups)  # one of each group
    _, every = handlers.caption_search(library, art, "a red boat", "both", 6, 0, False)
    _, first = handlers.caption_search(library, art, "a red boat", "both", 3, 0, False)
    gallery, hits = handlers.extend(library, art, first,
                                    handlers.caption_search(library, art, "a red boat", "both", 3, 0, False, 3))
    assert ids(hits) == ids(every) and len(gallery) == 6
    assert handlers.extend(library, art, hits, (gallery, hits[:2]))[1] == hits  # nothing shown twice
    with pytest.raises(QueryError, match="whole number"):
        handlers.caption_search(library, art, "a red boat", "both", 3, 0, False, 1.5)
