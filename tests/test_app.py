"""The app, served for real on a free port: every endpoint called through gradio_client, the
bundled default served by `python demo.py`, and one end-to-end run in headless Chromium."""
import ast
import os
import re
import shutil
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, data_dir, free_port, mcp_session, served
from gradio_client import Client, handle_file
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def driving(tmp_path_factory):
    from mosaic.build import BuildConfig, build

    return build(BuildConfig("driving", str(data_dir("driving")), model="lite", captioner="labels"),
                 tmp_path_factory.mktemp("c") / "driving", progress=False)


@pytest.fixture(scope="module")
def server(flickr, driving, wikiart, humor_model):
    from mosaic.app import serve

    port = free_port()
    demo = serve([flickr.collection.path, driving, wikiart.collection.path], host="127.0.0.1", port=port,
                 block=False, humor=humor_model)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def no_tags():
    return [None, 1, None, 1, None, 1]


def test_every_tab_is_an_endpoint(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/image_search", "/caption_search", "/omni_search", "/composed_search", "/browse", "/item_details",
            "/scene_search", "/scene_frame", "/humor_score"} <= set(endpoints)


def test_caption_search_returns_an_explained_gallery(client, flickr):
    gallery, hits = client.predict("flickr", "a dog running on the grass", "both", 10, 0, api_name="/caption_search")
    assert len(gallery) == len(hits) == 10
    dogs = sum(any("dog" in c.lower() for c in flickr.collection.item_captions(h["row"])) for h in hits)
    assert dogs >= 6
    image = Image.open(gallery[0]["image"])
    assert max(image.size) <= 512 and gallery[0]["caption"] == f"{hits[0]['strength']} · {hits[0]['label']}"
    human = {c.strip().rstrip(" .") for c in flickr.collection.item_captions(hits[0]["row"], human=True)}
    assert hits[0]["label"] in human  # labelled with a caption a person wrote
    assert 0 < hits[-1]["strength"] <= hits[0]["strength"] <= 100
    why = hits[0]["explanation"]
    assert why["mode"] == "both" and why["query_words"][0]["word"] == "dog"
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_image_search_by_upload_and_by_id(client, flickr, flickr_dir):
    item = flickr.collection.ids()[42]
    _, by_upload = client.predict("flickr", handle_file(str(flickr_dir / "images" / item)), "", 5, 0,
                                  api_name="/image_search")
    _, by_id = client.predict("flickr", None, item, 5, 0, api_name="/image_search")
    assert by_upload[0]["id"] == item  # the photo itself, uploaded
    assert [h["id"] for h in by_id[:4]] == [h["id"] for h in by_upload[1:]]  # by id: the others
    _, strict = client.predict("flickr", handle_file(str(flickr_dir / "images" / item)), "", 5, 90,
                               api_name="/image_search")
    assert strict[0]["id"] == item and all(h["strength"] >= 90 for h in strict)  # the minimum match cuts


def test_omni_combines_text_filters_and_tag_weights(client):
    _, hits = client.predict("driving", "a road", ["scene=example_02"], *no_tags(), 5, 0, False,
                             api_name="/omni_search")  # consecutive frames are near duplicates: keep them
    assert len(hits) == 5 and all(h["id"].startswith("example_02/") for h in hits)
    _, hits = client.predict("driving", "", ["scene=scene-0061", "scene=example_01"], "road_users:trucks", 2,
                             None, 1, None, 1, 10, 0, api_name="/omni_search")
    assert {h["id"].split("/")[0] for h in hits} <= {"scene-0061", "example_01"}
    assert set(hits[0]["explanation"]["parts"]) == {"road_users:trucks"}
    assert hits[0]["score"] == pytest.approx(hits[0]["explanation"]["parts"]["road_users:trucks"], abs=1e-3)


