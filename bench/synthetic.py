"""Synthetic vectors with the structure of real embeddings, shared by the search benchmarks;
their statistics beside real ones'; recall@k.

Real embeddings are not spread evenly over the sphere: they lie near a low-dimensional manifold,
in topics of very uneven sizes, and share a common direction. `clustered` makes them so: points of
a `latent`-dimensional space (cluster centres plus a within-cluster spread), cluster sizes drawn
from a Zipf law, mapped into `dim` dimensions by one fixed random linear map, plus a shared offset
and a little isotropic noise, then L2-normalised. `statistics` measures what tells such data from
near-equidistant clusters: nearest-neighbour cosines, the mean cosine of random pairs, and the
number of principal components holding 90% of the variance (an intrinsic dimension)."""
import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def clustered(n: int, queries: int, dim: int = 512, latent: int = 32, clusters: int = 2000, seed: int = 0,
              chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """`n` unit vectors and `queries` more drawn the same way (held out: none of them is in the base)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, latent), dtype=np.float32)
    sizes = 1 / np.arange(1, clusters + 1) ** 1.1  # Zipf: a few big topics, a long tail of small ones
    mapping = rng.standard_normal((latent, dim), dtype=np.float32) / np.sqrt(latent)
    offset = rng.standard_normal(dim, dtype=np.float32) / np.sqrt(dim)
    out = np.empty((n + queries, dim), np.float32)
    for lo in range(0, n + queries, chunk):
        m = min(chunk, n + queries - lo)
        z = centres[rng.choice(clusters, m, p=sizes / sizes.sum())] + 0.6 * rng.standard_normal((m, latent), dtype=np.float32)
        x = z @ mapping + 1.2 * offset + 0.25 * rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
        out[lo:lo + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out[:n], out[n:].copy()  # a copy: the caller can free the vectors


def statistics(vectors: np.ndarray, queries: np.ndarray, seed: int = 0) -> dict:
    """Cosine of each query to its nearest and 10th nearest vector (percentiles), of random pairs
    (mean), and the principal components holding 90% of the variance of up to 20k vectors."""
    rng = np.random.default_rng(seed)
    s = queries @ vectors.T
    top = -np.sort(-s, axis=1)[:, :10]
    pairs = rng.integers(0, len(vectors), (2, 20_000))
    sample = vectors[rng.choice(len(vectors), min(20_000, len(vectors)), replace=False)]
    variance = np.linalg.svd(sample - sample.mean(0), compute_uv=False) ** 2
    share = np.cumsum(variance) / variance.sum()
    return {"nn1_cosine_p10_p50_p90": [round(float(v), 3) for v in np.percentile(top[:, 0], [10, 50, 90])],
            "nn10_cosine_p50": round(float(np.median(top[:, 9])), 3),
            "random_pair_cosine_mean": round(float(np.einsum("ij,ij->i", vectors[pairs[0]], vectors[pairs[1]]).mean()), 3),
            "components_for_90pct_variance": int(np.searchsorted(share, 0.9) + 1)}


def sample_texts() -> list[str]:
    """Every distinct text of the sample data: Flickr8k captions, Humicroedit headlines as
    written and as edited, CIRR modification captions."""
    texts = [r["caption"] for r in csv.DictReader(open(DATA / "flickr8k-1k" / "captions.txt", encoding="utf-8"))]
    for name in ("train.csv", "dev.csv", "train_funlines.csv"):
        for r in csv.DictReader(open(DATA / "humicroedit" / name, encoding="utf-8")):
            before, rest = r["original"].split("<", 1)
            word, after = rest.split("/>", 1)
            texts += [before + word + after, before + r["edit"] + after]
    texts += [t["caption"] for t in json.loads((DATA / "cirr-dev-sample" / "captions" / "cap.rc2.val.json").read_text())]
    return list(dict.fromkeys(texts))


def real_embeddings(cache: Path) -> np.ndarray:
    """The offline `lite` model's embeddings of the sample texts and Flickr8k photos (shuffled),
    computed once and kept in `cache`."""
    if cache.exists():
        return np.load(cache)
    from mosaic.models import load_encoder

    encoder = load_encoder("lite", device="cpu")
    photos = sorted((DATA / "flickr8k-1k" / "images").glob("*.jpg"))
    images = np.concatenate([encoder.encode_images([Image.open(p).convert("RGB") for p in photos[lo:lo + 64]])
                             for lo in range(0, len(photos), 64)])
    vectors = np.concatenate([encoder.encode_texts(sample_texts()), images]).astype(np.float32)
    vectors = vectors[np.random.default_rng(0).permutation(len(vectors))]
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache.with_suffix(".tmp.npy"), vectors)
    cache.with_suffix(".tmp.npy").replace(cache)
    return vectors


def recall(ids: np.ndarray, reference: np.ndarray) -> float:
    """Mean share of each reference top-k found in the returned top-k."""
    k = reference.shape[1]
    return float(np.mean([len(set(a[:k]) & set(b)) / k for a, b in zip(ids, reference)]))
