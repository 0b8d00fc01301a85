"""The Mosaic app: a tab per search mode, browsing and scene playback over one or more
collections, and humor scoring. Every tab is also an API endpoint (gradio_client); all scoring
happens in SearchService and HumorModel. `handlers` turns their answers into galleries, rankings
and explanations (`render`), `tabs` lays out and wires each tab, and this module builds the page
and the events between tabs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from . import handlers
from .library import Library

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["Library", "build_app", "serve"]

CACHE_SWEEP = (600, 3600)  # seconds: every 10 minutes, uploads and result images cached over an hour ago go
SESSIONS = 100  # browser tabs and API clients whose last values Gradio keeps (it keeps 10,000 by default)

CSS = """
.hint p { margin: 0; color: var(--body-text-color-subdued); }
.results .fixed-height { max-height: none !important; }  /* every result row shown: the page scrolls, not the grid */
/* an enlarged result takes the grid's place, sized to the screen, not laid over every row of results */
.results .gallery-container:has(> .preview) > .grid-wrap { display: none; }
.results .gallery-container > .preview { position: relative; height: min(75vh, 640px, calc(100vw + 80px)); }
.results .preview .caption { display: block; max-width: 100%; overflow: hidden; text-overflow: ellipsis; }  /* "…", not cut */
.results .caption-label { white-space: normal; max-width: 100%; display: -webkit-box; -webkit-line-clamp: 2;
                          -webkit-box-orient: vertical; overflow: hidden;
                          padding-bottom: 0; border-bottom: 4px solid transparent; }  /* no third line in the padding */
.strip .grid-container { grid-template-columns: none !important; grid-auto-flow: column;
                         grid-auto-columns: minmax(110px, 1fr); grid-template-rows: 130px !important; }