def test_composed_search_explains_what_changed(client, flickr):
    reference = flickr.collection.ids()[3]
    _, hits = client.predict("flickr", None, reference, "the same but on a beach", "sum", 0.5, 5, 0,
                             api_name="/composed_search")
    assert len(hits) == 5 and reference not in [h["id"] for h in hits]
    why = hits[0]["explanation"]
    assert why["mode"] == "composed:sum" and why["tags_up"] + why["tags_down"]
    assert all(t["change"] > 0 for t in why["tags_up"]) and all(t["change"] < 0 for t in why["tags_down"])
    assert [t["tag"] for t in why["tags_asked"]] == ["scenes:beach"]  # what the words of the change name
    assert "scenes:beach" not in [t["tag"] for t in why["tags_up"] + why["tags_down"]]
    from mosaic.composed import ComposedSearch

    assert ComposedSearch(flickr).asked_tags("the same but bigger") == []  # words that name no tag


def test_searches_page_through_the_api(client):
    _, first = client.predict("flickr", "a dog", "both", 5, 0, api_name="/caption_search")  # defaults: page 1
    _, second = client.predict("flickr", "a dog", "both", 5, 0, True, 5, api_name="/caption_search")
    _, ten = client.predict("flickr", "a dog", "both", 10, 0, True, 0, api_name="/caption_search")
    assert [h["id"] for h in first + second] == [h["id"] for h in ten]
    with pytest.raises(Exception, match="offset must be a whole number"):
        client.predict("flickr", "a dog", "both", 5, 0, True, -3, api_name="/caption_search")


def test_browse_pages_and_item_details(client, flickr):
    from mosaic.app import render

    _, page1, number, info = client.predict("flickr", [], 1, api_name="/browse")
    _, page2, _, _ = client.predict("flickr", [], 2, api_name="/browse")
    assert number == 1 and "of 13" in info and len(page1) == len(page2) == 24
    assert not {d["id"] for d in page1} & {d["id"] for d in page2}
    _, last, number, _ = client.predict("flickr", [], 99, api_name="/browse")
    assert number == 13 and len(last) == 300 - 12 * 24
    image, text, item = client.predict("flickr", page1[0]["id"], api_name="/item_details")
    assert item["id"] == page1[0]["id"] and len(item["captions"]) == 5  # the human ones; the generated apart
    assert render.tidy(item["captions"][0]) in text and item["caption"] and item["caption"] not in item["captions"]
    assert f"Generated caption (a model's guess)**: {item['caption']}" in text and os.path.exists(image)


def test_scene_search_marks_the_best_frames_on_the_timeline(client):
    frames, _, timeline = client.predict("driving", "scene-0061", "a truck at an intersection", api_name="/scene_search")
    assert [f["id"] for f in frames] == [f"scene-0061/{i:04d}" for i in range(39)]
    best = sorted(frames, key=lambda f: -f["score"])[:3]
    assert [f for f in frames if f["match"]] == sorted(best, key=lambda f: f["id"])
    assert timeline.count("title=\"frame ") == 39 and "best matches" in timeline
    image, info, timeline = client.predict("driving", frames, 6, api_name="/scene_frame")  # frames count from 1
    assert "scene-0061/0005" in info and "frame 6 of 39" in timeline and os.path.exists(image)
    frames, _, timeline = client.predict("flickr", "", "", api_name="/scene_search")
    assert frames == [] and "no scenes" in timeline


def test_humor_tab_ranks_explained_answers_for_a_text_or_image_prompt(client, flickr_dir):
    answers = ["Senate eats the budget", "Senate passes the budget", "Senate passes the penguin"]
    page, scores = client.predict("Senate passes the budget", None, "\n".join(answers) + "\n\n", api_name="/humor_score")
    ranked = scores["ranked"]
    assert sorted(r["answer"] for r in ranked) == sorted(answers)
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    assert all(0 <= r["score"] <= 3 and len(r["words"]) == len(r["answer"].split()) for r in ranked)
    assert page.index(ranked[0]["answer"]) < page.index(ranked[-1]["answer"]) and "chip" in page
    image = sorted((flickr_dir / "images").iterdir())[0]
    _, scores = client.predict("", handle_file(str(image)), "the dog is the boss", api_name="/humor_score")
    assert scores["prompt"].startswith("a photo of")  # the image was captioned into the prompt
    for args, message in ((("a prompt", None, "  "), "at least one answer"),
                          (("a prompt", None, "x" * 600), "At most 20 answers")):
        with pytest.raises(Exception, match=message):
            client.predict(*args, api_name="/humor_score")


