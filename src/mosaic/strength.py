"""Match strength: a hit's score as a number from 0 to 100 that means the same in every mode.

Raw scores live on different scales (a cosine similarity near 0.55 for captions, near 1 for
images, a sum of z-scores for omni), so a person cannot compare them or pick one cutoff. The
strength measures a hit against the collection instead: the same query is scored against a
fixed sample of the collection's items (all of them up to `SAMPLE`), and the hit's score is
placed on that distribution: 0 is what an average item of the collection gets (the random
baseline; anything at or below it shows 0) and 100 is `FULL` standard deviations above it.
"""
from __future__ import annotations

import numpy as np

FULL = 4.0  # standard deviations above the collection's mean that make a full-strength match
SAMPLE = 2000  # items of the collection the query is also scored against
NOISE = 25  # strengths below this are within the collection's noise (one sd above its mean)


def reference_rows(n: int, size: int = SAMPLE, seed: int = 0) -> np.ndarray:
    """The rows a collection of `n` items is calibrated on: all of them, or a fixed sample."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def match_strength(scores, reference) -> np.ndarray:
    """`scores` as strengths (ints, 0-100) against `reference`, the same query's scores over the
    calibration rows."""
    scores, reference = np.asarray(scores, np.float64), np.asarray(reference, np.float64)
    if reference.size < 2:
        return np.zeros(scores.shape, int)
    z = (scores - reference.mean()) / max(float(reference.std()), 1e-6)
    return np.clip(np.round(100 * z / FULL), 0, 100).astype(int)
