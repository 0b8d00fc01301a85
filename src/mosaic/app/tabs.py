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
from ..search import TARGETS
from ..sources import MAX_PIXELS
from . import handlers, render
from .handlers import TAG_SLOTS, Library

FRAME_SECONDS = 0.25  # scene playback: one frame every quarter of a second
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
    start: dict[str, list[str]]

    def handler(self, fn: Callable) -> Callable:
        """A handler as an event function: the library filled in, its inputs named as the API names
        them (fn's parameters after the library), a user's mistake shown as a message."""
        bound = user_errors(partial(fn, self.library))
        # Gradio names private endpoints after the function and shows its docstring on the API page:
        # the handler's name, and no docstring (the handlers' describe a Python call, not an endpoint).
        bound.__name__, bound.__doc__ = fn.__name__, None
        return bound


class Results(NamedTuple):
    """A result panel's components."""

    grid: gr.Gallery
    hits: gr.JSON
    why: gr.HTML


def result_panel() -> Results:
    """A results gallery, "Why this match?" for the hit clicked, and the hits as JSON."""
    grid = gr.Gallery(label="Results", columns=4, height="auto", object_fit="cover", format="jpeg")
    with gr.Accordion("Why this match?", open=False, elem_classes="why-box") as box:
        why = gr.HTML()
    with gr.Accordion("Results as JSON", open=False):
        hits = gr.JSON(label="hits")

    def explain(hits, evt: gr.SelectData):
        return render.why_html(hits, evt.index), gr.Accordion(open=True)
    grid.select(explain, hits, [why, box], api_visibility="private")
    return Results(grid, hits, why)


def wire_search(events: list, fn: Callable, inputs: list, panel: Results, api_name: str | None = None) -> None:
    """Run a search on any of `events` (the first is the API endpoint `api_name`, if given), then
    explain hit 1. Inputs reach the handler unprocessed (see `handlers.read_upload`)."""
    for i, event in enumerate(events):
        public = i == 0 and api_name is not None
        event(fn, inputs, [panel.grid, panel.hits], api_name=api_name if public else None,
              api_visibility="public" if public else "private", preprocess=False).then(
            lambda h: render.why_html(h, 0), panel.hits, panel.why, api_visibility="private")


class ImageTab(NamedTuple):
    """What other tabs use of the Image tab."""

    upload: gr.File
    item_id: gr.Textbox
    search_after: Callable  # wires another event (Browse -> Find similar) to the same search


def image_tab(shared: Controls) -> ImageTab:
    """Search by an uploaded image or an item's id."""
    with gr.Tab("Image", id="image"):
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label=f"Query image ({UPLOAD_LIMITS})", file_types=["image"], type="filepath")
                item_id = gr.Textbox(label="...or an item's id", placeholder="Browse -> Find similar fills this")
                go = gr.Button("Find similar images", variant="primary")
            with gr.Column(scale=3):
                panel = result_panel()
    fn, inputs = shared.handler(handlers.image_search), [shared.collection, upload, item_id, shared.k, shared.min_score]
    wire_search([go.click], fn, inputs, panel, "image_search")
    return ImageTab(upload, item_id, lambda event: wire_search([event], fn, inputs, panel))


def caption_tab(shared: Controls) -> None:
    """Search by a text, against images, captions or both."""
    with gr.Tab("Caption", id="caption"):
        with gr.Row():
            with gr.Column(scale=1):
                text = gr.Textbox(label="Describe the image", placeholder="a dog running on the grass")
                target = gr.Radio(list(TARGETS), value="both", label="Match against",
                                  info="image embeddings, captions, or the mean of both")
                go = gr.Button("Search", variant="primary")
            with gr.Column(scale=3):
                panel = result_panel()
    wire_search([go.click, text.submit], shared.handler(handlers.caption_search),
                [shared.collection, text, target, shared.k, shared.min_score], panel, "caption_search")


