"""What the app's tabs do, as plain functions over a Library: each takes the inputs of one
endpoint and returns plain values (galleries as (image, label) pairs, JSON-ready dicts, page
numbers, HTML or Markdown), and raises a MosaicError for a user's mistake. The wiring layer turns
those into Gradio components and messages, so these run and are tested without a server."""
from __future__ import annotations

import math
import re
import tempfile
import time
import uuid
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..composed import ComposedSearch
from ..errors import QueryError
from ..models import caption_images
from ..query import parse_filters, tag_weights
from ..search import Hit, SearchService
from ..sources import read_query_image
from . import render
from .library import Library

PAGE_SIZE = 24
TAG_SLOTS = 3  # tag + weight pairs in the Omni tab (omni_search takes them one by one, as the API does)
MARKED_FRAMES = 3  # frames marked on a scene's timeline as the best matches
MAX_ANSWERS, MAX_ANSWER_CHARS = 20, 500  # per Humor request
MAX_UPLOAD_MB = 20  # per uploaded file; images are also limited to sources.MAX_PIXELS
EXPORT_AGE = 3600  # seconds a results file is kept for its download

Gallery = list[tuple[Image.Image, str]]
Upload = str | dict | None  # a file's path, or Gradio's data about an uploaded file ({"path": ...})


def label(service: SearchService, row: int, caption: str = "", metadata: dict | None = None) -> str:
    """What a person reads under an item: its human caption, else its title (and artist), else its
    generated caption, else its id."""
    c = service.collection
    human = c.first_human_caption.get(int(row))
    if human:
        return render.tidy(human)
    meta = c.item(int(row)) if metadata is None else metadata
    title_field = c.manifest.source_fields.title
    title = str(meta.get(title_field) or "").strip() if title_field else ""
    if title:
        artist = str(meta.get("artist") or "").strip().replace("-", " ")
        return f"{title}, {artist.title()}" if artist else title
    generated = re.sub(r"^an? (photo|picture|image) of ", "", (caption or meta.get("caption") or "").strip())
    return generated or str(meta.get("id", row))


def summary(service: SearchService) -> str:
    """One line about a collection for the landing: its size, captions, scenes and model."""
    c = service.collection
    parts = [f"**{render.md_text(c.name)}**: {len(c):,} images"]
    if len(c.human_captions):
        parts.append(f"{len(c.human_captions):,} captions written by people")
    if c.scenes:
        parts.append(f"{len(c.scenes)} driving scenes")
    return " · ".join(parts + [searched_by(c.manifest.models.get("encoder", "?"))])


def searched_by(spec: str) -> str:
    """The summary's words for an encoder spec: the model's name, never a checkpoint's path."""
    kind, _, name = spec.partition(":")
    last = re.split(r"[\\/]", name.strip("\\/"))[-1]  # a Hub repo's or a folder's own name
    return "searched by " + {"lite": "the offline model" + (", trained" if name else "")
                             + " (approximate: image labels matched as text)",
                             "open_clip": f"CLIP {name.split('/')[0]}",
                             "hf": f"CLIP {last}"}.get(kind, kind if kind != "?" else "an unknown model")


EXAMPLES = 4