def test_bad_input_gets_a_message_and_the_server_stays_up(client, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    corrupt = tmp_path / "photo.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff" + os.urandom(2000))
    huge = tmp_path / "huge.png"
    Image.new("L", (9000, 5000)).save(huge)
    cases = [
        (("flickr", "   ", "both", 5, 0), "/caption_search", "query is empty"),
        (("flickr", "x" * 2000, "both", 5, 0), "/caption_search", "keep it under 1000"),
        (("nowhere", "a dog", "both", 5, 0), "/caption_search", "nowhere"),
        (("flickr", handle_file(str(text)), "", 5, 0), "/image_search", "file"),
        (("flickr", handle_file(str(corrupt)), "", 5, 0), "/image_search", "photo.jpg is not an image"),
        (("flickr", handle_file(str(huge)), "", 5, 0), "/image_search", "too large"),
        (("flickr", None, "", 5, 0), "/image_search", "Upload an image"),
        (("driving", "", ["scene=nowhere"], *no_tags(), 5, 0), "/omni_search", "Known values: example_01"),
        (("driving", "scene-9999", "a car"), "/scene_search", "No scene 'scene-9999'"),
    ]
    for args, api, message in cases:
        with pytest.raises(Exception, match=message):
            client.predict(*args, api_name=api)
    _, hits = client.predict("flickr", "a dog", "both", 3, 0, api_name="/caption_search")
    assert len(hits) == 3


def test_an_upload_over_the_size_cap_is_refused_and_the_server_stays_up(server, client, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(21 * 2**20))
    with pytest.raises(ValueError, match="exceeds the maximum file size of 20971520 bytes"):
        client.predict("flickr", handle_file(str(big)), "", 5, 0, api_name="/image_search")
    with big.open("rb") as f:  # a client that does not check first: the server stops reading at the cap
        refused = httpx.post(server + "gradio_api/upload", files={"files": ("big.png", f)}, timeout=60)
    assert refused.status_code == 413 and "File size exceeded maximum allowed size" in refused.text
    _, hits = client.predict("flickr", "a dog", "both", 3, 0, api_name="/caption_search")
    assert len(hits) == 3


def test_an_unreadable_upload_is_named_without_its_server_path(client, tmp_path):
    corrupt = tmp_path / "photo.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff" + os.urandom(2000))
    with pytest.raises(Exception, match="photo.jpg is not an image") as error:
        client.predict("flickr", handle_file(str(corrupt)), "", 5, 0, api_name="/image_search")
    assert "/" not in str(error.value) and "gradio" not in str(error.value)


def test_uploads_and_result_images_are_swept_from_the_cache(tiny, tmp_path, monkeypatch):
    from fakes import COLOURS, picture

    from mosaic.app import serve

    cache = tmp_path / "cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    port = free_port()
    demo = serve([tiny.collection.path], host="127.0.0.1", port=port, block=False, cache_sweep=(1, 2))
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        files = lambda: {p for p in cache.rglob("*") if p.is_file()}  # noqa: E731
        page = files()  # the images the page opens with (the collection's strip) stay
        for colour in COLOURS:
            picture(colour, "white").save(tmp_path / f"{colour}.png")
            client.predict(tiny.collection.name, handle_file(str(tmp_path / f"{colour}.png")), "", 4, 0,
                           api_name="/image_search")
        assert len(files() - page) >= len(COLOURS)  # the uploads and the result images
        for _ in range(20):
            if files() == page:
                break
            time.sleep(0.5)
        assert files() == page
    finally:
        demo.close()


