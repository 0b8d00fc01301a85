"""Approximate search with an HNSW graph (FAISS `IndexHNSWFlat`): built once, memory-mapped from disk."""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

CONNECTIVITY = 16  # M: edges per node
EXPANSION_ADD = 200  # efConstruction
EXPANSION_SEARCH = 32  # efSearch (bench/ann.py: recall@10 >= 0.95 on both sets); a search of k > 32 explores k


def build_hnsw(vectors: np.ndarray, path: Path, connectivity: int = CONNECTIVITY) -> None:
    """Build an inner-product HNSW graph over `vectors` (unit rows) and save it to `path` (atomically).
    On one thread: the same graph, hence the same results, every build."""
    index = faiss.IndexHNSWFlat(vectors.shape[1], connectivity, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EXPANSION_ADD
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for lo in range(0, len(vectors), 65536):  # memory holds the graph and one block of a memory-mapped input
            index.add(np.ascontiguousarray(vectors[lo:lo + 65536], np.float32))
    finally:
        faiss.omp_set_num_threads(threads)
    tmp = path.with_suffix(".tmp")
    faiss.write_index(index, str(tmp))
    tmp.replace(path)


class HnswIndex:
    """HNSW search returning cosine scores (inner products of unit vectors)."""

    def __init__(self, path: Path, expansion_search: int = EXPANSION_SEARCH):
        self.index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)  # memory-mapped
        self.expansion_search = expansion_search

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int, rows: np.ndarray | None = None):
        if rows is not None:
            raise ValueError("HNSW cannot restrict to rows; filtered searches use the exact index.")
        queries = np.asarray(queries, np.float32).reshape(-1, self.index.d)
        k = min(k, len(self))
        if not len(queries) or not k:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        params = faiss.SearchParametersHNSW(efSearch=max(self.expansion_search, k))
        scores, ids = self.index.search(queries, k, params=params)
        n = int((ids >= 0).sum(1).min())  # a query that found fewer than k has -1 past them
        return scores[:, :n], ids[:, :n].astype(np.int64)
