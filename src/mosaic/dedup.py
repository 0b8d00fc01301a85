"""Duplicates in a collection, found when it is built or updated and kept in duplicates.json.

- exact: items whose image bytes are the same (the content hash of their fingerprints);
- near: the same picture resized, re-encoded or lightly edited: a difference hash (dHash, 64
  bits of the brightness gradient of a 9x8 grey thumbnail) within `NEAR_BITS` bits. A perceptual
  hash, not the embedding: embeddings place different photos of one kind of thing as close as
  copies of one photo (bench/dedup.py measures both).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from PIL import Image

NEAR_BITS = 8  # bench/dedup.py: the largest with no false pair among 1,000 Flickr8k photos


def dhash(image: Image.Image) -> int:
    """The 64-bit difference hash of an image, as a signed int64 (how Parquet stores it)."""
    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int(np.packbits(bits).view(">i8")[0])


def near_pairs(hashes: list[int], bits: int = NEAR_BITS, block: int = 2048) -> list[tuple[int, int]]:
    """The pairs (i < j) of positions whose hashes differ in at most `bits` bits: every pair is
    compared, a block of rows at a time (n^2 / 2 XORs and bit counts: a second for 20k items)."""
    h = np.asarray(hashes, np.int64).view(np.uint64)
    pairs = []
    for lo in range(0, len(h), block):
        close = np.bitwise_count(h[lo:lo + block, None] ^ h[None, :]) <= bits
        i, j = np.nonzero(close)
        keep = lo + i < j
        pairs += zip((lo + i[keep]).tolist(), j[keep].tolist())
    return pairs


def _components(n: int, pairs) -> list[list[int]]:
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    for a, b in pairs:
        parent[root(a)] = root(b)
    groups = defaultdict(list)
    for i in range(n):
        groups[root(i)].append(i)
    return [g for g in groups.values() if len(g) > 1]


def group_of(duplicates: dict, ids: list[str]) -> dict[int, int]:
    """Each duplicated item's row -> its group number, exact and near duplicates together."""
    row = {item: r for r, item in enumerate(ids)}
    pairs = [(row[g[0]], row[other]) for g in duplicates["exact"] + duplicates["near"] for other in g[1:]]
    return {r: n for n, group in enumerate(_components(len(ids), pairs)) for r in group}


def find(ids: list[str], contents: list[str], hashes: list[int]) -> dict:
    """{"exact": groups of ids with the same bytes, "near": groups of ids that are near copies of
    each other but not all the same bytes}, each group in collection order."""
    by_content = defaultdict(list)
    for i, c in enumerate(contents):
        if c is not None:  # None: kept before fingerprints were
            by_content[c].append(i)
    exact = [g for g in by_content.values() if len(g) > 1]
    hashed = [i for i, h in enumerate(hashes) if h is not None]  # None: kept before hashes were
    pairs = [(hashed[a], hashed[b]) for a, b in near_pairs([hashes[i] for i in hashed])]
    near = [g for g in _components(len(ids), pairs) if len({contents[i] for i in g}) > 1]
    return {"exact": [[ids[i] for i in g] for g in exact], "near": [[ids[i] for i in g] for g in near]}
