"""Synthetic clustered unit vectors shared by the search benchmarks, and recall@k."""
import numpy as np


def clustered(n: int, queries: int, dim: int = 512, clusters: int = 1000, seed: int = 0,
              chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """`n` L2-normalised vectors around `clusters` random centres, and `queries` more drawn the
    same way (so a query's neighbours are in its cluster, as an image's are among similar images):
    a point's cosine to its centre is about 0.7, to another point of its cluster about 0.5."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n + queries, dim), np.float32)
    for lo in range(0, n + queries, chunk):
        m = min(chunk, n + queries - lo)
        x = centres[rng.integers(0, clusters, m)] + rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
        out[lo:lo + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out[:n], out[n:].copy()  # a copy: the caller can free the vectors


def recall(ids: np.ndarray, reference: np.ndarray) -> float:
    """Mean share of each reference top-k found in the returned top-k."""
    k = reference.shape[1]
    return float(np.mean([len(set(a[:k]) & set(b)) / k for a, b in zip(ids, reference)]))
