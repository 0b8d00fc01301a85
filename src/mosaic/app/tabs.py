"""The app's tabs, one builder each: it lays out the tab's components and wires their events to
the handlers. Here, and only here, handlers meet Gradio: their MosaicErrors become messages
(`user_errors`) and plain answers become component updates."""
from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial, wraps
from typing import NamedTuple

import gradio as gr

from ..errors import MosaicError
from ..search import MAX_K, TARGETS
from ..sources import MAX_PIXELS
from . import handlers, render
from .handlers import TAG_SLOTS, Library

FRAME_SECONDS = 0.25  # scene playback: one frame every quarter of a second
# A click on a frame of a scene's timeline (render.timeline_html) seeks to that frame.
TIMELINE_CLICKS = ("element.addEventListener('click', e => { const cell = e.target.closest('[data-frame]');"
                   " if (cell) trigger('click', {frame: Number(cell.dataset.frame)}); });")
# On a phone the details of a Browse item sit below the whole page of images: a click goes to them.
SHOW_ITEM = ("() => { if (window.innerWidth < 640) document.getElementById('item-id')"
             "?.scrollIntoView({behavior: 'smooth'}); }")
UPLOAD_LIMITS = f"up to {handlers.MAX_UPLOAD_MB} MB and {MAX_PIXELS / 1e6:g} megapixels"


