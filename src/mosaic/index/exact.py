"""Exact search: one matrix product and a top-k, over fp32, fp16, int8 or int4 storage."""
from __future__ import annotations

import numpy as np
import torch

PRECISIONS = ("fp32", "fp16", "int8", "int4")


def quantize(x: np.ndarray, precision: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes and per-row scales for `precision` (scales are None for float storage).

    int8 and int4 are symmetric per-row: x ~= codes * scale, with codes in [-127, 127] or [-7, 7];
    int4 packs two codes per byte (low nibble first), so it needs dim/2 bytes a row."""
    x = np.asarray(x, np.float32)
    if precision == "fp32":
        return x, None
    if precision == "fp16":
        return x.astype(np.float16), None
    levels = {"int8": 127, "int4": 7}.get(precision)
    if levels is None:
        raise ValueError(f"Unknown precision '{precision}'. Use one of {', '.join(PRECISIONS)}.")
    scale = np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-12) / levels
    codes = np.clip(np.rint(x / scale), -levels, levels).astype(np.int8)
    if precision == "int4":
        if codes.shape[1] % 2:
            codes = np.pad(codes, ((0, 0), (0, 1)))
        nib = (codes & 0x0F).astype(np.uint8)
        codes = (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)
    return codes, scale.astype(np.float32)


def _unpack_int4(packed: torch.Tensor, dim: int) -> torch.Tensor:
    low = (packed & 0x0F).to(torch.int8)
    high = (packed >> 4).to(torch.int8)
    both = torch.stack([low, high], dim=-1).flatten(-2)[..., :dim]
    return torch.where(both > 7, both - 16, both)  # two's complement nibbles


class ExactIndex:
    """Brute-force cosine search over quantized storage, chunked so memory stays bounded."""

    def __init__(self, vectors: np.ndarray, precision: str = "fp32", device: str | None = None,
                 chunk: int = 262_144):
        self.dim = vectors.shape[1]
        self.precision = precision
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        codes, scale = quantize(vectors, precision)
        self.codes = torch.tensor(codes, device=self.device)  # a copy: storage may be a read-only memmap
        self.scale = None if scale is None else torch.from_numpy(scale[:, 0]).to(self.device)
        self.chunk = chunk
        # fp16 products on the GPU; on the CPU fp32 arithmetic is faster than emulated fp16.
        self.compute_dtype = torch.float16 if self.device.startswith("cuda") else torch.float32

    def __len__(self) -> int:
        return self.codes.shape[0]

    @property
    def nbytes(self) -> int:
        return self.codes.numel() * self.codes.element_size() + (0 if self.scale is None else self.scale.numel() * 4)

    def _dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        if self.precision == "int4":
            codes = _unpack_int4(codes, self.dim)
        return codes.to(self.compute_dtype)

    @torch.inference_mode()
    def scores(self, queries: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Cosine scores of every query against every vector (or only `rows`): (queries, n)."""
        q = torch.tensor(np.asarray(queries, np.float32), device=self.device).to(self.compute_dtype)
        selected = None if rows is None else torch.as_tensor(rows, device=self.device)
        n = len(self) if rows is None else len(rows)
        parts = []
        for lo in range(0, n, self.chunk):
            at = slice(lo, lo + self.chunk) if selected is None else selected[lo:lo + self.chunk]
            s = (q @ self._dequantize(self.codes[at]).T).float()
            parts.append(s if self.scale is None else s * self.scale[at])
        return torch.cat(parts, dim=1).cpu().numpy() if parts else np.zeros((len(q), 0), np.float32)

    def search(self, queries: np.ndarray, k: int, rows: np.ndarray | None = None):
        """Top-k (scores, ids) per query; ids are collection rows, also when `rows` restricts."""
        s = torch.from_numpy(self.scores(queries, rows))
        k = min(k, s.shape[1])
        top = torch.topk(s, k, dim=1)
        ids = top.indices.numpy()
        return top.values.numpy(), ids if rows is None else np.asarray(rows)[ids]