.strip .grid-wrap { overflow-x: auto; overflow-y: hidden; }
@media (max-width: 640px) {
  .results .grid-container { grid-template-columns: repeat(2, minmax(80px, 1fr)) !important; }
}
"""


def build_app(library: Library, cache_sweep: tuple[int, int] = CACHE_SWEEP) -> gr.Blocks:
    """The app over the library's collections (the first one shown first): a line about the
    collection and a strip of its images, then the tabs, text search first with example queries.
    A link with ?collection=NAME&q=TEXT opens that search. Every `cache_sweep[0]` seconds, the
    files Gradio cached (uploads, result images) more than `cache_sweep[1]` seconds ago are deleted."""
    # Gradio loads with the first app, not with the package: the handlers and their tests run without it.
    import gradio as gr

    from . import tabs

    names = list(library.services)
    first = library[names[0]]
    with gr.Blocks(title="Mosaic", analytics_enabled=False, delete_cache=cache_sweep) as demo:
        gr.HTML("", head=f"<style>{CSS}</style>", js_on_load=None, elem_classes="page-style")
        gr.Markdown("# Mosaic\nFind images by describing them, by showing one, or by browsing. "
                    "Click a result to see why it matched.")
        with gr.Row():
            collection = gr.Dropdown(names, value=names[0], label="Collection", scale=1, min_width=160)
            # folded, so the search box stays near the top on a phone
            with gr.Column(scale=3, min_width=240), gr.Accordion("Search settings", open=False):
                k = gr.Slider(1, 100, value=12, step=1, label="Results")
                min_score = gr.Slider(0, 100, value=0, step=1, label="Minimum match",
                                      info="0 keeps all; 25 keeps what stands out from the collection")
                hide_duplicates = gr.Checkbox(True, label="Hide near duplicates", info="one image of each group of copies")
        about = gr.Markdown(handlers.summary(first))
        strip = gr.Gallery(handlers.collection_strip(first), columns=8, rows=1, height=170, allow_preview=False,
                           object_fit="cover", show_label=False, format="jpeg", elem_classes="strip")
        shared = tabs.Controls(library, collection, k, min_score, hide_duplicates, handlers.choices(library, names[0]))
        with gr.Tabs(overflow_behavior="wrap") as tab_row:
            search = tabs.search_tab(shared)
            image = tabs.image_tab(shared)
            omni_filters, omni_tags, omni = tabs.omni_tab(shared)
            composed, composed_id = tabs.composed_tab(shared)
            browse = tabs.browse_tab(shared)
            tabs.humor_tab(shared)
            scenes = tabs.scenes_tab(shared)  # last: Gradio shows a tab after it twice once that tab is opened
        image.search_after(browse.similar.click(lambda i: (i, None, gr.Tabs(selected="image")), browse.item_id,
                                                [image.item_id, image.upload, tab_row], api_visibility="private").then)
        image.search_after(strip.select(tabs.strip_picker(library), collection, [image.item_id, image.upload, tab_row],
                                        api_visibility="private").then)
        panels = [search.panel, image.panel, omni, composed]
        cleared = [c for p in panels for c in p.clearable()]
        reset = dict(fn=shared.handler(tabs.on_collection), inputs=collection,
                     outputs=[about, strip, search.examples, omni_filters, browse.filters, *omni_tags, scenes.scene,
                              scenes.player, scenes.empty, browse.page, browse.item_id, image.item_id, composed_id],
                     api_visibility="private")
        clear = dict(fn=lambda: sum((p.cleared() for p in panels), ()), inputs=None, outputs=cleared,
                     api_visibility="private")
        switched = collection.input(**reset).then(**clear)
        switched.then(**browse.show)
        search.search_after(switched.then)  # the query in the box, asked of the new collection
        switched.then(None, [collection, search.text], None, js=tabs.SHARE_JS, api_visibility="private")
        browse.tab.select(**browse.show)  # Browse and Scenes load when opened: the landing only searches
        scenes.tab.select(**scenes.load).then(**scenes.show)
        tabs.remember_tab(tab_row)
        opened = demo.load(tabs.link_restorer(library, len(reset["outputs"])), None,
                           [collection, search.text, tab_row, *reset["outputs"]], api_visibility="private")
        search.search_after(opened.then)
    return demo


def theme():
    """Gradio's default theme, with help text and primary buttons that keep 4.5:1 contrast (its
    own: 2.5:1 help text on white, white on orange 2.8:1)."""
    import gradio as gr

    dark_orange = {f"button_primary_{part}{mode}": shade for mode in ("", "_dark")
                   for part, shade in (("background_fill", "*primary_700"), ("border_color", "*primary_700"),
                                       ("background_fill_hover", "*primary_800"),
                                       ("border_color_hover", "*primary_800"))}
    return gr.themes.Default().set(body_text_color_subdued="*neutral_500", **dark_orange)


def serve(paths: list[str | Path], host: str | None = None, port: int | None = None, block: bool = True,
          humor: str | Path | None = None, concurrency: int | None = None,
          cache_sweep: tuple[int, int] = CACHE_SWEEP, mcp: bool | None = None) -> gr.Blocks:
    """Load the collections (and the humor model) and start the app (host/port default to
    Gradio's, or GRADIO_SERVER_NAME / GRADIO_SERVER_PORT as on Hugging Face Spaces). Up to
    `concurrency` requests run at once (default: one per CPU core), torch's threads shared
    between them; uploads above MAX_UPLOAD_MB are refused while they arrive. With `mcp` (default:
    GRADIO_MCP_SERVER=true), every API endpoint is also an MCP tool, served at /gradio_api/mcp/."""
    import torch

    cores = os.cpu_count() or 1
    concurrency = concurrency or cores
    torch.set_num_threads(max(1, cores // concurrency))  # concurrent requests would oversubscribe the cores
    demo = build_app(Library(paths, humor), cache_sweep)
    demo.queue(default_concurrency_limit=concurrency).launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block,
        max_file_size=f"{handlers.MAX_UPLOAD_MB}mb", state_session_capacity=SESSIONS, mcp_server=mcp,
        theme=theme())
    return demo
