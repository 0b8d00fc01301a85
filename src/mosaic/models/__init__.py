"""The model registry: every model is named by a spec string and built by one function.

Dual encoders: `open_clip:<arch>/<pretrained>`, `hf:<repo>`, `lite` (offline, packaged weights).
Captioners: `blip:<repo>`, `labels` (offline). `auto` picks the online default when the Hub is
reachable or the model is cached, else the offline one, and logs which and why.
"""
from __future__ import annotations

import functools
import logging

import numpy as np
from PIL import Image

from .. import hub
from ..errors import UsageError

log = logging.getLogger("mosaic")

ONLINE_ENCODER = "open_clip:ViT-B-32/openai"
ONLINE_CAPTIONER = "blip:Salesforce/blip-image-captioning-base"
OFFLINE_ENCODER = "lite"
OFFLINE_CAPTIONER = "labels"


class DualEncoder:
    """Maps images and texts into one space; every output row is L2-normalised float32."""

    spec: str
    dim: int

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        raise NotImplementedError

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class Captioner:
    """Writes one caption per image."""

    spec: str

    def caption(self, images: list[Image.Image]) -> list[str]:
        raise NotImplementedError


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _hub_repo(spec: str) -> str | None:
    """The Hub repository a spec downloads from, or None for offline specs."""
    kind, _, name = spec.partition(":")
    if kind == "open_clip":
        import open_clip

        arch, _, tag = name.partition("/")
        cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
        return (cfg.get("hf_hub") or "").rstrip("/") or None
    return name if kind in ("hf", "blip") else None


def resolve(spec: str, online: str, offline: str) -> str:
    """Turn `auto` into a concrete spec, logging the choice and its reason."""
    if spec != "auto":
        return spec
    repo = _hub_repo(online)
    if repo and hub.cached(repo):
        log.info("model auto: using %s (found in the local cache)", online)
        return online
    if hub.reachable():
        log.info("model auto: using %s (the Hugging Face Hub is reachable)", online)
        return online
    why = "HF_HUB_OFFLINE is set" if hub.offline() else "the Hub is unreachable and it is not cached"
    log.info("model auto: using offline %s instead of %s (%s)", offline, online, why)
    return offline


def resolve_encoder(spec: str) -> str:
    return resolve(spec, ONLINE_ENCODER, OFFLINE_ENCODER)


def resolve_captioner(spec: str) -> str:
    """Like resolve_encoder; `none` means no generated captions."""
    return spec if spec == "none" else resolve(spec, ONLINE_CAPTIONER, OFFLINE_CAPTIONER)


@functools.lru_cache(maxsize=8)
def load_encoder(spec: str = "auto", device: str | None = None) -> DualEncoder:
    """The dual encoder named by `spec` (loaded once per process)."""
    spec = resolve_encoder(spec)
    kind, _, name = spec.partition(":")
    if kind == "lite":
        from .lite import LiteEncoder

        return LiteEncoder(name or None, device=device)
    if kind in ("open_clip", "hf"):
        from .clip import HFClipEncoder, OpenClipEncoder

        cls = OpenClipEncoder if kind == "open_clip" else HFClipEncoder
        try:
            return cls(name, device=device)
        except (OSError, RuntimeError, ValueError) as e:
            raise hub.unavailable(f"Model '{spec}'", e) from e
    raise UsageError(f"Unknown model spec '{spec}'. Use open_clip:<arch>/<pretrained>, hf:<repo>, lite or auto.")


def caption_images(images: list[Image.Image], spec: str = "auto", batch_size: int = 32) -> list[str]:
    """A caption for each image by the captioner `spec` (`none`: empty captions), in batches."""
    if spec == "none" or not images:
        return [""] * len(images)
    model = load_captioner(spec)
    return [c for lo in range(0, len(images), batch_size) for c in model.caption(images[lo:lo + batch_size])]


@functools.lru_cache(maxsize=4)
def load_captioner(spec: str = "auto", device: str | None = None) -> Captioner:
    """The captioner named by `spec` (loaded once per process)."""
    spec = resolve_captioner(spec)
    kind, _, name = spec.partition(":")
    if kind == "labels":
        from .lite import LabelCaptioner

        return LabelCaptioner(device=device)
    if kind == "blip":
        from .captioners import BlipCaptioner

        try:
            return BlipCaptioner(name or "Salesforce/blip-image-captioning-base", device=device)
        except (OSError, RuntimeError, ValueError) as e:
            raise hub.unavailable(f"Captioner '{spec}'", e) from e
    raise UsageError(f"Unknown captioner spec '{spec}'. Use blip:<repo>, labels or auto.")
