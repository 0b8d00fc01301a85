"""End-to-end text-query latency through the search service (encode the text, find candidates,
rescore, explain, fetch the hits' metadata) at 10k, 100k and 1M items, with the offline encoder.

The collections are synthetic: clustered vectors of the encoder's size stand for the image, caption
(one per item) and omni embeddings, so one HNSW graph serves all three; each item's caption is
another item's vector, so, as in a real collection, the caption and image candidates differ.
Tag scores are real (the vectors against the encoded tag prompts). The service picks its index as it does for real
collections: exact up to 200k items, the HNSW graphs above. Prints p50/p95 and writes JSON.

    python bench/query_latency.py [--sizes 10000 100000 1000000] [--json bench/results/query_latency.json]
"""
import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from synthetic import clustered

from mosaic.collection import SCHEMA_VERSION
from mosaic.index.hnsw_index import CONNECTIVITY
from mosaic.models import load_encoder
from mosaic.search import SearchService
from mosaic.stages import Vocabulary
from mosaic.util import write_json

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["a dog running on the beach", "two children playing in the snow", "a man riding a bicycle",
           "a red car parked on a city street", "people sitting at a cafe", "a black and white cat",
           "a surfer riding a big wave", "a girl in a pink dress", "a crowd watching a concert",
           "a boat on a calm lake at sunset", "an old man with a beard", "a brown horse in a field",
           "kids jumping into a swimming pool", "a climber on a rock face", "a bird flying over water",
           "a woman holding an umbrella in the rain", "a football player tackling another",
           "a dog catching a frisbee", "a skier going down a slope", "a street market with fruit"]
WORDS = "dog cat man woman child beach street park snow water grass red blue running sitting playing".split()


def write_graphs(folder: Path, vectors: np.ndarray) -> None:
    """The HNSW graph of the vectors, as index/image.hnsw, linked as the caption and omni graphs
    (the three spaces hold the same vectors). Built on all threads with efConstruction 32 rather
    than the build's 200, to spare time: the same size and layout, a little lower recall."""
    index = faiss.IndexHNSWFlat(vectors.shape[1], CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 32
    index.add(vectors)
    (folder / "index").mkdir()
    faiss.write_index(index, str(folder / "index" / "image.hnsw"))
    for name in ("caption", "omni"):
        os.link(folder / "index" / "image.hnsw", folder / "index" / f"{name}.hnsw")


def synthetic_collection(folder: Path, n: int, encoder, vocab: Vocabulary) -> Path:
    vectors, _ = clustered(n, 0, encoder.dim)
    rng = np.random.default_rng(0)
    captions = [" ".join(rng.choice(WORDS, 6)) for _ in range(n)]
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"id": [f"item{i:07d}" for i in range(n)], "caption": captions}), folder / "metadata.parquet")
    pq.write_table(pa.table({"item": rng.permutation(n), "text": captions, "kind": ["generated"] * n}),
                   folder / "captions.parquet")
    tag_emb = encoder.encode_texts(vocab.prompts)
    for name in ("image_emb", "text_emb", "omni_emb"):
        np.save(folder / f"{name}.npy", vectors)
    np.save(folder / "tags.npy", vectors @ tag_emb.T)
    np.save(folder / "tag_emb.npy", tag_emb)
    write_graphs(folder, vectors)
    write_json(folder / "manifest.json", {"schema_version": SCHEMA_VERSION, "name": folder.name, "complete": True,
                                          "models": {"encoder": encoder.spec, "captioner": "labels"},
                                          "vocabulary": vocab.names, "dim": encoder.dim,
                                          "counts": {"items": n, "captions": n, "skipped": 0}})
    return folder


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--repeats", type=int, default=3, help="passes over the 20 queries")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "query_latency.json")
    args = p.parse_args()
    encoder, vocab = load_encoder("lite"), Vocabulary.load("photos")
    encode_ms = []
    for q in QUERIES * args.repeats:
        t = time.perf_counter()
        encoder.encode_texts([q])
        encode_ms.append((time.perf_counter() - t) * 1e3)
    rows = []
    print(f"text encoding alone: p50 {np.percentile(encode_ms, 50):.1f} ms")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            service = SearchService(synthetic_collection(Path(tmp) / f"synthetic{n}", n, encoder, vocab), encoder)
            service.text_to_image(QUERIES[0])  # warm-up: memory maps and caches
            ms = []
            for q in QUERIES * args.repeats:
                t = time.perf_counter()
                service.text_to_image(q, k=10)
                ms.append((time.perf_counter() - t) * 1e3)
            rows.append({"items": n, "index": "hnsw" if service.ann else "exact",
                         "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1)})
            del service
        print(f"{n:>8} items ({rows[-1]['index']}): p50 {rows[-1]['p50_ms']} ms, p95 {rows[-1]['p95_ms']} ms")
    result = {"encoder": encoder.spec, "dim": encoder.dim, "queries": len(QUERIES) * args.repeats, "k": 10,
              "text_encoding_p50_ms": round(float(np.percentile(encode_ms, 50)), 1),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "results": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
