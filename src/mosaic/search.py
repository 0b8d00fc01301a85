"""The search service: the one place that turns a query into ranked, explained hits.

The app, the command line, the notebook and composed retrieval call it for every query. The
evaluation (evaluate.py) does not: it scores whole splits at once through the same indexes, with
the collection's human captions as queries.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

import numpy as np
from PIL import Image

from . import dedup, query, strength
from .collection import EMBEDDINGS, Collection
from .errors import CollectionError, QueryError, UsageError
from .index import AnnoyIndex, ExactIndex, HnswIndex, ShardedIndex
from .models import DualEncoder, load_encoder, normalize
from .sources import read_query_image
from .util import STOPWORDS, leave_one_out, words

TARGETS = ("image", "caption", "both")
MAX_K = 1000  # hits per query
TAG_SCALE = 0.5  # omni: a tag of weight 1 counts half as much as the text (a tag nudges, the text leads)
EXPLAINED = 50  # hits that get the costly parts of an explanation (query and caption words)


@dataclass
class Hit:
    """One result: the item, its score, its metadata and why it matched."""

    row: int
    id: str
    score: float
    metadata: dict
    caption: str = ""
    explanation: dict = field(default_factory=dict)
    strength: int = 0  # the score as a match strength, 0-100 (see mosaic.strength)

    def to_dict(self) -> dict:
        return {"id": self.id, "score": round(self.score, 4), "strength": self.strength, "caption": self.caption,
                "metadata": self.metadata, "explanation": self.explanation}


class SearchService:
    """Queries over one collection: image->image, text->image (images, captions or both), omni.

    `index` picks the candidate index: "exact", "hnsw", "annoy", or "auto" (exact up to
    `exact_limit` items, the HNSW graphs above; Annoy for a collection built before them).
    Filtered queries always search exactly over the filtered rows.
    `shard_rows` splits the exact indexes into shards of that many rows, merged at query time;
    with `ray` the shards are held by Ray actors across a cluster."""

    def __init__(self, collection: Collection | str | Path, encoder: DualEncoder | None = None,
                 index: str = "auto", precision: str = "fp32", exact_limit: int = 200_000,
                 shard_rows: int | None = None, ray: bool = False, allow_files: bool = False):
        self.collection = collection if isinstance(collection, Collection) else Collection.load(collection)
        self.allow_files = allow_files  # image files as query terms: for the command line, not a server
        c = self.collection
        self.encoder = encoder or load_encoder(c.manifest.models["encoder"])
        if self.encoder.dim != c.image_emb.shape[1]:
            raise CollectionError(f"{c.path} holds {c.image_emb.shape[1]}-d embeddings but the model "
                                  f"{self.encoder.spec} makes {self.encoder.dim}-d ones.")
        self.exact = {name: ShardedIndex(c.files.array(f"{name}_emb"), shard_rows, precision, ray) if shard_rows
                      else ExactIndex(getattr(c, f"{name}_emb"), precision) for name in EMBEDDINGS}
        self.ann = _approximate(c, index, exact_limit)
        self.tag_mean, self.tag_std = c.tags.mean(0), np.maximum(c.tags.std(0), 1e-6)
        self.tag_z = (c.tags - self.tag_mean) / self.tag_std
        self.reference = strength.reference_rows(len(c))  # the rows every query is calibrated on

    # ---- queries -------------------------------------------------------------------------
    def image_to_image(self, image: Image.Image | str | int, k: int = 10, filters: dict | None = None,
                       offset: int = 0, distinct: bool = False, others: bool = False) -> list[Hit]:
        """Items most similar to an image (a PIL image, or an item id / row of this collection);
        with `others`, an item given as the query is left out ("more like this").

        Every query method returns the `k` hits after the first `offset` (paging); with
        `distinct`, only the best of each group of duplicates (exact or near) counts."""
        itself = self.row(image) if others and not isinstance(image, Image.Image) else None
        n = min(self._fetch(k, offset, distinct) + (itself is not None), len(self.collection))
        q = self._image_query(image)
        scores, rows = self._search("image", q, n, self.collection.filter_rows(filters))
        if itself is not None:
            scores, rows = scores[rows != itself], rows[rows != itself]
        rows, scores, _ = self._page(rows, scores, {}, k, offset, distinct)
        hits = self._rate(self._hits(rows, scores), self.exact["image"].scores(q, self.reference)[0])
        for h in hits:
            h.explanation = {"mode": "image", "tags": self._shared_tags(q, h.row)}
        return hits

    def text_to_image(self, text: str, k: int = 10, target: str = "both", filters: dict | None = None,
                      offset: int = 0, distinct: bool = False) -> list[Hit]:
        """Items matching a text, scored against image embeddings, captions, or the mean of both."""
        if target not in TARGETS:
            raise QueryError(f"Unknown target '{target}'. Use one of {', '.join(TARGETS)}.")
        n, terms = self._fetch(k, offset, distinct), self.terms(text)
        q, rows_allowed = _combine(terms), self.collection.filter_rows(filters)
        if target == "image" and len(terms) == 1:
            scores, rows = self._search("image", q, n, rows_allowed)
            parts = {"image": scores}
        else:
            cand = self._candidates(q, n, target, rows_allowed)
            total, parts = self._match(terms, cand, target)
            order = np.argsort(-total)[:n]
            rows, scores = cand[order], total[order]
            parts = {name: v[order] for name, v in parts.items()}
        rows, scores, parts = self._page(rows, scores, parts, k, offset, distinct)
        hits = self._rate(self._hits(rows, scores), self._match(terms, self.reference, target)[0])
        self._explain(text, q, hits, parts, mode=target)
        return hits

    def omni(self, text: str = "", k: int = 10, filters: dict | None = None,
             tag_weights: dict[str, float] | None = None, offset: int = 0, distinct: bool = False) -> list[Hit]:
        """Free text + filters + tag weights, fused: score = z(text match) + TAG_SCALE * sum_t w_t * z(tag t).

        Both parts are z-scored over the candidate items, so they share one scale; a tag of weight
        1 counts half as much as the text, so it cannot outrank a strong text match on its own
        (weight 2 makes it the text's equal). Text match is the mean of image and caption similarity."""
        n, tag_weights = self._fetch(k, offset, distinct), query.tag_weights((tag_weights or {}).items())
        unknown = [t for t in tag_weights if t not in self.collection.tag_names]
        if unknown:
            raise QueryError(f"Unknown tag(s) {unknown}. Tags look like {self.collection.tag_names[:3]}.")
        if not text.strip() and not tag_weights and not filters:
            raise QueryError("Give a text, a filter or a tag weight.")
        rows_allowed = self.collection.filter_rows(filters)
        terms = self.terms(text) if text.strip() else []
        q = _combine(terms) if terms else None
        if q is not None and rows_allowed is None and self.ann:
            cand = np.unique(self.ann["omni"].search(q, max(n * 20, 1000))[1][0])
        else:
            cand = np.arange(len(self.collection)) if rows_allowed is None else rows_allowed
        if not len(cand):
            return []
        parts: dict[str, np.ndarray] = {}
        total = np.zeros(len(cand), np.float32)
        ref = np.zeros(len(self.reference), np.float32)  # the same score over the calibration rows
        if q is not None:
            match = self._match(terms, cand, "both")[0]
            mean, sd = float(match.mean()), max(float(match.std()), 1e-6)
            parts["text"] = ((match - mean) / sd).astype(np.float32)
            total += parts["text"]
            ref += (self._match(terms, self.reference, "both")[0] - mean) / sd
        for tag, w in tag_weights.items():
            col = self.collection.tag_names.index(tag)
            parts[tag] = TAG_SCALE * w * self.tag_z[cand, col]
            total += parts[tag]
            ref += TAG_SCALE * w * self.tag_z[self.reference, col]
        order = np.argsort(-total)[:n]
        rows, scores, parts = self._page(cand[order], total[order], {p: v[order] for p, v in parts.items()}, k, offset,
                                         distinct)
        hits = self._rate(self._hits(rows, scores), ref)
        self._explain(text, q, hits, parts, mode="omni")
        return hits

    def by_vector(self, q: np.ndarray, k: int = 10, exclude: tuple[int, ...] = (), offset: int = 0,
                  distinct: bool = False) -> list[Hit]:
        """Items whose image embeddings are closest to a query vector (e.g. a composed query),
        leaving out the rows in `exclude` (paging and `distinct` as in `image_to_image`)."""
        n = min(self._fetch(k, offset, distinct) + len(exclude), len(self.collection))
        scores, rows = self._search("image", q, n, None)
        keep = [i for i, row in enumerate(rows) if row not in exclude]
        rows, scores, _ = self._page(rows[keep], scores[keep], {}, k, offset, distinct)
        return self._rate(self._hits(rows, scores), self.exact["image"].scores(q, self.reference)[0])

    def tag_profile(self, vectors: np.ndarray) -> np.ndarray:
        """Tag z-scores of embeddings, on the same scale as the collection's items."""
        return (np.asarray(vectors) @ self.collection.tag_emb.T - self.tag_mean) / self.tag_std

    def scene(self, scene: str, text: str = "") -> list[Hit]:
        """Every frame of a scene in order; with a text, each scored against it (image embeddings)."""
        scenes = self.collection.scenes
        if scene not in scenes:
            known = ", ".join(list(scenes)[:20]) or "none (this collection has no scenes)"
            raise QueryError(f"No scene '{scene}' in collection '{self.collection.name}'. Scenes: {known}.")
        rows = np.asarray(scenes[scene])
        if not text.strip():
            return self._hits(rows, np.zeros(len(rows)))
        terms = self.terms(text)
        scores, parts = self._match(terms, rows, "image")
        hits = self._rate(self._hits(rows, scores), self._match(terms, self.reference, "image")[0])
        self._explain(text, _combine(terms), hits, parts, mode="image")
        return hits

    def details(self, item: str | int, n_tags: int = 5) -> dict:
        """One item: id, generated caption, the captions people wrote, its strongest tags, its metadata."""
        row = self.row(item)
        meta = self.collection.item(row)
        top = np.argsort(-self.tag_z[row])[:n_tags]
        return {"row": row, "id": meta.pop("id"), "caption": meta.pop("caption", "") or "",
                "captions": self.collection.item_captions(row, human=True),
                "tags": [{"tag": self.collection.tag_names[i], "z": round(float(self.tag_z[row, i]), 2)} for i in top],
                "metadata": meta}

    def row(self, item: str | int) -> int:
        """The row of an item given by id (or by row number)."""
        c = self.collection
        if isinstance(item, (int, np.integer)):
            if not 0 <= item < len(c):
                raise QueryError(f"Row {item} is outside this collection (0..{len(c) - 1}).")
            return int(item)
        if item not in c.rows_by_id:
            raise QueryError(f"No item with id '{item}' in collection '{c.name}'.")
        return c.rows_by_id[item]

    # ---- internals -----------------------------------------------------------------------
    def _fetch(self, k, offset, distinct: bool) -> int:
        """How many ranked items a page needs: the ones before it and on it, and with `distinct`
        room for the duplicates that will be left out."""
        if not isinstance(offset, (int, np.integer)) or offset < 0:
            raise QueryError(f"The offset must be a whole number, 0 or more (got {offset}).")
        n = _check_k(k) + int(offset)
        if n > MAX_K:
            raise QueryError(f"Results go up to the {MAX_K}th (asked for {offset}+{k}).")
        return min(n + (len(self._group_of) if distinct else 0), len(self.collection)) or 1

    def _page(self, rows, scores, parts: dict, k: int, offset: int, distinct: bool) -> tuple:
        """The ranked items of one page: `offset` skipped, `k` kept; with `distinct`, an item
        whose duplicate ranks higher is left out."""
        keep = np.arange(len(rows))
        if distinct:
            seen, kept = set(), []
            for i, row in enumerate(rows):
                group = self._group_of.get(int(row), -1 - int(row))
                if group not in seen:
                    seen.add(group)
                    kept.append(i)
            keep = np.asarray(kept, int)
        keep = keep[offset:offset + k]
        return rows[keep], scores[keep], {name: v[keep] for name, v in parts.items()}

    @cached_property
    def _group_of(self) -> dict[int, int]:
        return dedup.group_of(self.collection.duplicate_groups, self.collection.ids())

    def text_query(self, text: str) -> np.ndarray:
        """The query vector of a text: its embedding or, for query arithmetic (`dog -grass`,
        `2:beach + sunset`, `id:ITEM - night`; see `query.parse_terms`), the normalised weighted
        sum of its terms' embeddings (what composed queries and candidate lists use; the
        service itself scores arithmetic term by term, see `_match`)."""
        return _combine(self.terms(text))

    def terms(self, text: str) -> list[tuple[query.Term, np.ndarray]]:
        """Each term of a text query with its (unit) embedding."""
        text = (text or "").strip()
        if not any(ch.isprintable() and not ch.isspace() for ch in text):
            raise QueryError("The query is empty: type a few words describing the image you want.")
        if len(text) > 1000:
            raise QueryError(f"The query is {len(text)} characters long; keep it under 1000.")
        terms = query.parse_terms(text)
        words_of = [t.text for t in terms if t.kind == "text"]
        embedded = iter(self.encoder.encode_texts(words_of)) if words_of else iter(())
        return [(t, next(embedded) if t.kind == "text" else self._term_image(t)) for t in terms]

    def _term_image(self, term: query.Term) -> np.ndarray:
        if term.kind == "item":
            return np.asarray(self.collection.image_emb[self.row(term.text)])
        if not self.allow_files:
            raise QueryError(f"'{term.text}' looks like an image file: upload it, or give an item as id:ITEM.")
        return self.encoder.encode_images([read_query_image(Path(term.text).expanduser())])[0]

    def _image_query(self, image) -> np.ndarray:
        if isinstance(image, (int, np.integer, str)):
            return np.asarray(self.collection.image_emb[[self.row(image)]])
        if not isinstance(image, Image.Image):
            raise QueryError("Give an image (or the id of an item) to search by image.")
        return self.encoder.encode_images([image.convert("RGB")])

    def _search(self, name: str, q: np.ndarray, k: int, rows_allowed: np.ndarray | None):
        index = self.ann.get(name) if rows_allowed is None else None
        scores, rows = (index or self.exact[name]).search(q, k, None if index else rows_allowed)
        return scores[0], rows[0]

    def _candidates(self, q: np.ndarray, k: int, target: str, rows_allowed) -> np.ndarray:
        """Items to rescore exactly: all (filtered or small collections) or the approximate index's best."""
        if rows_allowed is not None or not self.ann:
            return np.arange(len(self.collection)) if rows_allowed is None else rows_allowed
        pool, found = max(k * 20, 1000), []
        if target != "image":
            found.append(self.collection.caption_items[self.ann["text"].search(q, pool)[1][0]])
        if target != "caption":
            found.append(self.ann["image"].search(q, pool)[1][0])
        return np.unique(np.concatenate(found))

    def _match(self, terms: list, items: np.ndarray, target: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """How well `items` match a text: against image embeddings, best captions, or the mean of
        both; with several terms, each term's match weighted and summed (over the sum of the
        weights' sizes), so an item matching a negative term loses what it matches it by.
        Returns the scores and their parts (image and caption, or one part per term)."""
        if len(terms) == 1:
            parts = self._components(terms[0][1][None], items, target)
            return (sum(parts.values()) / len(parts)).astype(np.float32), parts
        scale = sum(abs(t.weight) for t, _ in terms)
        parts = {}
        for t, v in terms:
            parts[_label(t)] = t.weight / scale * self._match([(t, v)], items, target)[0]
        return sum(parts.values()).astype(np.float32), parts

    def _components(self, q: np.ndarray, items: np.ndarray, target: str) -> dict[str, np.ndarray]:
        """Exact image and best-caption similarities of `items` to the query, as `target` needs."""
        c, parts = self.collection, {}
        every = len(items) == len(c) and bool(np.all(np.diff(items) > 0))  # all rows in order: read, not gathered
        if target != "caption":
            parts["image"] = self.exact["image"].scores(q, None if every else items)[0]
        if target != "image":  # the items' captions only, found through the per-item caption index
            caption_rows, owner = (None, c.caption_items) if every else c.caption_rows(items)
            best = np.full(len(items), -np.inf, np.float32)
            np.maximum.at(best, owner, self.exact["text"].scores(q, caption_rows)[0])
            parts["caption"] = np.where(np.isfinite(best), best, 0.0).astype(np.float32)
        return parts

    def _hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        c = self.collection
        out = []
        for row, score in zip(rows, scores):
            meta = c.item(int(row))
            caption = meta.pop("caption", "") or ""
            out.append(Hit(int(row), meta.pop("id"), float(score), meta, caption))
        return out

    @staticmethod
    def _rate(hits: list[Hit], reference: np.ndarray) -> list[Hit]:
        """Give every hit its match strength against the query's scores over the calibration rows."""
        for h, s in zip(hits, strength.match_strength([h.score for h in hits], reference)):
            h.strength = int(s)
        return hits

    def _shared_tags(self, q: np.ndarray, row: int, n: int = 3) -> list[dict]:
        """Tags that both the query and the hit lean towards (query tag score x hit tag z-score)."""
        c = self.collection
        q_tags = (q @ c.tag_emb.T)[0]
        q_z = (q_tags - q_tags.mean()) / max(q_tags.std(), 1e-6)
        contrib = np.maximum(q_z, 0) * np.maximum(self.tag_z[row], 0)
        top = [int(i) for i in np.argsort(-contrib)[:n] if contrib[i] > 0]
        return [{"tag": c.tag_names[i], "score": round(float(contrib[i]), 3)} for i in top]

    def _explain(self, text: str, q: np.ndarray | None, hits: list[Hit], parts: dict, mode: str) -> None:
        """Attach to every hit its score broken down; to the first EXPLAINED also each query
        term's share (arithmetic) or the query words that mattered most, the caption words
        closest to the query, and the tags shared by query and hit."""
        for i, h in enumerate(hits):
            h.explanation = {"mode": mode, "parts": {n: round(float(v[i]), 4) for n, v in parts.items()}}
        hits = hits[:EXPLAINED]
        if q is None or not hits:
            return
        terms = query.parse_terms(text)
        if len(terms) > 1:  # the parts are the terms' shares
            for h in hits:
                h.explanation["terms"] = [{"term": _label(t), "weight": t.weight,
                                           "contribution": h.explanation["parts"].get(_label(t), 0.0)} for t in terms]
        else:
            self._explain_words(text, q, hits, mode)
        self._explain_captions(q, hits)

    def _target(self, row: int, mode: str) -> np.ndarray:
        """The embedding a hit's score compares with the query: its image, or image and captions."""
        return self.collection.image_emb[row] if mode == "image" else self.collection.omni_emb[row]

    def _explain_words(self, text: str, q: np.ndarray, hits: list[Hit], mode: str) -> None:
        """The query words that mattered most: how much the score drops without each word."""
        allwords = words(text)
        if len(allwords) < 2:
            return
        content = [i for i, w in enumerate(allwords) if w not in STOPWORDS] or list(range(len(allwords)))
        emb = self.encoder.encode_texts([leave_one_out(allwords)[i] for i in content])
        for h in hits:
            target = self._target(h.row, mode)
            drop = float(q[0] @ target) - emb @ target
            h.explanation["query_words"] = sorted(
                ({"word": allwords[i], "contribution": round(float(d), 4)} for i, d in zip(content, drop)),
                key=lambda x: -x["contribution"])

    def _explain_captions(self, q: np.ndarray, hits: list[Hit]) -> None:
        """The caption words closest to the query (of every caption the item has), the tags shared
        with it, and the captions people wrote."""
        c = self.collection
        captions = {h.row: c.item_captions(h.row) for h in hits}
        vocab = sorted({w for caps in captions.values() for t in caps for w in words(t)} - STOPWORDS)
        wsim = dict(zip(vocab, (self.encoder.encode_texts(vocab) @ q[0]) if vocab else []))
        for h in hits:
            e = h.explanation
            cap_words = {w for t in captions[h.row] for w in words(t)} - STOPWORDS
            e["caption_words"] = [{"word": w, "similarity": round(float(wsim[w]), 3)}
                                  for w in sorted(cap_words, key=lambda w: -wsim[w])[:5]]
            e["tags"] = self._shared_tags(q, h.row)
            e["captions"] = c.item_captions(h.row, human=True)


def sort_hits(service: SearchService, hits: list[Hit], by: str | None) -> list[Hit]:
    """Hits in the order of a metadata field (`-field`: descending; items without it last), or
    as ranked when `by` is None or "relevance"."""
    if not by or by == "relevance":
        return hits
    order = service.collection.sorted_rows(np.array([h.row for h in hits], np.int64), by)
    by_row = {h.row: h for h in hits}
    return [by_row[int(r)] for r in order]


def _approximate(c: Collection, index: str, exact_limit: int) -> dict:
    """The approximate index of each space that `index` asks for: none for "exact" (or "auto" up
    to `exact_limit` items), else HNSW graphs or Annoy indexes, whichever the collection holds."""
    if index == "exact" or (index == "auto" and len(c) <= exact_limit):
        return {}
    if index == "auto":
        index = "hnsw" if c.files.hnsw("image").exists() else "annoy"
    kinds = {"hnsw": (c.files.hnsw, HnswIndex), "annoy": (c.files.annoy, partial(AnnoyIndex, dim=c.image_emb.shape[1]))}
    if index not in kinds:
        raise UsageError(f"Unknown index '{index}'. Use auto, exact, hnsw or annoy.")
    path, kind = kinds[index]
    if not path("image").exists():
        raise CollectionError(f"Collection '{c.manifest.name}' has no {index} index: rebuild it"
                              f"{' with --annoy' if index == 'annoy' else ''} (`mosaic build ... --overwrite`).")
    return {name: kind(path(name)) for name in EMBEDDINGS}


def _combine(terms: list) -> np.ndarray:
    """One query vector for a list of (term, unit vector): the normalised weighted sum."""
    total = sum(term.weight * vector for term, vector in terms)
    if float(np.linalg.norm(total)) < 1e-6:
        raise QueryError("The query's terms cancel each other out: change a weight or remove a term.")
    return normalize(total[None])


def _label(term: query.Term) -> str:
    return ("id:" if term.kind == "item" else "") + term.text


def _check_k(k) -> int:
    """The number of hits asked for, as an int from 1 to MAX_K."""
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise QueryError(f"Ask for 1 to {MAX_K} results (got {k}).")
    return int(k)