def test_demo_py_builds_and_serves_the_default_collection(tmp_path):
    port = free_port()
    env = {**os.environ, "MOSAIC_ARTIFACTS": str(tmp_path / "artifacts"), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / "demo.py"), "--port", str(port), "--mcp"]
    with served(command, port, env=env, cwd=tmp_path) as url:
        _, hits = Client(url, verbose=False).predict("skimage", "a cat with green eyes", "both", 3, 0,
                                                     api_name="/caption_search")
        with pytest.raises(Exception, match="No humor model is loaded"):
            Client(url, verbose=False).predict("a prompt", None, "an answer", api_name="/humor_score")
        tabs = {c["props"]["label"]: c["props"]["visible"] for c in httpx.get(f"{url}config").json()["components"]
                if c["type"] == "tabitem"}
        tool = mcp_session(url, lambda s: s.call_tool("caption_search", {"collection": "skimage", "k": 3, "min_score": 0,
                                                                         "text": "a cat with green eyes"}))
    assert hits[0]["id"] == "chelsea"
    assert not tabs["Humor"] and not tabs["Scenes"] and tabs["Browse"]  # no tab that cannot work here
    assert ast.literal_eval(tool.content[0].text)[1] == hits  # the MCP tool answers as the API does
    assert (tmp_path / "artifacts" / "skimage" / "manifest.json").exists()


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def results(page):
    """The visible result gallery's thumbnails."""
    return page.locator(".results:visible .thumbnail-item")


@pytest.mark.browser
def test_search_in_headless_chromium(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server)
    page.get_by_role("tab", name="Search").click()
    page.get_by_label("Describe the image").fill("a dog running on the grass")
    page.get_by_label("Describe the image").press("Enter")
    thumbs = page.locator(".thumbnail-item img")
    page.locator(".results .thumbnail-item img").first.wait_for(timeout=60_000)
    assert results(page).count() >= 10  # the gallery filled with the default top k (12)
    shown = results(page).count()
    page.get_by_role("button", name="Load more").first.click()
    page.wait_for_function(f"() => document.querySelectorAll('.results .thumbnail-item').length > {shown}",
                           timeout=60_000)
    results(page).first.click()
    why = page.locator(".why")
    why.wait_for(timeout=30_000)
    assert "Query words" in why.inner_text() and "dog" in page.locator(".why .query-words").inner_text()
    assert "z-score" not in why.inner_text()
    page.screenshot(path=tmp_path / "why.png", full_page=True)
    assert page.locator(".results:visible .preview").count() == 1  # the result clicked, enlarged
    page.get_by_label("Describe the image").fill("a dog in the snow")
    page.get_by_label("Describe the image").press("Enter")
    page.wait_for_function("() => !document.querySelector('.results .preview')", timeout=30_000)  # new results
    page.get_by_role("tab", name="Humor").click()
    page.get_by_label("Prompt", exact=True).fill("Senate passes the budget")
    page.get_by_label("Answers, one per line").fill("Senate eats the budget\nSenate passes the penguin")
    page.get_by_role("button", name="Score", exact=True).click()
    ranked = page.locator(".humor li")
    ranked.first.wait_for(timeout=60_000)
    assert ranked.count() == 2 and "penguin" in page.locator(".humor").inner_text()
    assert thumbs.count() >= 10
    from playwright.sync_api import expect

    note = page.locator("div.prose.result-note:visible")
    download = page.locator("button:visible", has_text="Download results")
    page.get_by_role("tab", name="Search").click()
    expect(note).to_contain_text("results · best match")
    page.get_by_label("Describe the image").fill("dog " * 500)  # too long: refused
    page.get_by_label("Describe the image").press("Enter")
    expect(page.locator(".toast-body")).to_contain_text("keep it under", timeout=30_000)
    expect(note.filter(has_text="results")).to_have_count(0)  # nothing left of the last search
    expect(results(page)).to_have_count(0)
    expect(download).to_be_disabled()
    assert page.locator(".why").count() == 0
    page.close()
    assert (tmp_path / "why.png").stat().st_size > 50_000