def omni_tab(shared: Controls) -> tuple[gr.Dropdown, list[gr.Dropdown]]:
    """Search by text, filters and weighted tags; returns the filters and the tag pickers."""
    with gr.Tab("Omni", id="omni"):
        with gr.Row():
            with gr.Column(scale=1):
                text = gr.Textbox(label="Text (optional)")
                filters = gr.Dropdown(shared.start["filters"], multiselect=True, label="Filters", allow_custom_value=True,
                                      info="values of one field: any of them; of several fields: all")
                slots = []
                for i in range(TAG_SLOTS):
                    with gr.Row():
                        slots.append(gr.Dropdown(shared.start["tags"], value=None, label=f"tag_{i + 1}",
                                                 allow_custom_value=True))
                        slots.append(gr.Slider(-2, 2, value=1, step=0.1, label=f"weight_{i + 1}"))
                go = gr.Button("Search", variant="primary")
            with gr.Column(scale=3):
                panel = result_panel()
    wire_search([go.click, text.submit], shared.handler(handlers.omni_search),
                [shared.collection, text, filters, *slots, shared.k, shared.min_score], panel, "omni_search")
    return filters, slots[::2]


def composed_tab(shared: Controls) -> None:
    """Search by a reference image and a text saying what should change."""
    with gr.Tab("Composed", id="composed"):
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label=f"Reference image ({UPLOAD_LIMITS})", file_types=["image"], type="filepath")
                item_id = gr.Textbox(label="...or a reference item's id")
                text = gr.Textbox(label="What should change", placeholder="the same scene but at night")
                method = gr.Radio(["sum", "slerp", "text"], value="sum", label="Method",
                                  info="fuse the embeddings (sum, slerp) or merge the reference's caption "
                                       "with the change (text)")
                weight = gr.Slider(0, 1, value=0.5, step=0.05, label="weight", info="of the text (sum, slerp)")
                go = gr.Button("Search", variant="primary")
            with gr.Column(scale=3):
                panel = result_panel()
    wire_search([go.click, text.submit], shared.handler(handlers.composed_search),
                [shared.collection, upload, item_id, text, method, weight, shared.k, shared.min_score],
                panel, "composed_search")


class BrowseTab(NamedTuple):
    """What the page wires across tabs from the Browse tab."""

    filters: gr.Dropdown
    page: gr.Number
    item_id: gr.Textbox
    similar: gr.Button
    show: dict  # event arguments that show the current page


def browse_tab(shared: Controls) -> BrowseTab:
    """The collection page by page (filtered), and the details of the item clicked."""
    with gr.Tab("Browse", id="browse"):
        with gr.Row():
            filters = gr.Dropdown(shared.start["filters"], multiselect=True, label="Filters", scale=4,
                                  allow_custom_value=True)
            back = gr.Button("◀ Previous", scale=1)
            number = gr.Number(1, precision=0, label="Page", minimum=1, scale=1)
            forward = gr.Button("Next ▶", scale=1)
        with gr.Row():
            with gr.Column(scale=3):
                info = gr.Markdown(label="page_info")
                grid = gr.Gallery(label="Collection", columns=6, height="auto", object_fit="cover",
                                  allow_preview=False, format="jpeg")
                with gr.Accordion("Page as JSON", open=False):
                    items = gr.JSON(label="items")
            with gr.Column(scale=2):
                item_id, similar = item_panel(shared)
    show = dict(fn=shared.handler(handlers.browse), inputs=[shared.collection, filters, number],
                outputs=[grid, items, number, info], api_visibility="private")
    number.submit(**{**show, "api_visibility": "public"}, api_name="browse")
    filters.change(**show)
    for button, move in ((back, -1), (forward, 1)):
        button.click(partial(handlers.turn_page, move=move), number, number, api_visibility="private").then(**show)

    def pick(items, evt: gr.SelectData):
        return items[evt.index]["id"]
    grid.select(pick, items, item_id, api_visibility="private")
    return BrowseTab(filters, number, item_id, similar, show)


def item_panel(shared: Controls) -> tuple[gr.Textbox, gr.Button]:
    """An item's image and details, shown when its id changes; returns the id and Find similar."""
    item_id = gr.Textbox(label="Item id", placeholder="click an image")
    image = gr.Image(label="Image", interactive=False)
    text = gr.Markdown(label="details")
    item = gr.JSON(visible=False, label="item")
    similar = gr.Button("Find similar images")
    item_id.change(shared.handler(handlers.item_details), [shared.collection, item_id], [image, text, item],
                   api_name="item_details")
    return item_id, similar


def with_slider(fn: Callable) -> Callable:
    """Scene search for the UI: the timeline slider reset to span the scene's frames."""
    @wraps(fn)
    def wrapper(*args):
        frames, timeline = fn(*args)
        return frames, gr.Slider(minimum=0, maximum=max(len(frames) - 1, 1), value=0), timeline
    return wrapper


