"""The model registry: every model is named by a spec string and built by one function.

Dual encoders: `open_clip:<arch>/<pretrained>` (e.g. `open_clip:ViT-B-32/openai`; the pretrained
tag is required, and `open_clip:<arch>/random` asks for random weights, for plumbing tests only),
`hf:<repo>`, `lite` (offline, packaged weights). Captioners: `blip:<repo>`, `labels` (offline).
The `<repo>` of `hf:` and `blip:` is a Hub repository or a local folder written by `save_pretrained`.
`auto` picks the online default when the Hub is reachable or the model is cached, else the
offline one, and logs which and why.
"""
from __future__ import annotations

import functools
import logging
import os

import numpy as np
from PIL import Image

from .. import hub
from ..errors import MosaicError, UsageError

log = logging.getLogger("mosaic")

ONLINE_ENCODER = "open_clip:ViT-B-32/openai"
ONLINE_CAPTIONER = "blip:Salesforce/blip-image-captioning-base"
OFFLINE_ENCODER = "lite"
OFFLINE_CAPTIONER = "labels"


class DualEncoder:
    """Maps images and texts into one space; every output row is L2-normalised float32."""

    spec: str
    dim: int
    image_side: int | None = None  # the shorter side its preprocessing scales images to; None: it reads them whole

    def encode_images(self, images: list) -> np.ndarray:
        """Embeddings of images, or of what `prepare` made of them."""
        raise NotImplementedError

    def prepare(self, image: Image.Image):
        """What `encode_images` takes for one image, made beforehand by the build's reading workers
        and sent from them: by default the image itself; better, the first steps of the model's
        preprocessing (e.g. its crop), smaller than the image and left as they are when
        `encode_images` repeats them."""
        return image

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class Captioner:
    """Writes one caption per image."""

    spec: str
    image_side: int | None = None  # as DualEncoder.image_side

    def caption(self, images: list[Image.Image]) -> list[str]:
        """Captions of images, or of what `prepare` made of them."""
        raise NotImplementedError

    def prepare(self, image: Image.Image):
        """As `DualEncoder.prepare`: what `caption` takes for one image, made beforehand."""
        return image


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def processor_side(image_processor) -> int:
    """The shorter side a transformers image processor scales images to (`shortest_edge`, or the
    larger of the height and width it resizes them to)."""
    size = image_processor.size
    return size.get("shortest_edge") or max(size["height"], size["width"])


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
    """A concrete encoder spec: `auto` becomes the online or the offline default."""
    return resolve(spec, ONLINE_ENCODER, OFFLINE_ENCODER)


def resolve_captioner(spec: str) -> str:
    """Like resolve_encoder; `none` means no generated captions."""
    return spec if spec == "none" else resolve(spec, ONLINE_CAPTIONER, OFFLINE_CAPTIONER)


def _lite(name: str, device: str | None) -> DualEncoder:
    from .lite import LiteEncoder

    return LiteEncoder(name or None, device=device)


def _open_clip(name: str, device: str | None) -> DualEncoder:
    from .clip import OpenClipEncoder

    return OpenClipEncoder(name, device=device)


def _hf_clip(name: str, device: str | None) -> DualEncoder:
    from .clip import HFClipEncoder

    return HFClipEncoder(name, device=device)


def _labels(name: str, device: str | None) -> Captioner:
    from .lite import LabelCaptioner

    return LabelCaptioner(device=device)


def _blip(name: str, device: str | None) -> Captioner:
    from .captioners import BlipCaptioner

    return BlipCaptioner(name or "Salesforce/blip-image-captioning-base", device=device)


# The registry: a spec's kind (before the colon) -> a factory of (name after the colon, device).
# Another model family is one more entry here.
ENCODERS = {"lite": _lite, "open_clip": _open_clip, "hf": _hf_clip}
CAPTIONERS = {"labels": _labels, "blip": _blip}
HUB_KINDS = {"open_clip", "hf", "blip"}  # downloaded from the Hugging Face Hub


def _load(registry: dict, spec: str, device: str | None, what: str):
    kind, _, name = spec.partition(":")
    if kind not in registry:
        raise UsageError(f"Unknown {what} spec '{spec}'. Use auto, or one of: {', '.join(registry)}.")
    if kind not in HUB_KINDS:
        return registry[kind](name, device)
    try:
        return registry[kind](name, device)
    except MosaicError:
        raise
    except Exception as e:  # noqa: BLE001 - a model that cannot load is one clear message
        if os.path.exists(name):
            raise UsageError(f"The {what} '{spec}' cannot be loaded from that folder ({hub.brief(e)}). "
                             "Give a folder written by save_pretrained with the model and its processor.") from e
        raise hub.unavailable(f"The {what} '{spec}'", e) from e


@functools.lru_cache(maxsize=8)
def load_encoder(spec: str = "auto", device: str | None = None) -> DualEncoder:
    """The dual encoder named by `spec` (loaded once per process)."""
    return _load(ENCODERS, resolve_encoder(spec), device, "model")


def caption_images(images: list[Image.Image], spec: str = "auto", batch_size: int = 32) -> list[str]:
    """A caption for each image by the captioner `spec` (`none`: empty captions), in batches."""
    if spec == "none" or not images:
        return [""] * len(images)
    model = load_captioner(spec)
    return [c for lo in range(0, len(images), batch_size) for c in model.caption(images[lo:lo + batch_size])]


@functools.lru_cache(maxsize=4)
def load_captioner(spec: str = "auto", device: str | None = None) -> Captioner:
    """The captioner named by `spec` (loaded once per process)."""
    return _load(CAPTIONERS, resolve_captioner(spec), device, "captioner")
