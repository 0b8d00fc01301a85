"""BLIP captioning through transformers."""
from __future__ import annotations

import torch
from PIL import Image

from ..util import default_device
from . import Captioner, processor_side


class BlipCaptioner(Captioner):
    """`blip:<repo>`: a transformers BLIP captioning model (greedy decoding, short captions)."""

    def __init__(self, repo: str, device: str | None = None, max_new_tokens: int = 30):
        from transformers import BlipForConditionalGeneration, BlipProcessor

        self.spec = f"blip:{repo}"
        self.device = device or default_device()
        self.processor = BlipProcessor.from_pretrained(repo)
        self.image_side = processor_side(self.processor.image_processor)
        self.model = BlipForConditionalGeneration.from_pretrained(repo).to(self.device).eval()
        self.max_new_tokens = max_new_tokens

    @torch.inference_mode()
    def caption(self, images: list[Image.Image]) -> list[str]:
        inputs = self.processor(images=images, return_tensors="pt").to(self.device)
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
        return [t.strip() for t in self.processor.batch_decode(out, skip_special_tokens=True)]