def step(index: int, frames: list[dict] | None):
    """Playback: the next frame, the timer stopped at the last one."""
    if not frames or index >= len(frames) - 1:
        return index, gr.Timer(active=False)
    return index + 1, gr.Timer(active=True)


class ScenesTab(NamedTuple):
    """What the page wires across tabs from the Scenes tab."""

    scene: gr.Dropdown
    load: dict  # event arguments that load the chosen scene, unsearched
    show: dict  # event arguments that show the frame at the slider's position


def scenes_tab(shared: Controls) -> ScenesTab:
    """A driving scene played as video over a timeline, its frames searchable by text."""
    scenes = shared.start["scenes"]
    with gr.Tab("Scenes", id="scenes"):
        with gr.Row():
            scene = gr.Dropdown(scenes, value=scenes[0] if scenes else None, label="Scene", scale=2,
                                allow_custom_value=True, info="collections built from driving frames or nuScenes")
            text = gr.Textbox(label="Find in the scene", placeholder="a truck at an intersection", scale=3)
            go = gr.Button("Find", variant="primary", scale=1)
        image = gr.Image(label="Frame", interactive=False, height=420)
        info = gr.Markdown(label="frame_info")
        with gr.Row():
            play = gr.Button("▶ Play", scale=1)
            pause = gr.Button("⏸ Pause", scale=1)
            position = gr.Slider(0, 1, value=0, step=1, label="Timeline (frame)", scale=8)
        timeline = gr.HTML(label="timeline")
        frames = gr.JSON(visible=False, label="frames")
        timer = gr.Timer(FRAME_SECONDS, active=False)
    show = dict(fn=shared.handler(handlers.scene_frame), inputs=[shared.collection, frames, position],
                outputs=[image, info, timeline], api_visibility="private")
    position.change(**{**show, "api_visibility": "public"}, api_name="scene_frame")
    search = dict(fn=with_slider(shared.handler(handlers.scene_search)), outputs=[frames, position, timeline])
    go.click(**search, inputs=[shared.collection, scene, text], api_name="scene_search").then(**show)
    text.submit(**search, inputs=[shared.collection, scene, text], api_visibility="private").then(**show)
    load = dict(**search, inputs=[shared.collection, scene, gr.State("")], api_visibility="private")
    scene.change(**load).then(**show)
    play.click(lambda: gr.Timer(active=True), None, timer, api_visibility="private")
    pause.click(lambda: gr.Timer(active=False), None, timer, api_visibility="private")
    timer.tick(step, [position, frames], [position, timer], api_visibility="private")
    return ScenesTab(scene, load, show)


def humor_tab(shared: Controls) -> None:
    """Answers to a prompt (text or image) ranked by how funny they are, each word's share shown."""
    with gr.Tab("Humor", id="humor"):
        if shared.library.humor is None:
            gr.Markdown("No humor model is loaded. Train one with `mosaic humor train` (see the README) "
                        "and start the app with `--humor <folder>`.")
        with gr.Row():
            with gr.Column(scale=1):
                prompt = gr.Textbox(label="Prompt", placeholder="a headline, or leave empty and give an image")
                upload = gr.File(label=f"...or a prompt image, captioned first ({UPLOAD_LIMITS})", file_types=["image"],
                                 type="filepath")
                answers = gr.Textbox(label="Answers, one per line", lines=5)
                go = gr.Button("Score", variant="primary")
            with gr.Column(scale=2):
                out = gr.HTML()
                with gr.Accordion("Scores as JSON", open=False):
                    scores = gr.JSON(label="scores")
    go.click(shared.handler(handlers.humor_score), [prompt, upload, answers], [out, scores], api_name="humor_score",
             preprocess=False)


def on_collection(library: Library, name: str) -> tuple:
    """The controls reset to another collection's filters, tags and scenes, on page 1."""
    choices = handlers.choices(library, name)
    filters = [gr.Dropdown(choices=choices["filters"], value=[]) for _ in range(2)]  # Omni's and Browse's
    tags = [gr.Dropdown(choices=choices["tags"], value=None) for _ in range(TAG_SLOTS)]
    scenes = choices["scenes"]
    return (*filters, *tags, gr.Dropdown(choices=scenes, value=scenes[0] if scenes else None), 1)
