"""Indexes over consecutive row ranges of one collection, searched as one.

For collections larger than one machine's memory: each shard holds the exact index of its rows,
here or in a Ray actor anywhere on a cluster (which reads its rows from the collection's
memory-mapped file, so the collection's folder must be visible to every node). A query goes to
every shard at once; their top-k lists are merged by score.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .exact import ExactIndex


def _exact_shard(path: str, lo: int, hi: int, precision: str) -> ExactIndex:
    return ExactIndex(np.load(path, mmap_mode="r")[lo:hi], precision)


class ShardedIndex:
    """Exact search over `shard_rows`-row slices of a .npy file of vectors, merged at query time;
    with `ray=True` each slice lives in a Ray actor (on the cluster at $RAY_ADDRESS, or local)."""

    def __init__(self, path: str | Path, shard_rows: int, precision: str = "fp32", ray: bool = False):
        n = np.load(path, mmap_mode="r").shape[0]
        self.offsets = list(range(0, n, shard_rows))
        self.n = n
        spans = [(str(path), lo, min(lo + shard_rows, n), precision) for lo in self.offsets]
        if ray:
            from ..cluster import ray_session

            ray_ = ray_session()
            remote = ray_.remote(_ShardActor)
            self.shards = [remote.remote(*span) for span in spans]
            self._gather = lambda calls: ray_.get([getattr(s, m).remote(*a) for s, m, a in calls])
        else:
            self.shards = [_exact_shard(*span) for span in spans]
            self._gather = lambda calls: [getattr(s, m)(*a) for s, m, a in calls]

    def __len__(self) -> int:
        return self.n

    def _spans(self, rows: np.ndarray | None):
        """(shard, first row, positions in `rows` or None, the shard's own rows or None) for each
        shard with rows to search."""
        bounds = self.offsets + [self.n]
        for shard, lo, hi in zip(self.shards, bounds, bounds[1:]):
            if rows is None:
                yield shard, lo, None, None
                continue
            at = np.flatnonzero((rows >= lo) & (rows < hi))
            if len(at):
                yield shard, lo, at, rows[at] - lo

    def scores(self, queries: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Cosine scores of every query against every vector (or only `rows`): (queries, n)."""
        rows = None if rows is None else np.asarray(rows)
        spans = list(self._spans(rows))
        found = self._gather([(shard, "scores", (queries, local)) for shard, _, _, local in spans])
        if rows is None:
            return np.concatenate(found, 1) if found else np.zeros((len(queries), 0), np.float32)
        out = np.zeros((len(queries), len(rows)), np.float32)
        for (_, _, at, _), s in zip(spans, found):
            out[:, at] = s
        return out

    def search(self, queries: np.ndarray, k: int, rows: np.ndarray | None = None):
        """Top-k (scores, ids) per query over all shards; ids are rows of the whole collection."""
        queries = np.asarray(queries, np.float32)
        spans = list(self._spans(None if rows is None else np.asarray(rows)))
        if not spans:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        found = self._gather([(shard, "search", (queries, k, local)) for shard, _, _, local in spans])
        starts = [lo for _, lo, _, _ in spans]
        scores = np.concatenate([s for s, _ in found], 1)
        ids = np.concatenate([i + lo for (_, i), lo in zip(found, starts)], 1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


class _ShardActor:
    """One shard's exact index, held by a Ray actor."""

    def __init__(self, path: str, lo: int, hi: int, precision: str):
        self.index = _exact_shard(path, lo, hi, precision)

    def search(self, queries: np.ndarray, k: int, rows: np.ndarray | None):
        return self.index.search(queries, k, rows)

    def scores(self, queries: np.ndarray, rows: np.ndarray | None):
        return self.index.scores(queries, rows)
