"""Mosaic: multimodal search over image collections."""

__version__ = "0.1.0"
