"""Retrieval quality of a collection's model, measured with its human captions as ground truth."""
from __future__ import annotations

import numpy as np

from .search import SearchService


def text_to_image_recall(service: SearchService, ks: tuple[int, ...] = (1, 5, 10), batch: int = 512) -> dict:
    """Recall@K (in %) of every human caption retrieving its own image among all images,
    scored against image embeddings only (captions of the gallery are not used), plus MRR."""
    c = service.collection
    human = np.flatnonzero(np.asarray(c.captions["kind"].to_pylist()) == "human")
    if not len(human):
        raise ValueError(f"Collection '{c.name}' has no human captions to evaluate with.")
    truth = c.caption_items[human]
    ranks = np.empty(len(human), np.int64)
    for lo in range(0, len(human), batch):
        rows = human[lo:lo + batch]
        scores = service.exact["image"].scores(np.asarray(c.text_emb[rows]))
        own = scores[np.arange(len(rows)), truth[lo:lo + batch]]
        ranks[lo:lo + batch] = (scores > own[:, None]).sum(1)  # 0 = first
    n = len(c)
    out = {"queries": int(len(human)), "images": n, "model": c.manifest["models"]["encoder"]}
    for k in ks:
        out[f"R@{k}"] = round(100 * float((ranks < k).mean()), 2)
        out[f"chance R@{k}"] = round(100 * k / n, 2)
    out["MRR"] = round(float((1 / (ranks + 1)).mean()), 4)
    return out
