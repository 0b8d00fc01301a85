"""Nearest-neighbour indexes over L2-normalised vectors, all answering `search(queries, k, rows)`.

`ExactIndex` scores every vector (one matrix product + top-k, on CUDA when present) from fp32,
fp16, int8 or int4 storage; `HnswIndex` (a FAISS HNSW graph) and `AnnoyIndex` are approximate
and memory-mapped from disk.
`ShardedIndex` splits exact search over row ranges (here or in Ray actors) and merges the results.
All return (scores, ids): cosine similarities and row numbers, best first.
"""
from .annoy_index import AnnoyIndex, build_annoy
from .exact import PRECISIONS, ExactIndex, quantize
from .hnsw_index import HnswIndex, build_hnsw
from .sharded import ShardedIndex

__all__ = ["AnnoyIndex", "ExactIndex", "HnswIndex", "PRECISIONS", "ShardedIndex", "build_annoy", "build_hnsw", "quantize"]
