"""Stages: functions from a batch of decoded images and their texts to columns (the images'
previews are made where they are decoded, in `mosaic.reading`).

`process_batch` reads and writes no files and keeps nothing between calls (the models it is
given may cache: the offline classifier reuses its answer for the batch it saw last), so it runs
unchanged in the local loop or in any worker pool. `Vocabulary.load`, called once per build, is
the one thing here that reads a file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import UsageError
from .models import Captioner, DualEncoder

VOCAB_DIR = Path(__file__).with_name("vocab")
LIST_COLUMNS = ("generated", "caption_text", "caption_kind", "thumbs")


@dataclass(frozen=True)
class Vocabulary:
    """Zero-shot tags: `category:tag` names and the prompt each is scored with."""

    names: list[str]
    prompts: list[str]

    @classmethod
    def load(cls, name_or_path: str) -> Vocabulary:
        """A vocabulary by name (art, driving, photos) or from a JSON file of the same shape."""
        path = Path(name_or_path)
        if not path.suffix:
            path = VOCAB_DIR / f"{name_or_path}.json"
        if not path.exists():
            known = ", ".join(p.stem for p in sorted(VOCAB_DIR.glob("*.json")))
            raise UsageError(f"Unknown tag vocabulary '{name_or_path}'. Use one of {known} or a JSON file.")
        names, prompts = [], []
        for category, spec in json.loads(path.read_text()).items():
            for tag in spec["tags"]:
                names.append(f"{category}:{tag}")
                prompts.append(spec["template"].format(tag))
        return cls(names, prompts)


def embed_texts(texts: list[str], encoder: DualEncoder) -> np.ndarray:
    if not texts:
        return np.zeros((0, encoder.dim), np.float32)
    return encoder.encode_texts(texts)


def score_tags(image_emb: np.ndarray, tag_emb: np.ndarray) -> np.ndarray:
    """Cosine similarity of every image to every tag prompt."""
    return (image_emb @ tag_emb.T).astype(np.float32)


def process_batch(images: list[Image.Image], human_texts: list[list[str]], encoder: DualEncoder,
                  captioner: Captioner | None, tag_emb: np.ndarray, prepared: list | None = None) -> dict:
    """The models' columns for one batch: image embeddings, generated captions, the embedding of
    every caption (human first, then generated), which item each caption belongs to and tag scores.
    `prepared`: the images as `encoder.prepare` made them, when that was done beforehand (the
    images are then what the captioner's `prepare` made, or anything when there is no captioner)."""
    image_emb = encoder.encode_images(images if prepared is None else prepared)
    generated = captioner.caption(images) if captioner else [""] * len(images)
    texts, owner, kind = [], [], []
    for i, (human, gen) in enumerate(zip(human_texts, generated)):
        for text, k in [(t, "human") for t in human] + ([(gen, "generated")] if gen else []):
            texts.append(text)
            owner.append(i)
            kind.append(k)
    return {
        "image_emb": image_emb,
        "generated": generated,
        "caption_text": texts,
        "caption_item": np.asarray(owner, np.int64),
        "caption_kind": kind,
        "text_emb": embed_texts(texts, encoder),
        "tags": score_tags(image_emb, tag_emb),
    }


def item_columns(columns: dict, i: int) -> dict:
    """The columns of the `i`-th item of a batch, as a batch of one."""
    caps = np.flatnonzero(columns["caption_item"] == i)
    return {"image_emb": columns["image_emb"][i:i + 1], "generated": columns["generated"][i:i + 1],
            "caption_text": [columns["caption_text"][j] for j in caps], "caption_item": np.zeros(len(caps), np.int64),
            "caption_kind": [columns["caption_kind"][j] for j in caps], "text_emb": columns["text_emb"][caps],
            "tags": columns["tags"][i:i + 1], "thumbs": columns["thumbs"][i:i + 1]}


def concat_columns(parts: list[dict], dim: int, n_tags: int) -> dict:
    """Join the columns of consecutive batches (caption owners shifted to shard positions)."""
    out = {"image_emb": [np.zeros((0, dim), np.float32)], "generated": [], "caption_text": [],
           "caption_item": [np.zeros(0, np.int64)], "caption_kind": [],
           "text_emb": [np.zeros((0, dim), np.float32)], "tags": [np.zeros((0, n_tags), np.float32)], "thumbs": []}
    offset = 0
    for part in parts:
        for k, v in part.items():
            out[k].append(v + offset if k == "caption_item" else v)
        offset += len(part["image_emb"])
    return {k: sum(v, []) if k in LIST_COLUMNS else np.concatenate(v) for k, v in out.items()}
