"""CLIP dual encoders from open_clip and from transformers."""
from __future__ import annotations

import torch
from PIL import Image

from ..util import default_device
from . import DualEncoder, normalize


class OpenClipEncoder(DualEncoder):
    """`open_clip:<arch>/<pretrained>`, e.g. `open_clip:ViT-B-32/openai`."""

    def __init__(self, name: str, device: str | None = None):
        import open_clip

        arch, _, pretrained = name.partition("/")
        self.spec = f"open_clip:{name}"
        self.device = device or default_device()
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=pretrained or None, device=self.device)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.dim = self.model.text_projection.shape[1] if hasattr(self.model, "text_projection") \
            else int(self.encode_texts(["x"]).shape[1])

    @torch.inference_mode()
    def encode_images(self, images: list[Image.Image]):
        batch = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        return normalize(self.model.encode_image(batch).float().cpu().numpy())

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
        self.dim = self.model.config.projection_dim

    @torch.inference_mode()
    def encode_images(self, images: list[Image.Image]):
        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        return normalize(self.model.get_image_features(**inputs).float().cpu().numpy())

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]):
        inputs = self.processor(text=texts, return_tensors="pt", padding=True, truncation=True).to(self.device)
        return normalize(self.model.get_text_features(**inputs).float().cpu().numpy())
