"""CLIP dual encoders from open_clip and from transformers."""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from ..errors import UsageError
from ..util import default_device
from . import DualEncoder, normalize, processor_side

RANDOM = "random"  # the pretrained tag that asks for random weights


def open_clip_weights(name: str) -> tuple[str, str | None]:
    """(architecture, pretrained tag or checkpoint file, or None for random weights) of an
    `open_clip:` spec's name; UsageError for a missing or unknown tag or an unknown architecture."""
    arch, _, tag = name.partition("/")
    if not tag:  # checked before importing open_clip (slow to import), so the refusal is quick
        raise UsageError(f"open_clip:{arch} names no pretrained weights, so it would have random weights. "
                         f"Name them as open_clip:{arch}/<tag> (e.g. open_clip:ViT-B-32/openai; "
                         f"open_clip.list_pretrained() lists them), or write open_clip:{arch}/{RANDOM} for random weights.")
    import open_clip

    if arch not in open_clip.list_models():
        raise UsageError(f"Unknown open_clip architecture '{arch}'. Use one of open_clip.list_models(), "
                         "e.g. open_clip:ViT-B-32/openai.")
    if tag == RANDOM:
        return arch, None
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags and not os.path.isfile(tag):
        raise UsageError(f"open_clip:{arch} has no pretrained weights '{tag}'. Use one of: "
                         f"{', '.join(tags[:8]) or 'none'}{' ...' if len(tags) > 8 else ''}, or a checkpoint file.")
    return arch, tag


class OpenClipEncoder(DualEncoder):
    """`open_clip:<arch>/<pretrained>`, e.g. `open_clip:ViT-B-32/openai` (`<arch>/random`: random weights)."""

    def __init__(self, name: str, device: str | None = None):
        arch, pretrained = open_clip_weights(name)
        import open_clip

        self.spec = f"open_clip:{name}"
        self.device = device or default_device()
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=pretrained, device=self.device)
        self.model.eval()
        steps = self.preprocess.transforms  # those before its tensor (resize, crop) are `prepare`'s
        cut = next((i for i, step in enumerate(steps) if type(step).__name__.endswith("ToTensor")), 0)
        self.before_tensor = steps[:cut]
        side = getattr(self.model.visual, "image_size", None)  # None: no draft decoding for it
        self.image_side = min(side) if isinstance(side, (tuple, list)) else side
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.dim = self.model.text_projection.shape[1] if hasattr(self.model, "text_projection") \
            else int(self.encode_texts(["x"]).shape[1])

    def prepare(self, image: Image.Image) -> Image.Image:
        """The preprocessing's steps before its tensor (resize, crop), or the image itself where
        there is no such step: repeated, they leave it as it is."""
        for step in self.before_tensor:
            image = step(image)
        return image

    @torch.inference_mode()
    def encode_images(self, images: list):
        batch = torch.stack([self.preprocess(im) for im in images])
        return normalize(self.model.encode_image(batch.to(self.device)).float().cpu().numpy())

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]):
        return normalize(self.model.encode_text(self.tokenizer(texts).to(self.device)).float().cpu().numpy())


class HFClipEncoder(DualEncoder):
    """`hf:<repo>`: a transformers CLIPModel, e.g. `hf:openai/clip-vit-base-patch32`."""

    def __init__(self, repo: str, device: str | None = None):
        from transformers import CLIPModel, CLIPProcessor

        self.spec = f"hf:{repo}"
        self.device = device or default_device()
        self.model = CLIPModel.from_pretrained(repo).to(self.device).eval()
        self.processor = CLIPProcessor.from_pretrained(repo)
        self.image_side = processor_side(self.processor.image_processor)
        self.dim = self.model.config.projection_dim
        self.max_length = self.model.config.text_config.max_position_embeddings

    @torch.inference_mode()
    def encode_images(self, images: list[Image.Image]):
        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        return normalize(_features(self.model.get_image_features(**inputs)))

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]):
        inputs = self.processor(text=texts, return_tensors="pt", padding=True, truncation=True,
                                max_length=self.max_length).to(self.device)
        return normalize(_features(self.model.get_text_features(**inputs)))


def _features(out) -> np.ndarray:
    """Projected features as float32 numpy: transformers 5 returns a model output whose pooled
    output is the projection, transformers 4 the tensor itself."""
    tensor = out if isinstance(out, torch.Tensor) else out.pooler_output
    return tensor.float().cpu().numpy()
