"""The Mosaic app: a tab per search mode, browsing and scene playback over one or more
collections, and humor scoring. Every tab is also an API endpoint (gradio_client); all scoring
happens in SearchService and HumorModel, this module only turns their answers into galleries,
rankings and explanations."""
from __future__ import annotations

import html
import math
from functools import wraps
from pathlib import Path

import gradio as gr
import numpy as np

from .composed import ComposedSearch
from .errors import CollectionError, MosaicError, QueryError
from .humor.model import HumorModel
from .models import caption_images
from .search import TARGETS, SearchService
from .sources import read_query_image

PAGE_SIZE = 24
TAG_SLOTS = 3  # tag + weight pairs in the Omni tab
MARKED_FRAMES = 3  # frames marked on a scene's timeline as the best matches
FRAME_SECONDS = 0.25  # scene playback: one frame every quarter of a second
MAX_ANSWERS, MAX_ANSWER_CHARS = 20, 500  # per Humor request


class Library:
    """The collections the app serves, by name, each loaded once with its search service, and
    the humor model when there is one."""

    def __init__(self, paths: list[str | Path], humor: str | Path | None = None):
        self.humor = HumorModel.load(humor) if humor else None
        self.services: dict[str, SearchService] = {}
        for path in paths:
            service = SearchService(path)
            name = service.collection.name
            while name in self.services:
                name += "+"
            self.services[name] = service
        if not self.services:
            raise CollectionError("No collections to serve.")

    def __getitem__(self, name: str) -> SearchService:
        if name not in self.services:
            raise QueryError(f"Unknown collection '{name}'. This app serves: {', '.join(self.services)}.")
        return self.services[name]


