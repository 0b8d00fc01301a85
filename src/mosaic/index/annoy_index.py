"""Approximate search with Annoy: built once, memory-mapped from disk."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from annoy import AnnoyIndex as _Annoy


def build_annoy(vectors: np.ndarray, path: Path, n_trees: int = 50, seed: int = 0) -> None:
    """Build an angular Annoy index over `vectors` and save it to `path` (atomically)."""
    index = _Annoy(vectors.shape[1], "angular")
    index.set_seed(seed)
    for i, v in enumerate(vectors):
        index.add_item(i, v)
    index.build(n_trees, n_jobs=1)  # one job: the same trees, hence the same results, every build
    tmp = path.with_suffix(".tmp")
    index.save(str(tmp))
    index.unload()
    tmp.replace(path)


class AnnoyIndex:
    """Annoy search returning cosine scores (unit vectors: cos = 1 - d^2 / 2)."""

    def __init__(self, path: Path, dim: int, search_k: int = -1):
        self.index = _Annoy(dim, "angular")
        self.index.load(str(path))  # memory-mapped
        self.search_k = search_k

    def __len__(self) -> int:
        return self.index.get_n_items()

    def search(self, queries: np.ndarray, k: int, rows: np.ndarray | None = None):
        if rows is not None:
            raise ValueError("Annoy cannot restrict to rows; filtered searches use the exact index.")
        scores, ids = [], []
        for q in np.asarray(queries, np.float32):
            i, d = self.index.get_nns_by_vector(q, k, search_k=self.search_k, include_distances=True)
            ids.append(i)
            scores.append(1 - np.square(d) / 2)
        return np.asarray(scores, np.float32), np.asarray(ids, np.int64)
