"""Exact search: a matrix product and a top-k per chunk of rows, over fp32, fp16, int8 or int4 storage.

On the CPU, int8 and int4 codes are multiplied as integers (int8 x int8 -> int32, with the query
quantized to int8 as well), so they read 4x / 8x fewer bytes than fp32 and run faster than it. On
CUDA every precision is computed in fp16; storage larger than half the GPU's free memory stays in
host memory and is copied to the GPU one chunk at a time.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from ..errors import UsageError
from ..util import default_device

PRECISIONS = ("fp32", "fp16", "int8", "int4")
LEVELS = {"int8": 127, "int4": 7}
# Bytes of temporaries per chunk (scores, unpacked or converted codes): under glibc's mmap
# threshold, so each chunk reuses the last one's buffers instead of faulting in fresh pages.
TEMP_BYTES = 1 << 24


def quantize(x: np.ndarray, precision: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes and per-row scales for `precision` (scales are None for float storage).

    int8 and int4 are symmetric per-row: x ~= codes * scale, with codes in [-127, 127] or [-7, 7].
    int4 packs two codes per byte: the code of dimension j, plus 8, in the low nibble and the code
    of dimension j + dim/2 in the high one, so the byte read as int8 is (low + 8) + 16 * high: an
    arithmetic shift recovers the high codes, and few-query products need no unpacking (see
    `_products`). dim/2 bytes a row. Rows are quantized a block at a time, so memory holds the
    codes and one block of temporaries, also for a memory-mapped input."""
    if precision == "fp32":
        return np.asarray(x, np.float32), None
    if precision == "fp16":
        return np.asarray(x, np.float16), None
    levels = LEVELS.get(precision)
    if levels is None:
        raise UsageError(f"Unknown precision '{precision}'. Use one of {', '.join(PRECISIONS)}.")
    n, dim = x.shape
    half = (dim + 1) // 2
    codes = np.empty((n, dim if precision == "int8" else half), np.int8)
    scale = np.empty((n, 1), np.float32)
    for lo in range(0, n, 65536):
        block = np.asarray(x[lo:lo + 65536], np.float32)
        s = np.maximum(np.abs(block).max(axis=1, keepdims=True), 1e-12) / levels
        c = np.clip(np.rint(block / s), -levels, levels).astype(np.int8)
        if precision == "int4":
            c = np.pad(c, ((0, 0), (0, 2 * half - dim)))
            c = (c[:, :half] + 8 + 16 * c[:, half:].astype(np.int16)).astype(np.int8)
        codes[lo:lo + 65536], scale[lo:lo + 65536] = c, s
    return codes, scale


