"""Approximate search with an HNSW graph (usearch): built once, memory-mapped from disk."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from usearch.index import Index

CONNECTIVITY = 16  # M: edges per node
EXPANSION_ADD = 200  # efConstruction
EXPANSION_SEARCH = 64  # efSearch; a search of k > efSearch explores k candidates


def build_hnsw(vectors: np.ndarray, path: Path, connectivity: int = CONNECTIVITY) -> None:
    """Build an inner-product HNSW graph over `vectors` (unit rows) and save it to `path` (atomically).
    On one thread: the same graph, hence the same results, every build."""
    index = Index(ndim=vectors.shape[1], metric="ip", dtype="f32", connectivity=connectivity,
                  expansion_add=EXPANSION_ADD)
    for lo in range(0, len(vectors), 65536):  # memory holds the graph and one block of a memory-mapped input
        block = np.asarray(vectors[lo:lo + 65536], np.float32)
        index.add(np.arange(lo, lo + len(block)), block, threads=1)
    tmp = path.with_suffix(".tmp")
    index.save(str(tmp))
    tmp.replace(path)


class HnswIndex:
    """HNSW search returning cosine scores (inner products of unit vectors)."""

    def __init__(self, path: Path, expansion_search: int = EXPANSION_SEARCH):
        self.index = Index.restore(str(path), view=True)  # memory-mapped
        self.index.expansion_search = expansion_search

    def __len__(self) -> int:
        return len(self.index)

    def search(self, queries: np.ndarray, k: int, rows: np.ndarray | None = None):
        if rows is not None:
            raise ValueError("HNSW cannot restrict to rows; filtered searches use the exact index.")
        queries = np.asarray(queries, np.float32).reshape(-1, self.index.ndim)
        if not len(queries) or not len(self):
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        found = self.index.search(queries, min(k, len(self)))
        keys = found.keys.reshape(len(queries), -1)  # one query's matches come back one-dimensional, trimmed
        n = int(np.min(getattr(found, "counts", keys.shape[1])))  # a batch's rows are padded past their counts
        return 1 - found.distances.reshape(keys.shape)[:, :n].astype(np.float32), keys[:, :n].astype(np.int64)