@pytest.mark.browser
def test_landing_example_gives_labelled_results_and_a_shareable_link(server, browser, flickr, tmp_path):
    from mosaic.app import handlers

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server)
    from playwright.sync_api import expect

    example = page.locator("#examples button, #examples .gallery-item").first
    expect(example).to_have_text(re.compile(r"\w"), timeout=60_000)  # rendered, with its text
    query = example.inner_text().strip()
    example.click()
    results(page).first.wait_for(timeout=60_000)

    expect(page.get_by_label("Describe the image")).to_have_value(query)
    expect(page.locator(".result-note").first).to_contain_text("results · best match", timeout=30_000)
    labels = {handlers.label(flickr, r) for r in range(len(flickr.collection))}  # human captions (handler tests)
    strength, label = results(page).first.inner_text().strip().split(" · ", 1)
    assert strength.isdigit() and label in labels
    page.screenshot(path=tmp_path / "landing.png", full_page=True)
    link = page.url
    assert "q=" in link and "collection=flickr" in link
    again = browser.new_page(viewport={"width": 1400, "height": 1000})
    again.goto(link)  # the link opens the same search
    results(again).first.wait_for(timeout=60_000)
    expect(again.get_by_label("Describe the image")).to_have_value(query)
    again.get_by_role("tab", name="Omni").click()
    again.wait_for_function("() => location.search.includes('tab=omni')", timeout=30_000)
    third = browser.new_page(viewport={"width": 1400, "height": 1000})
    third.goto(again.url)  # the link reopens the tab too
    expect(third.get_by_role("tab", name="Omni")).to_have_attribute("aria-selected", "true", timeout=60_000)
    third.close()
    again.close()
    page.close()


@pytest.mark.browser
def test_impossible_filters_explain_themselves_and_a_switch_clears_results(server, browser, wikiart, tmp_path):
    c = wikiart.collection
    pairs = {(c.item(r)["style"], c.item(r)["genre"]) for r in range(len(c))}
    fields = c.filter_fields()
    style, genre = next((s, g) for s in fields["style"] for g in fields["genre"] if (s, g) not in pairs)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server + "?collection=wikiart")
    page.get_by_role("tab", name="Omni").click()
    page.get_by_label("Text (optional)").fill("a painting")
    box = page.locator("#omni-filters input")
    for value in (f"style: {style}", f"genre: {genre}"):
        box.click()
        box.fill(value.split(": ")[1])
        page.get_by_role("option", name=value, exact=True).click()
    page.keyboard.press("Escape")
    page.locator("#omni-go").click()
    from playwright.sync_api import expect

    expect(page.locator("div.prose.result-note:visible")).to_contain_text(
        f"No image is style {style} and genre {genre} at once: remove a filter", timeout=60_000)
    page.screenshot(path=tmp_path / "empty.png", full_page=True)
    weight = page.get_by_label("number input for Weight of tag 1")
    expect(weight).to_be_disabled()  # until a tag is picked
    page.get_by_label("Tag 1", exact=True).click()
    expect(page.get_by_role("option", name="Impressionism (style)", exact=True)).to_be_visible()
    assert not [o for o in page.get_by_role("option").all_inner_texts() if ":" in o]  # words, not "style:..."
    page.get_by_role("option", name="Impressionism (style)", exact=True).click()
    expect(weight).to_be_enabled()
    page.get_by_role("tab", name="Search").click()
    page.get_by_label("Describe the image").fill("a portrait")
    page.get_by_label("Describe the image").press("Enter")
    results(page).first.wait_for(timeout=60_000)
    paintings = set(page.locator(".results:visible .caption-label").all_inner_texts())
    page.get_by_label("Collection").click()
    page.get_by_role("option", name="flickr").click()
    page.wait_for_function("() => !document.querySelector('.results .thumbnail-item')", timeout=30_000)
    results(page).first.wait_for(timeout=60_000)  # the query in the box, asked of the photos
    assert not paintings & set(page.locator(".results:visible .caption-label").all_inner_texts())
    assert "collection=flickr" in page.url and "q=a+portrait" in page.url
    page.close()


def test_load_more_shows_while_pages_come_full_and_fit_under_the_cap():
    from mosaic.app import tabs
    from mosaic.search import MAX_K

    def more(n, k, page=None):
        hits = [{"id": str(i), "score": 1.0} for i in range(n)]
        return tabs.after_results(hits, k, page)[1].visible
    assert more(12, 12) and not more(5, 12)  # a first page: full, or the end
    assert more(24, 12, 12) and not more(17, 12, 5)  # a page loaded after it
    assert more(MAX_K - 12, 12, 12) and not more(MAX_K - 11, 12, 12)  # no page past the 1,000th result
    assert tabs.after_results([], 12)[1].visible is False
    assert tabs.shown_item([{"id": "a.jpg"}], "a.jpg ") == "a.jpg " and tabs.shown_item([{"id": "b.jpg"}], "a.jpg") == ""


