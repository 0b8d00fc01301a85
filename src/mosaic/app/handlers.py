"""What the app's tabs do, as plain functions over a Library: each takes the inputs of one
endpoint and returns plain values (galleries as (image, label) pairs, JSON-ready dicts, page
numbers, HTML or Markdown), and raises a MosaicError for a user's mistake. The wiring layer turns
those into Gradio components and messages, so these run and are tested without a server."""
from __future__ import annotations

import math

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

Gallery = list[tuple[Image.Image, str]]
Upload = str | dict | None  # a file's path, or Gradio's data about an uploaded file ({"path": ...})


def filter_choices(service: SearchService) -> list[str]:
    """Every `field=value` filter the collection offers."""
    return [f"{field}={value}" for field, values in service.collection.filter_fields().items() for value in values]


def choices(library: Library, collection: str) -> dict[str, list[str]]:
    """What the controls offer for a collection: its filters, its tags and its scenes."""
    service = library[collection]
    return {"filters": filter_choices(service), "tags": list(service.collection.tag_names),
            "scenes": list(service.collection.scenes)}


def results(service: SearchService, hits: list[Hit], min_score: float) -> tuple[Gallery, list[dict]]:
    """A gallery and the hits as JSON (with their explanations), below `min_score` left out
    (-1, the slider's left end, keeps everything)."""
    rows = [{"row": h.row, **h.to_dict()} for h in hits if min_score <= -1 or h.score >= min_score]
    return [(service.collection.thumbnail(h["row"]), f"{h['score']:.3f} · {h['caption'] or h['id']}")
            for h in rows], rows


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


def image_search(library: Library, collection: str, upload: Upload, item_id: str | None,
                 k: float, min_score: float) -> tuple[Gallery, list[dict]]:
    """The items that look most like an uploaded image or an item of the collection."""
    service = library[collection]
    return results(service, service.image_to_image(query_image(upload, item_id), int(k)), min_score)


def caption_search(library: Library, collection: str, text: str | None, target: str,
                   k: float, min_score: float) -> tuple[Gallery, list[dict]]:
    """The items a text describes best, matched against images, captions or both (`target`)."""
    service = library[collection]
    return results(service, service.text_to_image(text or "", int(k), target), min_score)


def omni_search(library: Library, collection: str, text: str | None, filters: list[str] | None,
                tag_1: str | None, weight_1: float, tag_2: str | None, weight_2: float,
                tag_3: str | None, weight_3: float, k: float, min_score: float) -> tuple[Gallery, list[dict]]:
    """Text, `field=value` filters and weighted tags together (a tag given twice counts with the
    sum of its weights)."""
    weights = tag_weights([(tag_1, weight_1), (tag_2, weight_2), (tag_3, weight_3)])
    service = library[collection]
    return results(service, service.omni(text or "", int(k), parse_filters(filters), weights), min_score)


def composed_search(library: Library, collection: str, upload: Upload, item_id: str | None, text: str | None,
                    method: str, weight: float, k: float, min_score: float) -> tuple[Gallery, list[dict]]:
    """The items like a reference image, changed as a text says (`method`: sum, slerp or text)."""
    service = library[collection]
    hits = ComposedSearch(service).search(query_image(upload, item_id), text or "", method, int(k), float(weight))
    return results(service, hits, min_score)


def browse(library: Library, collection: str, filters: list[str] | None,
           page: float | None) -> tuple[Gallery, list[dict], int, str]:
    """One page of the collection (filtered): its grid, its items, the page number (clamped to
    the pages there are) and a line saying where it is."""
    service = library[collection]
    rows = service.collection.filter_rows(parse_filters(filters))
    rows = np.arange(len(service.collection)) if rows is None else rows
    pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
    page = min(max(1, int(page or 1)), pages)
    items = [service.details(int(r)) for r in rows[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]]
    grid = [(service.collection.thumbnail(d["row"]), d["caption"] or d["id"]) for d in items]
    return grid, items, page, f"Page {page} of {pages} · {len(rows)} items"


def turn_page(page: float | None, move: int) -> int:
    """The page `move` pages on (never before the first; browse clamps the end)."""
    return max(1, int(page or 1) + move)


def item_details(library: Library, collection: str, item_id: str | None) -> tuple[Image.Image | None, str, dict | None]:
    """An item's image, its details as Markdown and as JSON (nothing for an empty id)."""
    if not (item_id or "").strip():
        return None, "", None
    service = library[collection]
    d = service.details(item_id.strip())
    return service.collection.thumbnail(d["row"]), render.details_markdown(d), d


def scene_search(library: Library, collection: str, scene: str | None, text: str | None) -> tuple[list[dict], str]:
    """A scene's frames in order and its timeline; with a text, each frame scored against it and
    the best few marked. A collection without scenes gets a message instead."""
    service = library[collection]
    if not scene and not service.collection.scenes:
        return [], render.NO_SCENES
    hits = service.scene(scene or "", text or "")
    scored = bool((text or "").strip())
    best = set(sorted(range(len(hits)), key=lambda i: -hits[i].score)[:MARKED_FRAMES]) if scored else set()
    frames = [{"row": h.row, "id": h.id, "score": h.score if scored else None, "match": i in best}
              for i, h in enumerate(hits)]
    return frames, render.timeline_html(frames, 0)


def scene_frame(library: Library, collection: str, frames: list[dict] | None,
                index: float | None) -> tuple[Image.Image | None, str, str]:
    """One frame of a searched scene: its image, a line about it, the timeline marking it."""
    if not frames:
        return None, "", ""
    index = min(max(0, int(index or 0)), len(frames) - 1)
    service = library[collection]
    d = service.details(frames[index]["row"])
    return (service.collection.thumbnail(d["row"]), render.frame_markdown(d, frames[index]["score"]),
            render.timeline_html(frames, index))


def humor_score(library: Library, prompt: str | None, upload: Upload, answers: str | None) -> tuple[str, dict]:
    """Answers (one per line) ranked by how funny they are for a prompt, a text or an image
    captioned first, with each word's share of the score."""
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
