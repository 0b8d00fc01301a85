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


def build_app(library: Library, cache_sweep: tuple[int, int] = CACHE_SWEEP) -> gr.Blocks:
    """The app over the library's collections (the first one shown first); every `cache_sweep[0]`
    seconds, the files Gradio cached (uploads, result images) more than `cache_sweep[1]` seconds
    ago are deleted."""
    # Gradio loads with the first app, not with the package: the handlers and their tests run without it.
    import gradio as gr

    from . import tabs

    names = list(library.services)
    with gr.Blocks(title="Mosaic", analytics_enabled=False, delete_cache=cache_sweep) as demo:
        gr.Markdown("# Mosaic\nSearch an image collection by image, by text, or by text with filters and "
                    "tags; browse it; play its driving scenes; rate how funny answers are. Click a result to see "
                    "why it matched.")
        with gr.Row():
            collection = gr.Dropdown(names, value=names[0], label="Collection", scale=2)
            k = gr.Slider(1, 50, value=12, step=1, label="Results (top k)", scale=2)
            min_score = gr.Slider(-1, 1, value=-1, step=0.01, label="Minimum score (-1 keeps all)", scale=2)
        shared = tabs.Controls(library, collection, k, min_score, handlers.choices(library, names[0]))
        with gr.Tabs() as tab_row:
            image = tabs.image_tab(shared)
            tabs.caption_tab(shared)
            omni_filters, omni_tags = tabs.omni_tab(shared)
            tabs.composed_tab(shared)
            browse = tabs.browse_tab(shared)
            scenes = tabs.scenes_tab(shared)
            tabs.humor_tab(shared)
        image.search_after(browse.similar.click(lambda i: (i, None, gr.Tabs(selected="image")), browse.item_id,
                                                [image.item_id, image.upload, tab_row], api_visibility="private").then)
        collection.change(shared.handler(tabs.on_collection), collection,
                          [omni_filters, browse.filters, *omni_tags, scenes.scene, browse.page],
                          api_visibility="private").then(**browse.show)
        demo.load(**browse.show).then(**scenes.load).then(**scenes.show)
    return demo


def serve(paths: list[str | Path], host: str | None = None, port: int | None = None, block: bool = True,
          humor: str | Path | None = None, concurrency: int | None = None,
          cache_sweep: tuple[int, int] = CACHE_SWEEP) -> gr.Blocks:
    """Load the collections (and the humor model) and start the app (host/port default to
    Gradio's, or GRADIO_SERVER_NAME / GRADIO_SERVER_PORT as on Hugging Face Spaces). Up to
    `concurrency` requests run at once (default: one per CPU core), torch's threads shared
    between them; uploads above MAX_UPLOAD_MB are refused while they arrive."""
    import torch

    cores = os.cpu_count() or 1
    concurrency = concurrency or cores
    torch.set_num_threads(max(1, cores // concurrency))  # concurrent requests would oversubscribe the cores
    demo = build_app(Library(paths, humor), cache_sweep)
    demo.queue(default_concurrency_limit=concurrency).launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block,
        max_file_size=f"{handlers.MAX_UPLOAD_MB}mb", state_session_capacity=SESSIONS)
    return demo