@pytest.mark.browser
def test_browse_pager_and_an_item_a_filter_takes_away(server, browser, wikiart):
    from playwright.sync_api import expect

    c = wikiart.collection
    first = c.item(0)
    other = next(s for s in c.filter_fields()["style"] if s != first["style"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server + "?collection=wikiart&tab=browse")
    back, forward = page.get_by_role("button", name="◀ Previous"), page.get_by_role("button", name="Next ▶")
    similar = page.get_by_role("button", name="Find similar images")
    expect(page.get_by_text("Page 1 of 2 · 30 items")).to_be_visible(timeout=60_000)
    expect(back).to_be_disabled(timeout=30_000)
    expect(forward).to_be_enabled()
    expect(similar).to_be_disabled()  # no item yet
    forward.click()
    expect(page.get_by_text("Page 2 of 2 · 30 items")).to_be_visible(timeout=30_000)
    expect(forward).to_be_disabled(timeout=30_000)
    back.click()
    expect(back).to_be_disabled(timeout=30_000)
    number = page.get_by_label("Page", exact=True)
    number.fill("-5")
    number.press("Enter")
    expect(number).to_have_value("1", timeout=30_000)  # clamped to the first page, as 99 is to the last
    page.locator(".results.browse .thumbnail-item").first.click()
    item = page.get_by_label("Item id", exact=True)
    expect(item).to_have_value(first["id"], timeout=60_000)
    expect(similar).to_be_enabled(timeout=30_000)
    box = page.locator("#browse-filters input")
    box.click()
    box.fill(other)
    page.get_by_role("option", name=f"style: {other}", exact=True).click()
    page.keyboard.press("Escape")
    expect(item).to_have_value("", timeout=30_000)  # its details gone with it
    expect(similar).to_be_disabled(timeout=30_000)
    expect(forward).to_be_disabled()  # one page of that style
    page.keyboard.press("Escape")
    page.locator(".results.browse .thumbnail-item").first.click()
    expect(similar).to_be_enabled(timeout=30_000)
    page.get_by_label("Collection").click()
    page.get_by_role("option", name="flickr").click()
    expect(item).to_have_value("", timeout=30_000)  # no painting's id left to search the photos with
    expect(similar).to_be_disabled()
    expect(page.locator("#browse-filters")).to_be_hidden()  # the photos have no metadata to filter by
    page.close()


@pytest.mark.browser
def test_load_more_runs_to_the_end_and_the_download_follows(server, browser, wikiart):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server + "?collection=wikiart&q=a+painting")
    more = page.get_by_role("button", name="Load more").first
    for shown in (12, 24):
        expect(results(page)).to_have_count(shown, timeout=60_000)
        more.click()
    expect(results(page)).to_have_count(len(wikiart.collection), timeout=60_000)  # the last page came short
    expect(more).to_be_hidden()
    with page.expect_download() as download:
        page.locator("button:visible", has_text="Download results").click()
    rows = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert len(rows) == 1 + len(wikiart.collection)  # every result shown, not the first page
    page.close()


@pytest.mark.browser
def test_a_phone_sees_every_tab_once_and_whole_gallery_columns(server, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 400, "height": 900})
    page.goto(server + "?collection=flickr&q=a+dog+in+the+snow&__theme=dark")
    results(page).first.wait_for(timeout=60_000)
    page.screenshot(path=tmp_path / "phone.png", full_page=True)
    names = ["Search", "Image", "Omni", "Composed", "Browse", "Humor", "Scenes"]
    for name in names:
        assert page.get_by_role("tab", name=name).first.is_visible()  # none hidden behind a menu
    grid = page.locator(".results .grid-container").first
    boxes = [t.bounding_box() for t in results(page).all()]
    right = grid.bounding_box()["x"] + grid.bounding_box()["width"]
    assert all(b["x"] >= 0 and b["x"] + b["width"] <= min(right, 400) + 1 for b in boxes)  # no cut column
    assert grid.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
    for name in names:  # opening a tab leaves one button per tab
        tab = page.get_by_role("tab", name=name).first
        tab.click()
        expect(tab).to_have_attribute("aria-selected", "true")
        page.wait_for_timeout(300)  # its content mounts
        assert page.get_by_role("tab").all_inner_texts() == names
    expect(page.get_by_text("This collection has no scenes")).to_be_visible()  # at the top of Scenes
    expect(page.get_by_role("button", name="▶ Play")).to_be_hidden()  # and no player that cannot play
    page.get_by_role("tab", name="Search").click()
    results(page).nth(1).click()
    preview = page.locator(".results:visible .preview")
    expect(preview).to_be_visible()
    assert preview.bounding_box()["height"] <= 500  # in the grid's place, not over the 6 rows of results
    expect(page.locator(".results:visible .grid-wrap")).to_be_hidden()
    caption = preview.locator(".caption").bounding_box()
    assert caption["x"] >= preview.bounding_box()["x"]  # a long caption ends in "…", its start in view
    preview.get_by_label("Close").click()
    expect(results(page).first).to_be_visible()
    page.get_by_role("tab", name="Browse").click()
    results(page).first.click()
    expect(page.get_by_label("Item id", exact=True)).to_be_in_viewport(timeout=30_000)  # not 24 images below


