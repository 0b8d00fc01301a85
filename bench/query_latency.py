"""End-to-end text-query latency through the search service (encode the text, find candidates,
rescore, explain, fetch the hits' metadata) at 10k, 100k and 1M items, with the offline encoder,
and the peak memory (RSS) of serving each size.

The collections are synthetic: clustered vectors of the encoder's size stand for the image, caption
(one per item) and omni embeddings, so one HNSW graph serves all three; each item's caption is
another item's vector, so, as in a real collection, the caption and image candidates differ.
Tag scores are real (the vectors against the encoded tag prompts); previews are empty. They are
written as a build writes a collection (`write_shard`, then `seal`: sizes, checksums, the complete
manifest), so they load as real ones do. The service picks its index as it does for real
collections: exact up to 200k items, the HNSW graphs above.

Each size is served in a fresh process: it loads the service, answers the queries, and reports its
peak RSS (VmHWM in /proc/self/status: the encoder, the exact indexes in memory and the pages of the
memory-mapped graphs and arrays it touched) and its RSS at the end, split into anonymous memory
and mapped files' pages (RssAnon, RssFile; the latter the kernel can drop and read again). Linux
only. Prints p50/p95 and the peak RSS, and writes JSON.

    python bench/query_latency.py [--sizes 10000 100000 1000000] [--json bench/results/query_latency.json]
"""
import argparse
import json
import multiprocessing
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import faiss
import numpy as np
from synthetic import clustered

from mosaic.build import BuildConfig
from mosaic.collection import EMBEDDINGS, Files, Manifest, seal, write_shard
from mosaic.index.hnsw_index import CONNECTIVITY
from mosaic.models import load_encoder
from mosaic.search import SearchService
from mosaic.sources import fields_of
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
VOCABULARY = "photos"


def write_graphs(files: Files, vectors: np.ndarray) -> None:
    """The HNSW graph of the vectors, as the image graph, linked as the caption and omni graphs
    (the three spaces hold the same vectors). Built on all threads with efConstruction 32 rather
    than the build's 200 and without its efSearch tuning, to spare time: a graph of the same size,
    searched at efSearch 32 (the service asks for 1,000 candidates, so it explores 1,000 anyway)."""
    index = faiss.IndexHNSWFlat(vectors.shape[1], CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 32
    index.add(vectors)
    files.hnsw("image").parent.mkdir()
    faiss.write_index(index, str(files.hnsw("image")))
    for space in EMBEDDINGS[1:]:
        os.link(files.hnsw("image"), files.hnsw(space))


def synthetic_collection(folder: Path, n: int, encoder, vocab: Vocabulary) -> Path:
    vectors, _ = clustered(n, 0, encoder.dim)
    rng = np.random.default_rng(0)
    captions = [" ".join(rng.choice(WORDS, 6)) for _ in range(n)]
    ids = [f"item{i:07d}" for i in range(n)]
    tag_emb = encoder.encode_texts(vocab.prompts)
    columns = {"generated": captions, "caption_item": rng.permutation(n), "caption_text": captions,
               "caption_kind": ["generated"] * n, "image_emb": vectors, "text_emb": vectors,
               "tags": vectors @ tag_emb.T, "thumbs": [b""] * n}
    write_shard(folder, [{"id": i} for i in ids], columns, [{"id": i} for i in ids])
    files = Files(folder)
    np.save(files.array("omni_emb"), vectors)
    np.save(files.array("tag_emb"), tag_emb.astype(np.float32))
    write_json(files.duplicates, {"exact": [], "near": []})
    write_graphs(files, vectors)
    config = BuildConfig("synthetic", model=encoder.spec, captioner="labels", vocab=VOCABULARY)
    seal(folder, Manifest(folder.name, config.identity(), {"encoder": encoder.spec, "captioner": "labels"},
                          asdict(fields_of("synthetic")), dim=encoder.dim, vocabulary=vocab.names,
                          counts={"items": n, "captions": n, "skipped": 0}))
    return folder


def memory_mb() -> dict:
    """This process's peak RSS and its RSS now, in all, anonymous and of mapped files."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {f"{key}_mb": round(int(status[name].split()[0]) / 1024, 1) for key, name in
            (("peak_rss", "VmHWM"), ("rss", "VmRSS"), ("rss_anon", "RssAnon"), ("rss_file", "RssFile"))}


def serve(folder: Path, repeats: int) -> dict:
    """In a fresh process: load the service, answer the queries; latencies and the peak RSS."""
    service = SearchService(folder, load_encoder("lite"))
    service.text_to_image(QUERIES[0])  # warm-up: memory maps and caches
    ms = []
    for q in QUERIES * repeats:
        t = time.perf_counter()
        service.text_to_image(q, k=10)
        ms.append((time.perf_counter() - t) * 1e3)
    return {"index": "hnsw" if service.ann else "exact", "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), **memory_mb()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--repeats", type=int, default=3, help="passes over the 20 queries")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "query_latency.json")
    args = p.parse_args()
    encoder, vocab = load_encoder("lite"), Vocabulary.load(VOCABULARY)
    encode_ms = []
    for q in QUERIES * args.repeats:
        t = time.perf_counter()
        encoder.encode_texts([q])
        encode_ms.append((time.perf_counter() - t) * 1e3)
    rows = []
    print(f"text encoding alone: p50 {np.percentile(encode_ms, 50):.1f} ms")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            folder = synthetic_collection(Path(tmp) / f"synthetic{n}", n, encoder, vocab)
            written_s = time.perf_counter() - t
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                rows.append({"items": n, **pool.submit(serve, folder, args.repeats).result()})
        r = rows[-1]
        print(f"{n:>8} items ({r['index']}): p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, "
              f"peak RSS of serving {r['peak_rss_mb']:,.0f} MB "
              f"(at the end: {r['rss_anon_mb']:,.0f} MB anonymous, {r['rss_file_mb']:,.0f} MB of mapped files; "
              f"collection written in {written_s:.0f} s)")
    result = {"encoder": encoder.spec, "dim": encoder.dim, "queries": len(QUERIES) * args.repeats, "k": 10,
              "text_encoding_p50_ms": round(float(np.percentile(encode_ms, 50)), 1),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "results": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