def user_errors(fn):
    """Show a user's mistake (empty query, unreadable image, unknown collection...) as a message
    in the UI, or an error for API clients; the server carries on. The message is escaped: the
    UI shows it as HTML, and it may quote what the user typed."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MosaicError as e:
            raise gr.Error(html.escape(str(e), quote=False), print_exception=False) from None
    return wrapper


@dataclass
class Controls:
    """What every tab reads: the library, the controls shared by the tabs, and the first
    collection's choices (filters, tags, scenes) that the tabs' controls start with."""

    library: Library
    collection: gr.Dropdown
    k: gr.Slider
    min_score: gr.Slider
    hide_duplicates: gr.Checkbox
    start: dict[str, list[str]]

    def handler(self, fn: Callable) -> Callable:
        """A handler as an event function: the library filled in, its inputs named as the API names
        them (fn's parameters after the library), a user's mistake shown as a message."""
        # Gradio names an endpoint's MCP tool after the function, and describes the tool and its
        # parameters (on the API page too) from its docstring: the handler's, whose Args name them.
        bound = user_errors(partial(fn, self.library))
        bound.__name__, bound.__doc__ = fn.__name__, fn.__doc__
        return bound


class Results(NamedTuple):
    """A result panel's components."""

    grid: gr.Gallery
    hits: gr.JSON
    why: gr.HTML
    note: gr.Markdown
    download: gr.DownloadButton
    more: gr.Button
    offset: gr.Number  # the API's paging parameter (the UI's searches start at 0)

    def clearable(self) -> list:
        """The components `cleared` empties, in its order."""
        return [self.grid, self.hits, self.why, self.note, self.download, self.more]

    def cleared(self) -> tuple:
        """Updates that empty the panel (another collection was picked, or a search failed)."""
        return [], None, render.why_html(None, 0), "", *after_results(None)


def result_panel() -> Results:
    """A line about the results, a results gallery with "Load more" under it, "Why this match?"
    for the hit clicked, the hits as JSON and as a download."""
    note = gr.Markdown(elem_classes="result-note")
    grid = gr.Gallery(label="Results", columns=4, height="auto", object_fit="cover", format="jpeg",
                      elem_classes="results")
    more = gr.Button("Load more", size="sm", visible=False)
    offset = gr.Number(0, precision=0, visible=False, label="offset")
    with gr.Accordion("Why this match?", open=False, elem_classes="why-box") as box:
        why = gr.HTML()
    with gr.Accordion("Results as JSON", open=False):
        hits = gr.JSON(label="hits")
    download = gr.DownloadButton("Download results (CSV)", interactive=False, size="sm")

    def explain(hits, evt: gr.SelectData):
        return render.why_html(hits, evt.index), gr.Accordion(open=True)
    grid.select(explain, hits, [why, box], api_visibility="private")
    return Results(grid, hits, why, note, download, more, offset)


def after_results(hits: list[dict] | None, k: float = 0, page: int | None = None) -> tuple:
    """The results as a CSV file to download (once there are results), and "Load more" while the
    last page (`page` results; all of `hits` for a new search) came full, `k` of them (a short one
    was the end), and another page fits within the MAX_K results a search goes to."""
    if not hits:
        return gr.DownloadButton(value=None, interactive=False), gr.Button(visible=False)
    full = (len(hits) if page is None else page) >= k and len(hits) + k <= MAX_K
    return gr.DownloadButton(value=handlers.export_csv(hits), interactive=True), gr.Button(visible=full)


def load_more(shared: Controls, search: Callable) -> Callable:
    """"Load more" for a search: its inputs (the offset last, replaced), the hits shown and the
    page size give those hits and the next page, their download and "Load more" again if it came full."""
    extend = shared.handler(handlers.extend)

    def more(*args):
        *inputs, shown, k = args
        page = search(*inputs[:-1], len(shown or []))
        grid, hits = extend(inputs[0], shown, page)
        return grid, hits, *after_results(hits, k, len(page[1]))
    return more


def wire_search(events: list, fn: Callable, inputs: list, panel: Results, shared: Controls,
                api_name: str | None = None, filters: gr.Dropdown | None = None) -> None:
    """Run a search on any of `events` (the first is the API endpoint `api_name`, if given), then
    say how it went (with the search's `filters`, if any), explain hit 1 and offer the results as a
    download and "Load more"; a search that fails (a refused query) empties the panel, so nothing
    of the last one stays. Inputs reach the handler unprocessed (see `handlers.read_upload`)."""
    note = dict(fn=shared.handler(handlers.result_note), outputs=panel.note, api_visibility="private",
                inputs=[shared.collection, shared.min_score, panel.hits] + ([filters] if filters else []))
    inputs = [*inputs, shared.hide_duplicates, panel.offset]
    for i, event in enumerate(events):
        public = i == 0 and api_name is not None
        done = event(fn, inputs, [panel.grid, panel.hits], api_name=api_name if public else None,
                     api_visibility="public" if public else "private", preprocess=False)
        done.failure(panel.cleared, None, panel.clearable(), api_visibility="private")
        done.success(lambda: gr.Gallery(selected_index=None), None, panel.grid,  # no enlarged image of the last
                     api_visibility="private")
        done.success(**note)
        done.success(lambda h: render.why_html(h, 0), panel.hits, panel.why, api_visibility="private").then(
            after_results, [panel.hits, shared.k], [panel.download, panel.more], api_visibility="private")
    if api_name:  # once per panel: the tab's own search, not one wired later from another tab
        panel.more.click(load_more(shared, fn), [*inputs, panel.hits, shared.k],
                         [panel.grid, panel.hits, panel.download, panel.more], preprocess=False,
                         api_visibility="private").then(**note)


def shown(fn: Callable) -> Callable:
    """An image handler for a preview that shows only while there is an image."""
    @wraps(fn)
    def wrapper(*args):
        image = fn(*args)
        return gr.Image(value=image, visible=image is not None)
    return wrapper


def image_input(label: str) -> gr.Image:
    """An image to upload, paste or take with the camera (its file reaches handlers unprocessed)."""
    return gr.Image(label=f"{label} ({UPLOAD_LIMITS})", type="filepath", sources=["upload", "clipboard", "webcam"],
                    height=220)


def wire_preview(shared: Controls, upload: gr.Image, item_id: gr.Textbox, preview: gr.Image) -> None:
    """Show the query (or reference) item an id names, while no image is uploaded."""
    for event in (upload.change, item_id.change):
        event(shown(shared.handler(handlers.query_preview)), [shared.collection, upload, item_id], preview,
              api_visibility="private", preprocess=False)


def link_restorer(library: Library, resets: int) -> Callable:
    """On page load: the collection, the query and the tab a link carries
    (?collection=NAME&q=TEXT&tab=TAB), and the page reset to that collection (`on_collection`'s
    `resets` updates) when it is not the one the page was built with."""
    first = next(iter(library.services))

    def restore(request: gr.Request):
        params = dict(request.query_params) if request else {}
        name, query, tab = handlers.link_state(library, params)
        # Without a link's values the page keeps what the visitor may already have clicked.
        reset = on_collection(library, name) if name != first else (gr.skip(),) * resets
        return ((name if "collection" in params else gr.skip()), (query if query else gr.skip()),
                (gr.Tabs(selected=tab) if tab else gr.skip()), *reset)
    return restore


def remember_tab(tab_row: gr.Tabs) -> None:
    """The tab opened, in the address bar (`tab=`), so a link reopens it."""
    def opened(evt: gr.SelectData) -> str:
        return str(evt.value).lower()
    name = gr.Textbox(visible=False)
    tab_row.select(opened, None, name, api_visibility="private").then(None, name, None, js=TAB_JS,
                                                                      api_visibility="private")


def strip_picker(library: Library) -> Callable:
    """The strip's click: the image clicked becomes the Image tab's query."""
    def pick(name: str, evt: gr.SelectData):
        return handlers.strip_item(library, name, evt.index), None, gr.Tabs(selected="image")
    return pick


def filter_options(filters: list[str]) -> list[tuple[str, str]]:
    """`field=value` filters as dropdown choices that read "field: value", grouped by field."""
    return [(f.replace("=", ": ", 1), f) for f in filters]


def tag_options(tags: list[str]) -> list[tuple[str, str]]:
    """Tags as dropdown choices that read as words ("dog", "beach (scenes)")."""
    return [(render.tag_name(t), t) for t in tags]


class ImageTab(NamedTuple):
    """What other tabs use of the Image tab."""

    upload: gr.Image
    item_id: gr.Textbox
    panel: Results
    search_after: Callable  # wires another event (Browse -> Find similar) to the same search


def image_tab(shared: Controls) -> ImageTab:
    """Search by an uploaded image or an item's id (the query shown)."""
    with gr.Tab("Image", id="image"):
        gr.Markdown("Find the images that look most like yours: drop a picture, or pick one of the collection "
                    "(Browse, or click an image in the strip above).", elem_classes="hint")
        with gr.Row():
            with gr.Column(scale=1, min_width=240):
                upload = image_input("Query image")
                item_id = gr.Textbox(label="...or an item's id", placeholder="Browse -> Find similar fills this")
                preview = gr.Image(label="Query", interactive=False, height=200, visible=False)
                go = gr.Button("Find similar images", variant="primary")
            with gr.Column(scale=3):
                panel = result_panel()
    wire_preview(shared, upload, item_id, preview)
    fn, inputs = shared.handler(handlers.image_search), [shared.collection, upload, item_id, shared.k, shared.min_score]
    wire_search([go.click], fn, inputs, panel, shared, "image_search")
    return ImageTab(upload, item_id, panel, lambda event: wire_search([event], fn, inputs, panel, shared))


class SearchTab(NamedTuple):
    """What the page wires across tabs from the Search tab."""

    text: gr.Textbox
    examples: gr.Dataset
    panel: Results
    search_after: Callable  # wires another event (a link opened) to the search in the box, if it holds one


def search_tab(shared: Controls) -> SearchTab:
    """Search by a text, against images, captions or both; example queries from the collection."""
    with gr.Tab("Search", id="search"):
        with gr.Row():
            with gr.Column(scale=1, min_width=240):
                text = gr.Textbox(label="Describe the image", placeholder="a dog running on the grass",
                                  elem_id="query", autofocus=True)
                go = gr.Button("Search", variant="primary")
                examples = gr.Dataset(components=[gr.Textbox(visible=False)], label="Try",
                                      samples=[[q] for q in shared.start["examples"]], type="index",
                                      samples_per_page=handlers.EXAMPLES, elem_id="examples")
                target = gr.Radio(list(TARGETS), value="both", label="Match against",
                                  info="the images, their captions, or both (the mean)")
            with gr.Column(scale=3):
                panel = result_panel()
    fn, inputs = shared.handler(handlers.caption_search), [shared.collection, text, target, shared.k, shared.min_score]
    wire_search([go.click, text.submit], fn, inputs, panel, shared, "caption_search")
    pick = examples.click(shared.handler(handlers.example_query), [shared.collection, examples], text,
                          api_visibility="private")
    wire_search([pick.then], fn, inputs, panel, shared)
    for event in (go.click, text.submit, pick.then):
        event(None, [shared.collection, text], None, js=SHARE_JS, api_visibility="private")
    return SearchTab(text, examples, panel,
                     lambda event: wire_search([event], if_query(fn), inputs, panel, shared))


def if_query(search: Callable) -> Callable:
    """A text search that runs only when its box (the second input) holds a query."""
    @wraps(search)
    def wrapper(collection, text, *rest):
        return search(collection, text, *rest) if (text or "").strip() else (gr.skip(), gr.skip())
    return wrapper


TAB_JS = """(tab) => {
  const url = new URL(window.location.href);
  url.searchParams.set("tab", tab);
  window.history.replaceState(null, "", url);
  return [];
}"""
# The search in the address bar, so a link (or a bookmark) opens the same search.
SHARE_JS = """(collection, q) => {
  const url = new URL(window.location.href);
  url.searchParams.set("collection", collection);
  url.searchParams.set("q", q);
  window.history.replaceState(null, "", url);
  return [];
}"""


def omni_tab(shared: Controls) -> tuple[gr.Dropdown, list[gr.Dropdown], Results]:
    """Search by text, filters and weighted tags; returns the filters, the tag pickers and the results."""
    with gr.Tab("Omni", id="omni"):
        gr.Markdown("Text, filters and tags together: the text leads, each tag nudges (a tag of weight 1 "
                    "counts half as much as the text, 2 as much; below 0 pushes away).", elem_classes="hint")
        with gr.Row():
            with gr.Column(scale=1, min_width=240):
                text = gr.Textbox(label="Text (optional)", placeholder="a calm landscape")
                filters = gr.Dropdown(filter_options(shared.start["filters"]), multiselect=True, label="Filters",
                                      allow_custom_value=True, elem_id="omni-filters", visible=bool(shared.start["filters"]),
                                      info="values of one field: any of them; of several fields: all")
                slots = []
                for i in range(TAG_SLOTS):
                    with gr.Group():
                        slots.append(gr.Dropdown(tag_options(shared.start["tags"]), value=None, label=f"Tag {i + 1}",
                                                 allow_custom_value=True))
                        slots.append(gr.Slider(-2, 2, value=1, step=0.1, label=f"Weight of tag {i + 1}",
                                               interactive=False))  # until a tag is picked
                go = gr.Button("Search", variant="primary", elem_id="omni-go")
            with gr.Column(scale=3):
                panel = result_panel()
    for tag, weight in zip(slots[::2], slots[1::2]):
        tag.change(lambda t: gr.Slider(interactive=bool(t)), tag, weight, api_visibility="private")
    wire_search([go.click, text.submit], shared.handler(handlers.omni_search),
                [shared.collection, text, filters, *slots, shared.k, shared.min_score], panel, shared,
                "omni_search", filters)
    return filters, slots[::2], panel


COMPOSED_METHODS = [("Blend the picture with the words", "sum"), ("Turn the picture towards the words", "slerp"),
                    ("Rewrite the picture's caption with the change", "text")]  # (label, ComposedSearch method)


def composed_tab(shared: Controls) -> tuple[Results, gr.Textbox]:
    """Search by a reference image and a text saying what should change; returns the results
    panel and the reference's item id."""
    with gr.Tab("Composed", id="composed"):
        gr.Markdown("Start from an image and say what should change: \"the same dog but on a beach\".",
                    elem_classes="hint")
        with gr.Row():
            with gr.Column(scale=1, min_width=240):
                upload = image_input("Reference image")
                item_id = gr.Textbox(label="...or a reference item's id")
                preview = gr.Image(label="Reference", interactive=False, height=200, visible=False)
                text = gr.Textbox(label="What should change", placeholder="the same scene but at night")
                method = gr.Radio(COMPOSED_METHODS, value="sum", label="How to combine them")
                weight = gr.Slider(0, 1, value=0.5, step=0.05, label="Weight of the words",
                                   info="how far the words pull away from the picture (not for a rewritten caption)")
                go = gr.Button("Search", variant="primary")
            with gr.Column(scale=3):
                panel = result_panel()
    wire_preview(shared, upload, item_id, preview)
    method.change(lambda m: gr.Slider(interactive=m != "text"), method, weight, api_visibility="private",
                  queue=False, show_progress="hidden")
    wire_search([go.click, text.submit], shared.handler(handlers.composed_search),
                [shared.collection, upload, item_id, text, method, weight, shared.k, shared.min_score],
                panel, shared, "composed_search")
    return panel, item_id


class BrowseTab(NamedTuple):
    """What the page wires across tabs from the Browse tab."""

    tab: gr.Tab
    filters: gr.Dropdown
    page: gr.Number
    item_id: gr.Textbox
    similar: gr.Button
    show: dict  # event arguments that show the current page


def browse_tab(shared: Controls) -> BrowseTab:
    """The collection page by page (filtered), and the details of the item clicked."""
    with gr.Tab("Browse", id="browse") as tab:
        gr.Markdown("The whole collection, a page at a time: click an image for its captions and details.",
                    elem_classes="hint")
        with gr.Row():
            filters = gr.Dropdown(filter_options(shared.start["filters"]), multiselect=True, label="Filters", scale=4,
                                  allow_custom_value=True, min_width=200, elem_id="browse-filters",
                                  visible=bool(shared.start["filters"]))
            with gr.Column(scale=3, min_width=280), gr.Row():  # the pager wraps as one piece on a phone
                back = gr.Button("◀ Previous", scale=1, min_width=90, interactive=False)
                number = gr.Number(1, precision=0, label="Page", scale=1, min_width=70)
                forward = gr.Button("Next ▶", scale=1, min_width=90)
        with gr.Row():
            with gr.Column(scale=3):
                info = gr.Markdown(label="page_info")
                grid = gr.Gallery(label="Collection", columns=6, height="auto", object_fit="cover",
                                  allow_preview=False, format="jpeg", elem_classes="results browse")
                with gr.Accordion("Page as JSON", open=False):
                    items = gr.JSON(label="items")
            with gr.Column(scale=2):
                item_id, similar = item_panel(shared)
    show = dict(fn=shared.handler(handlers.browse), inputs=[shared.collection, filters, number],
                outputs=[grid, items, number, info], api_visibility="private")
    number.submit(**{**show, "api_visibility": "public"}, api_name="browse")
    info.change(pager(shared), [shared.collection, filters, number], [back, forward], api_visibility="private",
                queue=False, show_progress="hidden")
    filters.change(**show).then(shown_item, [items, item_id], item_id, api_visibility="private")
    for button, move in ((back, -1), (forward, 1)):
        button.click(partial(handlers.turn_page, move=move), number, number, api_visibility="private").then(**show)

    def pick(items, evt: gr.SelectData):
        return items[evt.index]["id"]
    grid.select(pick, items, item_id, api_visibility="private")
    grid.select(None, None, None, js=SHOW_ITEM, api_visibility="private")
    return BrowseTab(tab, filters, number, item_id, similar, show)


def pager(shared: Controls) -> Callable:
    """Previous and Next, each switched off where there is no page to turn to."""
    count = shared.handler(handlers.pages)

    def buttons(collection: str, filters: list[str] | None, page: float | None):
        return gr.Button(interactive=(page or 1) > 1), gr.Button(interactive=(page or 1) < count(collection, filters))
    return buttons


def shown_item(items: list[dict] | None, item_id: str) -> str:
    """The item whose details are open, while the page shows it (a filter may have taken it away)."""
    return item_id if any(d["id"] == (item_id or "").strip() for d in items or []) else ""


def item_panel(shared: Controls) -> tuple[gr.Textbox, gr.Button]:
    """An item's image and details, shown when its id changes; returns the id and Find similar."""
    item_id = gr.Textbox(label="Item id", placeholder="click an image", elem_id="item-id")
    image = gr.Image(label="Image", interactive=False)
    text = gr.Markdown(label="details")
    item = gr.JSON(visible=False, label="item")
    similar = gr.Button("Find similar images", interactive=False)
    item_id.change(shared.handler(handlers.item_details), [shared.collection, item_id], [image, text, item],
                   api_name="item_details")
    item_id.change(lambda i: gr.Button(interactive=bool((i or "").strip())), item_id, similar, api_visibility="private",
                   queue=False, show_progress="hidden")
    return item_id, similar


def with_slider(fn: Callable) -> Callable:
    """Scene search for the UI: the timeline slider reset to span the scene's frames (from 1), on
    the best-matching frame."""
    @wraps(fn)
    def wrapper(*args):
        frames, timeline = fn(*args)
        return (frames, gr.Slider(minimum=1, maximum=max(len(frames), 2), value=handlers.best_frame(frames)),
                timeline)
    return wrapper


def player(show: Callable) -> tuple[Callable, Callable]:
    """Playback and seeking, each one request per frame (`show` gives a frame's image, line and
    timeline): the timer's tick shows the next frame (stopping at the last), a click on the
    timeline shows the frame clicked."""
    def tick(collection: str, frames: list[dict] | None, position: float | None):
        at = min(int(position or 1) + 1, max(len(frames or []), 1))
        return at, *show(collection, frames, at), gr.Timer(active=at < len(frames or []))

    def seek(collection: str, frames: list[dict] | None, evt: gr.EventData):
        at = int(getattr(evt, "frame", 0) or 0)
        return (at, *show(collection, frames, at)) if frames and at else (gr.skip(),) * 4
    return tick, seek


class ScenesTab(NamedTuple):
    """What the page wires across tabs from the Scenes tab."""

    scene: gr.Dropdown
    player: gr.Column  # hidden, and `empty` shown instead, for a collection without scenes
    empty: gr.Markdown
    tab: gr.Tab
    load: dict  # event arguments that load the chosen scene, unsearched
    show: dict  # event arguments that show the frame at the slider's position


def scenes_tab(shared: Controls) -> ScenesTab:
    """A driving scene played as video over a timeline, its frames searchable by text; the tab
    shows only where a collection served has scenes."""
    scenes = shared.start["scenes"]
    with gr.Tab("Scenes", id="scenes", visible="scenes" in handlers.shown_tabs(shared.library)) as tab:
        gr.Markdown("Driving collections: play a scene, or find a moment in it; the best matches are marked "
                    "▲ on the timeline and the search jumps to the best one.", elem_classes="hint")
        empty = gr.Markdown(f"**{render.NO_SCENES_TEXT}**", visible=not scenes)
        with gr.Column(visible=bool(scenes)) as viewer:
            with gr.Row():
                scene = gr.Dropdown(scenes, value=scenes[0] if scenes else None, label="Scene", scale=2,
                                    allow_custom_value=True, min_width=160)
                text = gr.Textbox(label="Find in the scene", placeholder="a truck at an intersection", scale=3,
                                  min_width=200)
                go = gr.Button("Find", variant="primary", scale=1, min_width=80)
            image = gr.Image(label="Frame", interactive=False, height=420, format="jpeg")
            info = gr.Markdown(label="frame_info")
            with gr.Row():
                play = gr.Button("▶ Play", scale=1, min_width=80)
                pause = gr.Button("Pause", scale=1, min_width=80)
                position = gr.Slider(1, 2, value=1, step=1, label="Timeline (frame)", scale=8, min_width=200)
            timeline = gr.HTML(label="timeline", js_on_load=TIMELINE_CLICKS)
        frames = gr.JSON(visible=False, label="frames")
        timer = gr.Timer(FRAME_SECONDS, active=False)
    show = dict(fn=shared.handler(handlers.scene_frame), inputs=[shared.collection, frames, position],
                outputs=[image, info, timeline], api_visibility="private")
    position.input(**{**show, "api_visibility": "public"}, api_name="scene_frame")
    search = dict(fn=with_slider(shared.handler(handlers.scene_search)), outputs=[frames, position, timeline])
    go.click(**search, inputs=[shared.collection, scene, text], api_name="scene_search").then(**show)
    text.submit(**search, inputs=[shared.collection, scene, text], api_visibility="private").then(**show)
    load = dict(**search, inputs=[shared.collection, scene, gr.State("")], api_visibility="private")
    scene.change(**load).then(**show)
    play.click(lambda: gr.Timer(active=True), None, timer, api_visibility="private")
    pause.click(lambda: gr.Timer(active=False), None, timer, api_visibility="private")
    tick, seek = player(show["fn"])
    timer.tick(tick, [shared.collection, frames, position], [position, image, info, timeline, timer],
               api_visibility="private", show_progress="hidden")
    timeline.click(seek, [shared.collection, frames], [position, image, info, timeline], api_visibility="private")
    return ScenesTab(scene, viewer, empty, tab, load, show)


def humor_tab(shared: Controls) -> None:
    """Answers to a prompt (text or image) ranked by how funny they are, each word's share shown;
    the tab shows only where a humor model is loaded (its API endpoint stays and says so)."""
    with gr.Tab("Humor", id="humor", visible="humor" in handlers.shown_tabs(shared.library)):
        gr.Markdown("How funny is each answer to a prompt? Each answer's words are shaded by how much they add.",
                    elem_classes="hint")
        with gr.Row():
            with gr.Column(scale=1, min_width=240):
                prompt = gr.Textbox(label="Prompt", placeholder="a headline, or leave empty and give an image")
                upload = image_input("...or a prompt image, captioned first")
                answers = gr.Textbox(label="Answers, one per line", lines=5)
                go = gr.Button("Score", variant="primary")
            with gr.Column(scale=2):
                out = gr.HTML()
                with gr.Accordion("Scores as JSON", open=False):
                    scores = gr.JSON(label="scores")
    go.click(shared.handler(handlers.humor_score), [prompt, upload, answers], [out, scores], api_name="humor_score",
             preprocess=False)


def on_collection(library: Library, name: str) -> tuple:
    """The page reset to another collection: its summary, strip and example queries, the filters,
    tags and scenes it offers (the player hidden where it has none), page 1, and no item open in
    Browse, Image or Composed (an id belongs to its collection)."""
    choices = handlers.choices(library, name)
    service = library[name]
    filters = [gr.Dropdown(choices=filter_options(choices["filters"]), value=[], visible=bool(choices["filters"]))
               for _ in range(2)]  # Omni, Browse: shown where the collection has metadata to filter by
    tags = [gr.Dropdown(choices=tag_options(choices["tags"]), value=None) for _ in range(TAG_SLOTS)]
    scenes = choices["scenes"]
    return (handlers.summary(service), handlers.collection_strip(service),
            gr.Dataset(samples=[[q] for q in handlers.example_queries(service)]), *filters, *tags,
            gr.Dropdown(choices=scenes, value=scenes[0] if scenes else None), gr.Column(visible=bool(scenes)),
            gr.Markdown(visible=not scenes), 1, "", "", "")