CONTRAST_JS = """e => {
  const rgb = c => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = c => rgb(c).map(v => v / 255).map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
                         .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  let bg = e;
  while (getComputedStyle(bg).backgroundColor.match(/, 0\\)$|transparent/)) bg = bg.parentElement;
  const [a, b] = [lum(getComputedStyle(e).color), lum(getComputedStyle(bg).backgroundColor)];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


@pytest.mark.browser
@pytest.mark.parametrize("mode", ["light", "dark"])
def test_buttons_and_help_text_keep_readable_contrast(server, browser, mode):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{server}?__theme={mode}")
    page.get_by_role("tab", name="Search").click()
    button = page.locator("button:visible", has_text="Search").last  # the tab's primary button
    help_text = page.get_by_text("the images, their captions, or both")
    button.wait_for()
    assert "primary" in button.get_attribute("class")
    assert button.evaluate(CONTRAST_JS) >= 4.5  # WCAG AA for text
    assert help_text.evaluate(CONTRAST_JS) >= 4.5
    page.close()


@pytest.mark.browser
def test_a_typed_id_shows_escaped_in_the_error_message(server, browser):
    hostile = "<img src=x onerror=alert(1)>"
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: dialogs.append(d.message) or d.dismiss())
    page.goto(server)
    page.get_by_role("tab", name="Image").click()
    page.get_by_label("...or an item's id").fill(hostile)
    page.get_by_role("button", name="Find similar images").click()
    toast = page.get_by_test_id("toast-text").first
    toast.wait_for(timeout=30_000)
    assert hostile in toast.inner_text() and "<img" not in toast.inner_html()
    assert page.locator("[data-testid=toast-body] img").count() == 0 and not dialogs
    page.close()


@pytest.mark.browser
def test_scene_marks_seek_and_playback_advances(server, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server + "?collection=driving&__theme=dark")
    page.get_by_role("tab", name="Scenes").click()
    page.get_by_label("Find in the scene").fill("a truck at an intersection")
    page.get_by_role("button", name="Find", exact=True).click()
    legend = page.locator(".timeline + small")
    expect(legend).to_contain_text("best matches: frames", timeout=60_000)
    text = legend.inner_text()
    marked = [int(n) for n in text.split("frames ")[1].split(" (")[0].split(", ")]
    target = next(n for n in marked if f"frame {n} of" not in text)  # a mark not on screen
    page.locator(f'.timeline [data-frame="{target}"]').click()
    expect(legend).to_contain_text(f"frame {target} of", timeout=30_000)
    expect(page.get_by_label("number input for Timeline (frame)")).to_have_value(str(target))
    page.screenshot(path=tmp_path / "scene.png", full_page=True)
    page.locator('.timeline [data-frame="1"]').click()
    expect(legend).to_contain_text("frame 1 of", timeout=30_000)
    page.get_by_role("button", name="▶ Play").click()
    page.wait_for_function("() => +document.querySelector('.timeline + small').innerText.match(/frame (\\d+) of/)[1] >= 4",
                           timeout=30_000)  # playing, frame after frame
    page.get_by_role("button", name="Pause").click()
    page.close()