class ExactIndex:
    """Brute-force cosine search over quantized storage, chunked so memory stays bounded.

    With int8/int4 storage, the best `rerank` x k candidates are rescored against `vectors` as
    given (a collection's memory-mapped fp32 file stays on disk: only the candidates' rows are
    read), which brings the top-k back to fp32's whenever it is among the candidates."""

    def __init__(self, vectors: np.ndarray, precision: str = "fp32", device: str | None = None,
                 chunk: int = 262_144, rerank: int = 4):
        self.dim = vectors.shape[1]
        self.precision = precision
        self.device = device or default_device()
        self.cuda = self.device.startswith("cuda")
        codes, scale = quantize(vectors, precision)
        codes = _shared(codes)  # fp32 storage is the caller's array: a collection's file stays mapped
        self.resident = not self.cuda or codes.nbytes < torch.cuda.mem_get_info(self.device)[0] / 2
        self.codes = codes.to(self.device) if self.resident else codes
        self.scale = None if scale is None else torch.from_numpy(scale[:, 0]).to(self.device)
        self.chunk = chunk
        self.vectors = vectors if precision in LEVELS and rerank > 1 else None
        self.rerank = rerank

    def __len__(self) -> int:
        return self.codes.shape[0]

    @property
    def nbytes(self) -> int:
        """Memory held by the index (codes and scales; not the memory-mapped vectors reranking reads)."""
        return self.codes.numel() * self.codes.element_size() + (0 if self.scale is None else self.scale.numel() * 4)

    def _query(self, queries: np.ndarray):
        """The queries as the chunk products want them, and each query's scale (None when 1):
        fp16 on CUDA, int8 codes for integer storage on the CPU, else fp32."""
        q = torch.tensor(np.asarray(queries, np.float32), device=self.device)
        if self.cuda:
            return q.half(), None
        if self.precision not in LEVELS:
            return q, None
        if self.precision == "int4" and self.dim % 2:
            q = torch.nn.functional.pad(q, (0, 1))
        q_scale = q.abs().amax(1).clamp_min(1e-12) / 127
        return torch.round(q / q_scale[:, None]).to(torch.int8), q_scale

    def _products(self, q, codes: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        """Scores (queries, rows) of the prepared queries against a chunk of codes with their row
        scales, in fp32, still to be multiplied by the query's scale (which leaves its ranking)."""
        codes = codes.to(self.device, non_blocking=True)
        if self.precision == "int4":
            high = codes >> 4  # arithmetic: the signed high codes; the low ones are codes - 16 * high - 8
            if self.cuda or len(q) >= 16:  # unpacking costs little next to the products of many queries
                codes = torch.cat([codes - (high << 4) - 8, high], 1)
            else:  # q_lo.low + q_hi.high = q_lo.codes + q_hi.high - 16 q_lo.high - 8 sum(q_lo): no unpacking
                half = high.shape[1]
                q_lo = q[:, :half]
                s = torch._int_mm(q_lo, codes.T)
                both = torch._int_mm(torch.cat([q[:, half:], q_lo]), high.T)
                s.add_(both[:len(q)]).sub_(both[len(q):], alpha=16).sub_(8 * q_lo.sum(1, dtype=torch.int32)[:, None])
                return s.float().mul_(scale)
        if self.cuda:
            s = (q @ codes[:, :self.dim].half().T).float()
        elif self.precision in LEVELS:
            return torch._int_mm(q, codes.T).float().mul_(scale)
        else:
            s = q @ codes.float().T if self.precision == "fp16" else q @ codes.T
        return s if scale is None else s * scale

    def _chunks(self, queries: np.ndarray, rows: np.ndarray | None):
        """(scores before the query scale, first position) for successive chunks of the rows
        searched, and the query scales; positions index `rows` (or the collection)."""
        q, q_scale = self._query(queries)
        selected = None if rows is None else torch.as_tensor(np.ascontiguousarray(rows), device=self.codes.device)
        n = len(self) if rows is None else len(rows)
        if self.cuda:
            step = self.chunk
        else:  # scores, and converted codes or int4's unpacked halves
            per_row = 4 * len(queries) + {"fp16": 4 * self.dim, "int4": 2 * self.dim}.get(self.precision, 0)
            step = max(1024, min(self.chunk, TEMP_BYTES // max(per_row, 1)) // 1024 * 1024)

        def chunks():
            for lo in range(0, n, step):
                at = slice(lo, lo + step) if selected is None else selected[lo:lo + step]
                scale = None if self.scale is None else self.scale[at if selected is None else at.to(self.device)]
                yield self._products(q, self.codes[at], scale), lo
        return chunks(), q_scale

    @torch.inference_mode()
    def scores(self, queries: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Cosine scores of every query against every vector (or only `rows`): (queries, n)."""
        chunks, q_scale = self._chunks(queries, rows)
        parts = [s.cpu() for s, _ in chunks]
        if not parts:
            return np.zeros((len(queries), 0), np.float32)
        s = torch.cat(parts, dim=1)
        return (s if q_scale is None else s * q_scale.cpu()[:, None]).numpy()

    @torch.inference_mode()
    def search(self, queries: np.ndarray, k: int, rows: np.ndarray | None = None):
        """Top-k (scores, ids) per query; ids are collection rows, also when `rows` restricts.
        The best candidates so far are merged with each chunk's, so memory holds one chunk of
        scores at a time."""
        queries = np.asarray(queries, np.float32)
        if not len(queries) or not len(self) or (rows is not None and not len(rows)):
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        wanted = k * self.rerank if self.vectors is not None else k
        chunks, q_scale = self._chunks(queries, rows)
        values = indices = None
        for s, lo in chunks:  # the best so far merged with each chunk's best
            v, i = _topk(s, wanted)
            if values is not None:
                v, at = _topk(torch.cat([values, v], 1), wanted)
                i = torch.gather(torch.cat([indices, i + lo], 1), 1, at)
            else:
                i = i + lo
            values, indices = v, i
        ids = indices.cpu().numpy()
        ids = ids if rows is None else np.asarray(rows)[ids]
        if self.vectors is not None:
            return self._rerank(queries, ids, k)
        values = values if q_scale is None else values * q_scale[:, None]
        return values.float().cpu().numpy(), ids

    def _rerank(self, queries: np.ndarray, ids: np.ndarray, k: int):
        """The best k of each query's candidates, rescored against the full-precision vectors."""
        s = np.empty(ids.shape, np.float32)
        for lo in range(0, len(ids), 256):  # a block of queries' candidate vectors at a time
            block = ids[lo:lo + 256]
            unique, inverse = np.unique(block, return_inverse=True)
            vectors = np.asarray(self.vectors[unique], np.float32)[inverse.reshape(block.shape)]
            s[lo:lo + 256] = np.einsum("qcd,qd->qc", vectors, queries[lo:lo + 256])
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(s, order, 1), np.take_along_axis(ids, order, 1)


def _shared(a: np.ndarray) -> torch.Tensor:
    """A tensor over `a`'s memory, not a copy. A read-only memory map stays a read-only memory map:
    nothing here writes to storage, so torch's warning about writes to it does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(a))


def _topk(s: torch.Tensor, k: int, block: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk along rows, best first, in two stages when the rows are long: the k blocks of
    `block` columns with the highest maxima hold the k best values (each block's maximum that
    reaches the k-th best value is itself one of the k best), so only they are ranked."""
    n = s.shape[1]
    k = min(k, n)
    if n < 4 * k * block or n % block:
        return torch.topk(s, k, dim=1)
    blocks = s.view(s.shape[0], -1, block)
    best = torch.topk(blocks.amax(2), k, dim=1).indices
    columns = (best[:, :, None] * block + torch.arange(block, device=s.device)).flatten(1)
    values, at = torch.topk(torch.gather(s, 1, columns), k, dim=1)
    return values, torch.gather(columns, 1, at)