def user_errors(fn):
    """Show a user's mistake (empty query, unreadable image, unknown collection...) as a message
    in the UI, or an error for API clients; the server carries on."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MosaicError as e:
            raise gr.Error(str(e), print_exception=False) from None
    return wrapper


def parse_filters(selected: list[str] | None) -> dict[str, list[str]]:
    """["style=Baroque", "style=Rococo", "genre=portrait"] -> {"style": [...], "genre": [...]}."""
    out: dict[str, list[str]] = {}
    for item in selected or []:
        field, _, value = item.partition("=")
        out.setdefault(field, []).append(value)
    return out


def filter_choices(service: SearchService) -> list[str]:
    return [f"{field}={value}" for field, values in service.collection.filter_fields().items() for value in values]


# ---- rendering ---------------------------------------------------------------------------------
def results(service: SearchService, hits, min_score: float) -> tuple[list, list[dict]]:
    """A gallery and the hits as JSON (with their explanations), below `min_score` left out
    (-1, the slider's left end, keeps everything)."""
    rows = [{"row": h.row, **h.to_dict()} for h in hits if min_score <= -1 or h.score >= min_score]
    return [(service.collection.thumbnail(h["row"]), f"{h['score']:.3f} · {h['caption'] or h['id']}")
            for h in rows], rows


def _chips(items: list[tuple[str, float]], color: str, fmt: str = "{:.2f}") -> str:
    """Words or tags as chips whose shading follows their weight (green up, red down)."""
    top = max((abs(v) for _, v in items), default=0) or 1
    out = []
    for text, v in items:
        rgb = color if v >= 0 else "239,68,68"
        out.append(f'<span class="chip" title="{fmt.format(v)}" style="background:rgba({rgb},{0.15 + 0.7 * abs(v) / top:.2f});'
                   f'padding:1px 6px;margin:2px;border-radius:8px;display:inline-block">{html.escape(text)} '
                   f'<small>{fmt.format(v)}</small></span>')
    return "".join(out)


def why_html(hits: list[dict] | None, index: int) -> str:
    """"Why this match?" for one hit: the score's parts, the query words by contribution, the
    caption words closest to the query, the tags it shares with the query, its captions."""
    if not hits or not 0 <= index < len(hits):
        return "<p>Select a result to see why it matched.</p>"
    h, e = hits[index], hits[index]["explanation"]
    how = {"composed:sum": "image-embedding similarity to the weighted sum of reference and text",
           "composed:slerp": "image-embedding similarity to the reference turned towards the text",
           "composed:text": "mean of image and best-caption similarity to the merged query",
           "both": "mean of image and best-caption similarity", "omni": "sum of z-scored text match and tag weights",
           "caption": "similarity to the closest caption", "image": "image-embedding similarity"}.get(e.get("mode"), "")
    out = [f'<div class="why"><h3>#{index + 1} {html.escape(h["id"])}: score {h["score"]:.3f}</h3>',
           f"<p><b>Score</b>: {how}</p>"]
    if len(e.get("parts", {})) > 1:
        out.append("<table>" + "".join(f"<tr><td>{html.escape(n)}</td><td>{v:+.3f}</td></tr>"
                                       for n, v in e["parts"].items()) + "</table>")
    if e.get("query_words"):
        out.append('<p class="query-words"><b>Query words</b> (score lost without each): '
                   + _chips([(w["word"], w["contribution"]) for w in e["query_words"]], "34,197,94", "{:+.3f}") + "</p>")
    if e.get("caption_words"):
        out.append("<p><b>Caption words closest to the query</b>: "
                   + _chips([(w["word"], w["similarity"]) for w in e["caption_words"]], "59,130,246") + "</p>")
    if e.get("tags"):
        out.append("<p><b>Tags shared with the query</b>: "
                   + _chips([(t["tag"], t["score"]) for t in e["tags"]], "168,85,247") + "</p>")
    if e.get("mode", "").startswith("composed:"):
        out.append(f"<p><b>Query</b>: {html.escape(e['query'])}</p>")
        changes = [(t["tag"], t["change"]) for t in e["tags_up"] + e["tags_down"]]
        out.append('<p class="tag-changes"><b>What changed from the reference</b> (tag z-score, hit minus reference): '
                   + _chips(changes, "34,197,94", "{:+.2f}") + "</p>")
    if e.get("captions"):
        out.append("<p><b>Captions</b></p><ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in e["captions"]) + "</ul>")
    return "".join(out) + "</div>"


def humor_html(prompt: str, ranked: list[dict]) -> str:
    """Answers ranked by score, each with its words shaded by how much they add to it."""
    out = [f'<div class="humor"><p><b>Prompt</b>: {html.escape(prompt)}</p><ol>']
    for r in ranked:
        out.append(f'<li><b>{r["score"]:.2f}</b> {html.escape(r["answer"])}<br><small>words (score lost without '
                   f'each)</small>: {_chips([(w["word"], w["contribution"]) for w in r["words"]], "34,197,94", "{:+.2f}")}</li>')
    return "".join(out) + "</ol></div>"


def timeline_html(frames: list[dict] | None, current: int) -> str:
    """A scene's frames as a strip: bar height = match score, the best matches marked, the
    frame on screen outlined."""
    if not frames:
        return ""
    scores = [f["score"] for f in frames if f["score"] is not None]
    lo, hi = (min(scores), max(scores)) if scores else (0.0, 0.0)
    cells = []
    for i, f in enumerate(frames):
        level = 0.3 if f["score"] is None or hi == lo else 0.15 + 0.85 * (f["score"] - lo) / (hi - lo)
        color = "#f59e0b" if f["match"] else "#93c5fd"
        border = "2px solid #111" if i == current else "2px solid transparent"
        title = f"frame {i}" + ("" if f["score"] is None else f" · {f['score']:.3f}")
        mark = "▲" if f["match"] else "&nbsp;"
        cells.append(f'<div title="{title}" style="flex:1;display:flex;flex-direction:column;justify-content:flex-end;'
                     f'align-items:center;border:{border}"><div style="width:100%;height:{level * 48:.0f}px;'
                     f'background:{color}"></div><small>{mark}</small></div>')
    matches = [str(i) for i, f in enumerate(frames) if f["match"]]
    legend = f"best matches: frames {', '.join(matches)}" if matches else "search the scene to mark matching frames"
    return (f'<div class="timeline" style="display:flex;gap:1px;height:70px">{"".join(cells)}</div>'
            f"<small>frame {current + 1} of {len(frames)} · {legend}</small>")


# ---- the app -------------------------------------------------------------------------------------
def build_app(library: Library) -> gr.Blocks:
    names = list(library.services)
    first = library[names[0]]

    def image_or_item(upload, item_id):
        if upload:
            return read_query_image(upload)
        if (item_id or "").strip():
            return item_id.strip()
        raise QueryError("Upload an image, or give the id of an item (Browse -> Find similar).")

    @user_errors
    def image_search(collection, upload, item_id, k, min_score):
        service = library[collection]
        return results(service, service.image_to_image(image_or_item(upload, item_id), int(k)), min_score)

    @user_errors
    def caption_search(collection, text, target, k, min_score):
        service = library[collection]
        return results(service, service.text_to_image(text or "", int(k), target), min_score)

    @user_errors
    def omni_search(collection, text, filters, tag_1, weight_1, tag_2, weight_2, tag_3, weight_3, k, min_score):
        weights: dict[str, float] = {}
        for tag, weight in ((tag_1, weight_1), (tag_2, weight_2), (tag_3, weight_3)):
            if tag and weight:
                weights[tag] = weights.get(tag, 0.0) + float(weight)
        service = library[collection]
        return results(service, service.omni(text or "", int(k), parse_filters(filters), weights), min_score)

    @user_errors
    def composed_search(collection, upload, item_id, text, method, weight, k, min_score):
        service = library[collection]
        hits = ComposedSearch(service).search(image_or_item(upload, item_id), text or "", method, int(k), float(weight))
        return results(service, hits, min_score)

    @user_errors
    def browse(collection, filters, page):
        service = library[collection]
        rows = service.collection.filter_rows(parse_filters(filters))
        rows = np.arange(len(service.collection)) if rows is None else rows
        pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
        page = min(max(1, int(page or 1)), pages)
        items = [service.details(int(r)) for r in rows[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]]
        grid = [(service.collection.thumbnail(d["row"]), d["caption"] or d["id"]) for d in items]
        return grid, items, page, f"Page {page} of {pages} · {len(rows)} items"

    @user_errors
    def item_details(collection, item_id):
        if not (item_id or "").strip():
            return None, "", None
        service = library[collection]
        d = service.details(item_id.strip())
        text = [f"### {d['id']}", f"**Generated caption**: {d['caption'] or '(none)'}"]
        if d["captions"]:
            text.append("**Captions**\n" + "\n".join(f"- {c}" for c in d["captions"]))
        text.append("**Strongest tags**: " + ", ".join(f"{t['tag']} ({t['z']:+.1f} sd)" for t in d["tags"]))
        text.append("**Metadata**\n" + "\n".join(f"- {k}: {v}" for k, v in d["metadata"].items()))
        return service.collection.thumbnail(d["row"]), "\n\n".join(text), d

    @user_errors
    def scene_search(collection, scene, text):
        service = library[collection]
        if not scene and not service.collection.scenes:
            return [], gr.Slider(minimum=0, maximum=1, value=0), "<p>This collection has no scenes.</p>"
        hits = service.scene(scene or "", text or "")
        scored = bool((text or "").strip())
        best = set(sorted(range(len(hits)), key=lambda i: -hits[i].score)[:MARKED_FRAMES]) if scored else set()
        frames = [{"row": h.row, "id": h.id, "score": h.score if scored else None, "match": i in best}
                  for i, h in enumerate(hits)]
        return frames, gr.Slider(minimum=0, maximum=max(len(frames) - 1, 1), value=0), timeline_html(frames, 0)

    @user_errors
    def scene_frame(collection, frames, index):
        if not frames:
            return None, "", ""
        index = min(max(0, int(index or 0)), len(frames) - 1)
        service = library[collection]
        d = service.details(frames[index]["row"])
        score = "" if frames[index]["score"] is None else f" · match {frames[index]['score']:.3f}"
        return (service.collection.thumbnail(d["row"]), f"**{d['id']}**{score}: {d['caption']}",
                timeline_html(frames, index))

    @user_errors
    def humor_score(prompt, upload, answers):
        if library.humor is None:
            raise QueryError("No humor model is loaded: train one with `mosaic humor train` and start the app "
                             "with --humor <its folder> (default: artifacts/models/humor).")
        lines = [a.strip() for a in (answers or "").splitlines() if a.strip()]
        prompt = (prompt or "").strip()
        if upload and not prompt:
            prompt = caption_images([read_query_image(upload)])[0]
        if not prompt or not lines:
            raise QueryError("Give a prompt (text, or an image to caption) and at least one answer, one per line.")
        if len(lines) > MAX_ANSWERS or max(map(len, lines)) > MAX_ANSWER_CHARS:
            raise QueryError(f"At most {MAX_ANSWERS} answers of up to {MAX_ANSWER_CHARS} characters each.")
        ranked = library.humor.rank(prompt, lines)
        return humor_html(prompt, ranked), {"prompt": prompt, "ranked": ranked}

    def on_collection(collection):
        service = library[collection]
        choices = filter_choices(service)
        tags = [gr.Dropdown(choices=service.collection.tag_names, value=None) for _ in range(TAG_SLOTS)]
        scenes = list(service.collection.scenes)
        return (gr.Dropdown(choices=choices, value=[]), gr.Dropdown(choices=choices, value=[]), *tags,
                gr.Dropdown(choices=scenes, value=scenes[0] if scenes else None), 1)

    with gr.Blocks(title="Mosaic", analytics_enabled=False) as demo:
        gr.Markdown("# Mosaic\nSearch an image collection by image, by text, or by text with filters and "
                    "tags; browse it; play its driving scenes; rate how funny answers are. Click a result to see "
                    "why it matched.")
        with gr.Row():
            collection = gr.Dropdown(names, value=names[0], label="Collection", scale=2)
            k = gr.Slider(1, 50, value=12, step=1, label="Results (top k)", scale=2)
            min_score = gr.Slider(-1, 1, value=-1, step=0.01, label="Minimum score (-1 keeps all)", scale=2)

        def result_panel():
            grid = gr.Gallery(label="Results", columns=4, height="auto", object_fit="cover", format="jpeg")
            with gr.Accordion("Why this match?", open=False, elem_classes="why-box") as box:
                why = gr.HTML()
            with gr.Accordion("Results as JSON", open=False):
                hits = gr.JSON(label="hits")

            def explain(hits, evt: gr.SelectData):
                return why_html(hits, evt.index), gr.Accordion(open=True)
            grid.select(explain, hits, [why, box], api_visibility="private")
            return grid, hits, why

        def wire(events, fn, inputs, grid, hits, why, api_name):
            """Run a search on any of `events` (the first is the API endpoint), then explain hit 1."""
            for i, event in enumerate(events):
                event(fn, inputs, [grid, hits], api_name=api_name if i == 0 else None,
                      api_visibility="public" if i == 0 else "private").then(
                    lambda h: why_html(h, 0), hits, why, api_visibility="private")

        with gr.Tabs() as tabs:
            with gr.Tab("Image", id="image"):
                with gr.Row():
                    with gr.Column(scale=1):
                        upload = gr.File(label="Query image", file_types=["image"], type="filepath")
                        item_id = gr.Textbox(label="...or an item's id", placeholder="Browse -> Find similar fills this")
                        image_go = gr.Button("Find similar images", variant="primary")
                    with gr.Column(scale=3):
                        i_grid, i_hits, i_why = result_panel()
                wire([image_go.click], image_search, [collection, upload, item_id, k, min_score],
                     i_grid, i_hits, i_why, "image_search")

            with gr.Tab("Caption", id="caption"):
                with gr.Row():
                    with gr.Column(scale=1):
                        c_text = gr.Textbox(label="Describe the image", placeholder="a dog running on the grass")
                        target = gr.Radio(list(TARGETS), value="both", label="Match against",
                                          info="image embeddings, captions, or the mean of both")
                        c_go = gr.Button("Search", variant="primary")
                    with gr.Column(scale=3):
                        c_grid, c_hits, c_why = result_panel()
                wire([c_go.click, c_text.submit], caption_search, [collection, c_text, target, k, min_score],
                     c_grid, c_hits, c_why, "caption_search")

            with gr.Tab("Omni", id="omni"):
                with gr.Row():
                    with gr.Column(scale=1):
                        o_text = gr.Textbox(label="Text (optional)")
                        o_filters = gr.Dropdown(filter_choices(first), multiselect=True, label="Filters",
                                                allow_custom_value=True,
                                                info="values of one field: any of them; of several fields: all")
                        slots = []
                        for i in range(TAG_SLOTS):
                            with gr.Row():
                                slots.append(gr.Dropdown(first.collection.tag_names, value=None, label=f"tag_{i + 1}",
                                                         allow_custom_value=True))
                                slots.append(gr.Slider(-2, 2, value=1, step=0.1, label=f"weight_{i + 1}"))
                        o_go = gr.Button("Search", variant="primary")
                    with gr.Column(scale=3):
                        o_grid, o_hits, o_why = result_panel()
                wire([o_go.click, o_text.submit], omni_search, [collection, o_text, o_filters, *slots, k, min_score],
                     o_grid, o_hits, o_why, "omni_search")

            with gr.Tab("Composed", id="composed"):
                with gr.Row():
                    with gr.Column(scale=1):
                        m_upload = gr.File(label="Reference image", file_types=["image"], type="filepath")
                        m_item = gr.Textbox(label="...or a reference item's id")
                        m_text = gr.Textbox(label="What should change", placeholder="the same scene but at night")
                        method = gr.Radio(["sum", "slerp", "text"], value="sum", label="Method",
                                          info="fuse the embeddings (sum, slerp) or merge the reference's caption "
                                               "with the change (text)")
                        weight = gr.Slider(0, 1, value=0.5, step=0.05, label="weight", info="of the text (sum, slerp)")
                        m_go = gr.Button("Search", variant="primary")
                    with gr.Column(scale=3):
                        m_grid, m_hits, m_why = result_panel()
                wire([m_go.click, m_text.submit], composed_search,
                     [collection, m_upload, m_item, m_text, method, weight, k, min_score],
                     m_grid, m_hits, m_why, "composed_search")

            with gr.Tab("Browse", id="browse"):
                with gr.Row():
                    b_filters = gr.Dropdown(filter_choices(first), multiselect=True, label="Filters", scale=4,
                                            allow_custom_value=True)
                    prev_page = gr.Button("◀ Previous", scale=1)
                    page = gr.Number(1, precision=0, label="Page", minimum=1, scale=1)
                    next_page = gr.Button("Next ▶", scale=1)
                with gr.Row():
                    with gr.Column(scale=3):
                        b_info = gr.Markdown(label="page_info")
                        b_grid = gr.Gallery(label="Collection", columns=6, height="auto", object_fit="cover",
                                            allow_preview=False, format="jpeg")
                        with gr.Accordion("Page as JSON", open=False):
                            b_items = gr.JSON(label="items")
                    with gr.Column(scale=2):
                        d_id = gr.Textbox(label="Item id", placeholder="click an image")
                        d_image = gr.Image(label="Image", interactive=False)
                        d_text = gr.Markdown(label="details")
                        d_json = gr.JSON(visible=False, label="item")
                        similar = gr.Button("Find similar images")
                browse_inputs = [collection, b_filters, page]
                browse_outputs = [b_grid, b_items, page, b_info]
                page.submit(browse, browse_inputs, browse_outputs, api_name="browse")
                b_filters.change(browse, browse_inputs, browse_outputs, api_visibility="private")
                for button, move in ((prev_page, -1), (next_page, 1)):
                    button.click(lambda p, move=move: max(1, int(p or 1) + move), page, page,
                                 api_visibility="private").then(
                        browse, browse_inputs, browse_outputs, api_visibility="private")

                def pick(items, evt: gr.SelectData):
                    return items[evt.index]["id"]
                b_grid.select(pick, b_items, d_id, api_visibility="private")
                d_id.change(item_details, [collection, d_id], [d_image, d_text, d_json], api_name="item_details")
                similar.click(lambda i: (i, None, gr.Tabs(selected="image")), d_id, [item_id, upload, tabs],
                              api_visibility="private").then(
                    image_search, [collection, upload, item_id, k, min_score], [i_grid, i_hits],
                    api_visibility="private").then(lambda h: why_html(h, 0), i_hits, i_why, api_visibility="private")

            with gr.Tab("Scenes", id="scenes"):
                scenes = list(first.collection.scenes)
                with gr.Row():
                    scene = gr.Dropdown(scenes, value=scenes[0] if scenes else None, label="Scene", scale=2,
                                        allow_custom_value=True,
                                        info="collections built from driving frames or nuScenes")
                    s_text = gr.Textbox(label="Find in the scene", placeholder="a truck at an intersection", scale=3)
                    s_go = gr.Button("Find", variant="primary", scale=1)
                frame_image = gr.Image(label="Frame", interactive=False, height=420)
                frame_text = gr.Markdown(label="frame_info")
                with gr.Row():
                    play = gr.Button("▶ Play", scale=1)
                    pause = gr.Button("⏸ Pause", scale=1)
                    position = gr.Slider(0, 1, value=0, step=1, label="Timeline (frame)", scale=8)
                timeline = gr.HTML(label="timeline")
                frames = gr.JSON(visible=False, label="frames")
                timer = gr.Timer(FRAME_SECONDS, active=False)
                position.change(scene_frame, [collection, frames, position], [frame_image, frame_text, timeline],
                                api_name="scene_frame")
                show = dict(fn=scene_frame, inputs=[collection, frames, position],
                            outputs=[frame_image, frame_text, timeline], api_visibility="private")
                s_go.click(scene_search, [collection, scene, s_text], [frames, position, timeline],
                           api_name="scene_search").then(**show)
                s_text.submit(scene_search, [collection, scene, s_text], [frames, position, timeline],
                              api_visibility="private").then(**show)
                scene.change(scene_search, [collection, scene, gr.State("")], [frames, position, timeline],
                             api_visibility="private").then(**show)
                play.click(lambda: gr.Timer(active=True), None, timer, api_visibility="private")
                pause.click(lambda: gr.Timer(active=False), None, timer, api_visibility="private")

                def step(index, frames):
                    if not frames or index >= len(frames) - 1:
                        return index, gr.Timer(active=False)
                    return index + 1, gr.Timer(active=True)
                timer.tick(step, [position, frames], [position, timer], api_visibility="private")

            with gr.Tab("Humor", id="humor"):
                if library.humor is None:
                    gr.Markdown("No humor model is loaded. Train one with `mosaic humor train` (see the README) "
                                "and start the app with `--humor <folder>`.")
                with gr.Row():
                    with gr.Column(scale=1):
                        h_prompt = gr.Textbox(label="Prompt", placeholder="a headline, or leave empty and give an image")
                        h_upload = gr.File(label="...or a prompt image (captioned first)", file_types=["image"],
                                           type="filepath")
                        h_answers = gr.Textbox(label="Answers, one per line", lines=5)
                        h_go = gr.Button("Score", variant="primary")
                    with gr.Column(scale=2):
                        h_out = gr.HTML()
                        with gr.Accordion("Scores as JSON", open=False):
                            h_json = gr.JSON(label="scores")
                h_go.click(humor_score, [h_prompt, h_upload, h_answers], [h_out, h_json], api_name="humor_score")

        collection.change(on_collection, collection, [o_filters, b_filters, *slots[::2], scene, page],
                          api_visibility="private").then(
            browse, browse_inputs, browse_outputs, api_visibility="private")
        demo.load(browse, browse_inputs, browse_outputs, api_visibility="private").then(
            scene_search, [collection, scene, gr.State("")], [frames, position, timeline],
            api_visibility="private").then(**show)
    return demo


def serve(paths: list[str | Path], host: str | None = None, port: int | None = None,
          block: bool = True, humor: str | Path | None = None) -> gr.Blocks:
    """Load the collections (and the humor model) and start the app (host/port default to
    Gradio's, or GRADIO_SERVER_NAME / GRADIO_SERVER_PORT as on Hugging Face Spaces)."""
    demo = build_app(Library(paths, humor))
    demo.queue().launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block)
    return demo
