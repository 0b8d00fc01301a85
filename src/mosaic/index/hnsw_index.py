"""Approximate search with an HNSW graph (FAISS `IndexHNSWFlat`): built once, memory-mapped from disk.

How widely a search explores (efSearch) is chosen when the graph is built, for that graph: a
sample of SAMPLE vectors is held back while the others are added, and serves as queries from
outside the graph; the smallest of EXPANSIONS whose recall@10 against exact search reaches
TUNED_RECALL (a margin above the 0.95 aimed at, for queries the sample did not see) is stored in
the file, then the sample is added. Bigger or less clustered collections get a wider search. A
search for more neighbours than efSearch (the service's 1,000 candidates) explores that many
instead. Rows keep their ids through an id map."""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from .exact import ExactIndex

CONNECTIVITY = 32  # M: edges per node (bench/ann.py: the fastest at recall@10 0.95, M 16 or 32)
EXPANSION_ADD = 200  # efConstruction
EXPANSIONS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)  # efSearch tried, smallest first
UNTUNED = 32  # efSearch of a graph written before it was tuned (a bare graph, without the id map)
TUNED_RECALL = 0.96
SAMPLE = 500  # held-back vectors that tune efSearch


def build_hnsw(vectors: np.ndarray, path: Path, connectivity: int = CONNECTIVITY) -> None:
    """Build an inner-product HNSW graph over `vectors` (unit rows), with its efSearch tuned, and
    save it to `path` (atomically). On one thread: the same graph every build."""
    graph = faiss.IndexHNSWFlat(vectors.shape[1], connectivity, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = EXPANSION_ADD
    index = faiss.IndexIDMap(graph)
    n = len(vectors)
    held = np.sort(np.random.default_rng(0).choice(n, min(SAMPLE, n // 10), replace=False))
    rest = np.setdiff1d(np.arange(n), held)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        _add(index, vectors, rest)
        graph.hnsw.efSearch = tuned_expansion(index, vectors, held, rest)
        _add(index, vectors, held)
    finally:
        faiss.omp_set_num_threads(threads)
    tmp = path.with_suffix(".tmp")
    faiss.write_index(index, str(tmp))
    tmp.replace(path)


def _add(index, vectors: np.ndarray, rows: np.ndarray) -> None:
    for lo in range(0, len(rows), 65536):  # memory holds the graph and one block of a memory-mapped input
        block = rows[lo:lo + 65536]
        index.add_with_ids(np.ascontiguousarray(vectors[block], np.float32), block.astype(np.int64))


def tuned_expansion(index, vectors: np.ndarray, queries: np.ndarray, rows: np.ndarray, k: int = 10) -> int:
    """The smallest efSearch of EXPANSIONS whose recall@k, for the vectors `queries` against the
    graph of the vectors `rows`, reaches TUNED_RECALL (the first when there are too few to tell).
    A neighbour counts as found when it scores as high as the k-th exact one: of two identical
    rows, either will do."""
    if len(queries) < 10 or len(rows) <= k:
        return EXPANSIONS[0]
    q = np.ascontiguousarray(vectors[queries], np.float32)
    kth = ExactIndex(vectors, device="cpu").search(q, k, rows)[0][:, -1:]
    for ef in EXPANSIONS:
        scores = index.search(q, k, params=faiss.SearchParametersHNSW(efSearch=ef))[0]
        if np.mean(scores >= kth - 1e-5) >= TUNED_RECALL:
            return ef
    return EXPANSIONS[-1]


class HnswIndex:
    """HNSW search returning cosine scores (inner products of unit vectors)."""

    def __init__(self, path: Path):
        self.index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)  # memory-mapped
        tuned = isinstance(self.index, faiss.IndexIDMap)
        self.expansion_search = faiss.downcast_index(self.index.index).hnsw.efSearch if tuned else UNTUNED
        self.params = faiss.SearchParametersHNSW(efSearch=self.expansion_search)  # made once: a single query is ~0.1 ms
        self.size, self.dim = self.index.ntotal, self.index.d

    def __len__(self) -> int:
        return self.size

    def search(self, queries: np.ndarray, k: int, rows: np.ndarray | None = None):
        if rows is not None:
            raise ValueError("HNSW cannot restrict to rows; filtered searches use the exact index.")
        queries = np.asarray(queries, np.float32).reshape(-1, self.dim)
        k = min(k, len(self))
        if not len(queries) or not k:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        params = self.params if k <= self.expansion_search else faiss.SearchParametersHNSW(efSearch=k)
        scores, ids = self.index.search(queries, k, params=params)
        # a query that found fewer than k has -1 past them (checked without a numpy reduction:
        # right after FAISS's vector code one costs ~10 us)
        if min(ids[:, -1].tolist()) < 0:
            n = int((ids >= 0).sum(1).min())
            scores, ids = scores[:, :n], ids[:, :n]
        return scores, ids