def example_queries(service: SearchService, n: int = EXAMPLES) -> list[str]:
    """A few queries to start from, taken from the collection itself: short human captions, else
    metadata (genre and style), else the first label of generated captions."""
    c, out = service.collection, []

    def add(text: str) -> None:
        text = render.tidy(re.sub(r"\s+", " ", text)).lower()
        if text and text not in out and len(out) < n:
            out.append(text)
    human = c.human_captions
    if len(human):
        short = [int(i) for i in human if 3 <= len(c.captions["text"][int(i)].as_py().split()) <= 7]
        for i in (short or list(human))[::max(1, len(short or human) // (3 * n))]:
            add(c.captions["text"][i].as_py())
        return out
    fields = c.filter_fields()
    if "genre" in fields and "style" in fields:
        for genre, style in zip(fields["genre"], reversed(fields["style"])):
            add(f"a {str(genre).replace('_', ' ')} in the style of {str(style).replace('_', ' ')}")
    for row in range(0, len(c), max(1, len(c) // (3 * n))):
        caption = re.sub(r"^a photo of ", "", c.item(row).get("caption") or "")
        add(re.split(r",| or ", caption)[0])
    return out


STRIP = 8  # images in the strip under the collection's summary


def strip_rows(service: SearchService, n: int = STRIP) -> list[int]:
    """The rows of the strip: `n` items spread evenly over the collection."""
    return sorted({int(r) for r in np.linspace(0, len(service.collection) - 1, min(n, len(service.collection)))})


def collection_strip(service: SearchService) -> Gallery:
    """A glimpse of the collection: a few items spread over it, with their labels."""
    return [(service.collection.thumbnail(r), label(service, r)) for r in strip_rows(service)]


def strip_item(library: Library, collection: str, index: int) -> str:
    """The id of the strip's image clicked."""
    service = library[collection]
    return service.collection.ids()[strip_rows(service)[int(index)]]


def filter_choices(service: SearchService) -> list[str]:
    """Every `field=value` filter the collection offers."""
    return [f"{field}={value}" for field, values in service.collection.filter_fields().items() for value in values]


def choices(library: Library, collection: str) -> dict[str, list[str]]:
    """What the controls offer for a collection: its filters, its tags and its scenes."""
    service = library[collection]
    return {"filters": filter_choices(service), "tags": list(service.collection.tag_names),
            "scenes": list(service.collection.scenes), "examples": example_queries(service)}


TABS = ("search", "image", "omni", "composed", "browse", "scenes", "humor")  # the tabs' ids: their labels, lowercased


def shown_tabs(library: Library) -> tuple[str, ...]:
    """The tabs that can work here: Humor needs a humor model, Scenes a collection with scenes."""
    hidden = {"humor": library.humor is None,
              "scenes": not any(s.collection.scenes for s in library.services.values())}
    return tuple(tab for tab in TABS if not hidden.get(tab))


def link_state(library: Library, params: dict) -> tuple[str, str, str | None]:
    """The collection, Search query and tab a link's parameters name (?collection=NAME&q=TEXT&tab=TAB):
    an unknown or missing collection opens the first one, an unknown or hidden tab none."""
    name, tab = params.get("collection"), str(params.get("tab") or "").lower()
    return ((name if name in library.services else next(iter(library.services))), str(params.get("q") or "")[:1000],
            tab if tab in shown_tabs(library) else None)


def example_query(library: Library, collection: str, index: int | None) -> str:
    """The example query clicked (by its place in `example_queries`)."""
    examples = example_queries(library[collection])
    if index is None or not 0 <= int(index) < len(examples):
        raise QueryError("That example is gone: the collection changed. Pick one of the examples shown.")
    return examples[int(index)]


def query_preview(library: Library, collection: str, upload: Upload,
                  item_id: str | None) -> Image.Image | None:
    """The item an id names, as the query or reference image; None while there is none, or while
    an uploaded image (which shows itself, and goes first) is there."""
    if upload:
        return None
    service = library[collection]
    row = service.collection.rows_by_id.get((item_id or "").strip())
    return None if row is None else service.collection.thumbnail(row)


def results(service: SearchService, hits: list[Hit], min_match: float | None) -> tuple[Gallery, list[dict]]:
    """A gallery (each image labelled with its match strength and what a person reads: see
    `label`) and the hits as JSON (with their explanations and labels); hits whose match
    strength (0-100, see mosaic.strength) is below `min_match` are left out."""
    rows = [{"row": h.row, **h.to_dict(), "label": label(service, h.row, h.caption, {"id": h.id, **h.metadata})}
            for h in hits if h.strength >= (min_match or 0)]
    return gallery(service, rows), rows


def gallery(service: SearchService, rows: list[dict]) -> Gallery:
    """Hits (as `results` gives them) as a gallery: each image labelled with its match and label."""
    return [(service.collection.thumbnail(h["row"]), f"{h['strength']} · {h['label']}") for h in rows]


def extend(library: Library, collection: str, shown: list[dict] | None,
           more: tuple[Gallery, list[dict]]) -> tuple[Gallery, list[dict]]:
    """"Load more": the results shown, then the next page's (`more`, a search's answer from
    where they end), any already shown left out."""
    shown = shown or []
    seen = {h["id"] for h in shown}
    hits = shown + [h for h in more[1] if h["id"] not in seen]
    return gallery(library[collection], hits), hits


def _filter_words(filters: list[str] | None) -> str:
    return " and ".join(f.replace("=", " ") for f in filters or [])


def result_note(library: Library, collection: str, min_match: float | None, hits: list[dict] | None,
                filters: list[str] | None = None) -> str:
    """A line above the results: how many and how strong; for no result, why and what to change."""
    if hits:
        return (f"{len(hits)} results · best match {hits[0]['strength']}/100 "
                f"(0 = an average image of the collection for this query)")
    if hits is None:
        return ""
    if filters:
        rows = library[collection].collection.filter_rows(parse_filters(filters))
        if rows is not None and not len(rows):
            return (f"No image is {_filter_words(filters)} at once: remove a filter "
                    f"(values of one field add up, different fields must all match).")
    if (min_match or 0) > 0:
        return f"No result reaches a match of {min_match:.0f}: lower the minimum match (0 keeps every result)."
    return "Nothing matched: try other words, or remove a filter."


@cache
def _exports() -> tempfile.TemporaryDirectory:
    """The folder of the results files offered for download (removed when the app stops)."""
    return tempfile.TemporaryDirectory(prefix="mosaic-results-")


def export_csv(hits: list[dict]) -> str:
    """The results as a CSV file (rank, id, label, match strength, score, generated caption, metadata) in
    the app's results folder, where files older than EXPORT_AGE are removed first (Gradio serves
    its own copy); returns its path."""
    import csv

    folder = Path(_exports().name)
    for old in folder.glob("*.csv"):
        if time.time() - old.stat().st_mtime > EXPORT_AGE:
            old.unlink(missing_ok=True)
    meta = sorted({k for h in hits for k in h.get("metadata", {})})
    path = folder / f"mosaic-results-{uuid.uuid4().hex[:8]}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["rank", "id", "label", "match", "score", "generated caption", *meta])
        for i, h in enumerate(hits, 1):
            out.writerow([i, h["id"], h.get("label", ""), h.get("strength", ""), h["score"], h.get("caption", ""),
                          *(h.get("metadata", {}).get(k, "") for k in meta)])
    return str(path)


def read_upload(upload: str | dict) -> Image.Image:
    """An uploaded image. The app's events pass uploads to the handlers unprocessed, as Gradio's
    file data: processing them leaves an empty temporary file behind at every request."""
    return read_query_image(upload["path"] if isinstance(upload, dict) else upload)


def query_image(upload: Upload, item_id: str | None) -> Image.Image | str:
    """The query image: the uploaded file, else the id of an item of the collection."""
    if upload:
        return read_upload(upload)
    if (item_id or "").strip():
        return item_id.strip()
    raise QueryError("Upload an image, or give the id of an item (Browse -> Find similar).")


# Every search below also takes `hide_duplicates` (only the best of each group of exact or near
# duplicates) and `offset` (the results after the first `offset`: paging, "Load more").

def image_search(library: Library, collection: str, upload: Upload, item_id: str | None, k: float,
                 min_score: float, hide_duplicates: bool = True, offset: float = 0) -> tuple[Gallery, list[dict]]:
    """Find the images of a collection that look most like a given image (uploaded, or an item's id:
    the other items).

    Args:
        collection: the collection to search (its name)
        upload: the query image (a URL or a file); leave empty to use item_id
        item_id: the id of an item of the collection to use as the query (when no image is given)
        k: how many results (1-100)
        min_score: the least match strength (0-100) a result needs; 0 keeps all
        hide_duplicates: only the best image of each group of near duplicates
        offset: the results after the first `offset` (the next page)
    Returns:
        a gallery of the result images (each with a URL) labelled "match strength · caption or title"
        the hits as JSON: id, score, strength, label, caption, metadata and why each one matched
    """
    service = library[collection]
    hits = service.image_to_image(query_image(upload, item_id), int(k), offset=_offset(offset),
                                  distinct=bool(hide_duplicates), others=True)
    return results(service, hits, min_score)


def caption_search(library: Library, collection: str, text: str | None, target: str, k: float, min_score: float,
                   hide_duplicates: bool = True, offset: float = 0) -> tuple[Gallery, list[dict]]:
    """Find the images of a collection that a text describes best.

    Args:
        collection: the collection to search (its name)
        text: what the images should show, e.g. "a dog running on the grass"
        target: match the text against the images, their captions, or both (the mean)
        k: how many results (1-100)
        min_score: the least match strength (0-100) a result needs; 0 keeps all
        hide_duplicates: only the best image of each group of near duplicates
        offset: the results after the first `offset` (the next page)
    Returns:
        a gallery of the result images (each with a URL) labelled "match strength · caption or title"
        the hits as JSON: id, score, strength, label, caption, metadata and why each one matched
    """
    service = library[collection]
    hits = service.text_to_image(text or "", int(k), target, offset=_offset(offset), distinct=bool(hide_duplicates))
    return results(service, hits, min_score)


def omni_search(library: Library, collection: str, text: str | None, filters: list[str] | None,
                tag_1: str | None, weight_1: float, tag_2: str | None, weight_2: float,
                tag_3: str | None, weight_3: float, k: float, min_score: float, hide_duplicates: bool = True,
                offset: float = 0) -> tuple[Gallery, list[dict]]:
    """Find images by text, `field=value` filters and weighted tags together (a tag given twice
    counts with the sum of its weights).

    Args:
        collection: the collection to search (its name)
        text: what the images should show (optional)
        filters: `field=value` filters, e.g. style=Impressionism; values of one field: any, of several fields: all
        tag_1: a zero-shot tag to favour, e.g. mood:calm (optional)
        weight_1: the weight of tag_1 (-2 to 2; 1 counts half as much as the text, below 0 pushes away)
        tag_2: a second tag (optional)
        weight_2: the weight of tag_2
        tag_3: a third tag (optional)
        weight_3: the weight of tag_3
        k: how many results (1-100)
        min_score: the least match strength (0-100) a result needs; 0 keeps all
        hide_duplicates: only the best image of each group of near duplicates
        offset: the results after the first `offset` (the next page)
    Returns:
        a gallery of the result images (each with a URL) labelled "match strength · caption or title"
        the hits as JSON: id, score, strength, label, caption, metadata and why each one matched
    """
    weights = tag_weights([(tag_1, weight_1), (tag_2, weight_2), (tag_3, weight_3)])
    service = library[collection]
    hits = service.omni(text or "", int(k), parse_filters(filters), weights, _offset(offset), bool(hide_duplicates))
    return results(service, hits, min_score)


def composed_search(library: Library, collection: str, upload: Upload, item_id: str | None, text: str | None,
                    method: str, weight: float, k: float, min_score: float, hide_duplicates: bool = True,
                    offset: float = 0) -> tuple[Gallery, list[dict]]:
    """Find the images like a reference image, changed as a text says ("the same dog but on a beach").

    Args:
        collection: the collection to search (its name)
        upload: the reference image (a URL or a file); leave empty to use item_id
        item_id: the id of an item of the collection to use as the reference (when no image is given)
        text: what should change, e.g. "the same scene but at night"
        method: sum (mix the picture and the words), slerp (turn the picture towards the words) or text
        weight: the weight of the words, 0-1 (sum and slerp)
        k: how many results (1-100)
        min_score: the least match strength (0-100) a result needs; 0 keeps all
        hide_duplicates: only the best image of each group of near duplicates
        offset: the results after the first `offset` (the next page)
    Returns:
        a gallery of the result images (each with a URL) labelled "match strength · caption or title"
        the hits as JSON: id, score, strength, label, caption, metadata and why each one matched
    """
    service = library[collection]
    hits = ComposedSearch(service).search(query_image(upload, item_id), text or "", method, int(k), float(weight),
                                          _offset(offset), bool(hide_duplicates))
    return results(service, hits, min_score)


def _offset(offset: float | None) -> int:
    """An offset as the service takes it: a whole number (the API may send 12.0; none is 0)."""
    if offset is None:
        return 0
    if not float(offset).is_integer():
        raise QueryError(f"The offset must be a whole number, 0 or more (got {offset}).")
    return int(offset)


def browse(library: Library, collection: str, filters: list[str] | None,
           page: float | None) -> tuple[Gallery, list[dict], int, str]:
    """One page of a collection (filtered): its images, its items, the page number (clamped to
    the pages there are) and a line saying where it is.

    Args:
        collection: the collection to browse (its name)
        filters: `field=value` filters, e.g. genre=landscape (optional)
        page: the page, from 1 (24 items a page)
    """
    service = library[collection]
    rows = browsed_rows(service, filters)
    pages = page_count(rows)
    page = min(max(1, int(page or 1)), pages)
    items = [service.details(int(r)) for r in rows[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]]
    for d in items:
        d["label"] = label(service, d["row"], d["caption"], {"id": d["id"], **d["metadata"]})
    grid = [(service.collection.thumbnail(d["row"]), d["label"]) for d in items]
    if not len(rows):
        return grid, items, 1, f"No image is {_filter_words(filters)} at once: remove a filter."
    return grid, items, page, f"Page {page} of {pages} · {len(rows):,} items"


def browsed_rows(service: SearchService, filters: list[str] | None) -> np.ndarray:
    """The rows browse pages through: the items the filters keep, in the collection's order."""
    rows = service.collection.filter_rows(parse_filters(filters))
    return np.arange(len(service.collection)) if rows is None else rows


def page_count(rows: np.ndarray) -> int:
    return max(1, math.ceil(len(rows) / PAGE_SIZE))


def pages(library: Library, collection: str, filters: list[str] | None) -> int:
    """How many pages browse shows of a collection with these filters."""
    return page_count(browsed_rows(library[collection], filters))


def turn_page(page: float | None, move: int) -> int:
    """The page `move` pages on (never before the first; browse clamps the end)."""
    return max(1, int(page or 1) + move)


def item_details(library: Library, collection: str, item_id: str | None) -> tuple[Image.Image | None, str, dict | None]:
    """An item's image, its details (the captions people wrote, its generated caption, tags,
    metadata) as Markdown and as JSON (nothing for an empty id).

    Args:
        collection: the collection holding the item (its name)
        item_id: the item's id, as the searches return it
    """
    if not (item_id or "").strip():
        return None, "", None
    service = library[collection]
    d = service.details(item_id.strip())
    d["label"] = label(service, d["row"], d["caption"], {"id": d["id"], **d["metadata"]})
    return service.collection.thumbnail(d["row"]), render.details_markdown(d), d


def scene_search(library: Library, collection: str, scene: str | None, text: str | None) -> tuple[list[dict], str]:
    """A driving scene's frames in order and its timeline; with a text, each frame scored against
    it and the best few marked. A collection without scenes gets a message instead.

    Args:
        collection: a collection of driving scenes (its name)
        scene: the scene's name
        text: what to find in the scene, e.g. "a truck at an intersection" (optional)
    """
    service = library[collection]
    if not scene and not service.collection.scenes:
        return [], render.NO_SCENES
    hits = service.scene(scene or "", text or "")
    scored = bool((text or "").strip())
    best = set(sorted(range(len(hits)), key=lambda i: -hits[i].score)[:MARKED_FRAMES]) if scored else set()
    frames = [{"row": h.row, "id": h.id, "score": h.score if scored else None, "strength": h.strength if scored else None,
               "match": i in best} for i, h in enumerate(hits)]
    return frames, render.timeline_html(frames, best_frame(frames))


def best_frame(frames: list[dict] | None) -> int:
    """The position (from 1) of a searched scene's best-matching frame; 1 when unsearched."""
    scored = [(f["score"], -i) for i, f in enumerate(frames or []) if f.get("score") is not None]
    return 1 - max(scored)[1] if scored else 1


def scene_frame(library: Library, collection: str, frames: list[dict] | None,
                position: float | None) -> tuple[Image.Image | None, str, str]:
    """One frame of a searched scene, by its position on the timeline (from 1): its image, a line
    about it, the timeline marking it.

    Args:
        collection: the scene's collection (its name)
        frames: the frames scene_search returned
        position: the frame's position, from 1
    """
    service = library[collection]
    if not frames:
        return None, "" if service.collection.scenes else render.NO_SCENES_TEXT, ""
    index = min(max(1, int(position or 1)), len(frames)) - 1
    d = service.details(frames[index]["row"])
    return (service.collection.thumbnail(d["row"]), render.frame_markdown(d, frames[index].get("strength")),
            render.timeline_html(frames, index + 1))


def humor_score(library: Library, prompt: str | None, upload: Upload, answers: str | None) -> tuple[str, dict]:
    """Rank answers by how funny they are for a prompt (a text, or an image captioned first),
    with each word's share of the score.

    Args:
        prompt: the prompt, e.g. a headline (or leave empty and give an image)
        upload: an image to use as the prompt, captioned first (optional)
        answers: the answers to rank, one per line
    """
    if library.humor is None:
        raise QueryError("No humor model is loaded: train one with `mosaic humor train` and start the app "
                         "with --humor PATH (default: artifacts/models/humor).")
    lines = [a.strip() for a in (answers or "").splitlines() if a.strip()]
    prompt = (prompt or "").strip()
    if upload and not prompt:
        prompt = caption_images([read_upload(upload)])[0]
    if not prompt or not lines:
        raise QueryError("Give a prompt (text, or an image to caption) and at least one answer, one per line.")
    if len(lines) > MAX_ANSWERS or max(map(len, lines)) > MAX_ANSWER_CHARS:
        raise QueryError(f"At most {MAX_ANSWERS} answers of up to {MAX_ANSWER_CHARS} characters each.")
    ranked = library.humor.rank(prompt, lines)
    return render.humor_html(prompt, ranked), {"prompt": prompt, "ranked": ranked}
