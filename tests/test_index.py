import numpy as np
import pytest

from mosaic.index import AnnoyIndex, ExactIndex, build_annoy, quantize
from mosaic.index.exact import _unpack_int4
import torch


def test_int4_codes_pack_and_unpack_exactly():
    x = np.random.default_rng(0).normal(size=(10, 9)).astype(np.float32)
    codes, scale = quantize(x, "int4")
    assert codes.shape == (10, 5) and codes.dtype == np.uint8
    unpacked = _unpack_int4(torch.from_numpy(codes), 9).numpy()
    np.testing.assert_array_equal(unpacked, np.clip(np.rint(x / scale), -7, 7))


def test_quantized_exact_search_agrees_with_fp32_on_real_embeddings(flickr):
    vectors = np.asarray(flickr.collection.text_emb)  # 1,800 real caption embeddings
    queries = np.asarray(flickr.collection.image_emb[:100])
    _, ref = ExactIndex(vectors).search(queries, 10)
    overlap = {}
    for precision in ("fp16", "int8", "int4"):
        index = ExactIndex(vectors, precision)
        _, ids = index.search(queries, 10)
        overlap[precision] = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, ref)])
    assert overlap["fp16"] >= 0.99 and overlap["int8"] >= 0.95 and overlap["int4"] >= 0.6, overlap
    assert ExactIndex(vectors, "int8").nbytes < ExactIndex(vectors).nbytes / 3.5


def test_exact_search_restricted_to_rows_returns_collection_rows(flickr):
    vectors = np.asarray(flickr.collection.image_emb)
    rows = np.array([5, 17, 42, 99])
    scores, ids = ExactIndex(vectors).search(vectors[[42]], 2, rows)
    assert ids[0, 0] == 42 and set(ids[0]) <= set(rows)
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_annoy_finds_what_exact_finds(flickr, tmp_path):
    vectors = np.asarray(flickr.collection.image_emb)
    build_annoy(vectors, tmp_path / "i.ann", n_trees=20)
    annoy = AnnoyIndex(tmp_path / "i.ann", vectors.shape[1], search_k=2000)
    s_a, a = annoy.search(vectors[:50], 10)
    s_e, e = ExactIndex(vectors).search(vectors[:50], 10)
    assert np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, e)]) >= 0.9
    np.testing.assert_allclose(s_a[:, 0], s_e[:, 0], atol=1e-3)
