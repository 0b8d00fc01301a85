import faiss
import numpy as np
import pytest
import torch

from mosaic.index import AnnoyIndex, ExactIndex, HnswIndex, build_annoy, build_hnsw, quantize


@pytest.mark.parametrize("precision", ["int8", "int4"])
@pytest.mark.parametrize("n_queries", [3, 20])  # int4 unpacks for many queries, not for a few
def test_integer_products_match_the_dequantized_vectors(precision, n_queries):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 9)).astype(np.float32)  # an odd dimension: int4 pads a nibble
    q = rng.normal(size=(n_queries, 9)).astype(np.float32)
    codes, scale = quantize(x, precision)
    if precision == "int4":
        assert codes.shape == (50, 5) and codes.dtype == np.int8
        high = codes >> 4
        codes = np.concatenate([codes - 16 * high - 8, high], 1)[:, :9]
        assert np.abs(codes).max() <= 7
    dequantized = codes * scale
    # the query is quantized to int8 too: its error is at most half a step per coordinate
    tolerance = np.abs(q).max(1, keepdims=True) / 127 * np.abs(dequantized).sum(1)
    error = np.abs(ExactIndex(x, precision, device="cpu").scores(q) - q @ dequantized.T)
    assert (error <= tolerance / 2 + 1e-4).all()


def test_chunked_search_equals_one_product():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5000, 16)).astype(np.float32)
    for precision in ("fp32", "int8"):
        s1, i1 = ExactIndex(x, precision, device="cpu").search(x[:7], 5)
        s2, i2 = ExactIndex(x, precision, device="cpu", chunk=1024).search(x[:7], 5)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_allclose(s1, s2, rtol=1e-6)


@pytest.mark.slow
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


@pytest.mark.slow
def test_exact_search_restricted_to_rows_returns_collection_rows(flickr):
    vectors = np.asarray(flickr.collection.image_emb)
    rows = np.array([5, 17, 42, 99])
    scores, ids = ExactIndex(vectors).search(vectors[[42]], 2, rows)
    assert ids[0, 0] == 42 and set(ids[0]) <= set(rows)
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_annoy_finds_what_exact_finds(flickr, tmp_path):
    vectors = np.asarray(flickr.collection.image_emb)
    build_annoy(vectors, tmp_path / "i.ann", n_trees=20)
    annoy = AnnoyIndex(tmp_path / "i.ann", vectors.shape[1], search_k=2000)
    s_a, a = annoy.search(vectors[:50], 10)
    s_e, e = ExactIndex(vectors).search(vectors[:50], 10)
    assert np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, e)]) >= 0.9
    np.testing.assert_allclose(s_a[:, 0], s_e[:, 0], atol=1e-3)


def test_two_stage_top_k_equals_torch_top_k():
    from mosaic.index.exact import _topk

    s = torch.from_numpy(np.random.default_rng(2).normal(size=(4, 100_000)).astype(np.float32))
    values, ids = _topk(s, 10)
    reference = torch.topk(s, 10, dim=1)
    assert torch.equal(values, reference.values) and torch.equal(ids, reference.indices)
    assert _topk(s[:, :5], 10)[1].shape == (4, 5)  # k beyond the row: all of it
    assert torch.equal(_topk(s[:, :99_999], 10)[1], torch.topk(s[:, :99_999], 10, dim=1).indices)


@pytest.mark.slow
@pytest.mark.parametrize("on_ray", [False, True])
def test_sharded_index_answers_like_one_index(tmp_path, on_ray):
    from mosaic.index import ShardedIndex

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2500, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save(tmp_path / "v.npy", x)
    q, rows = x[:5] + 0.1, np.arange(100, 2500, 7)
    if on_ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False)
    try:
        sharded = ShardedIndex(tmp_path / "v.npy", 1000, "int8", ray=on_ray)
        assert len(sharded.shards) == 3
        for restrict in (None, rows):
            s1, i1 = sharded.search(q, 10, restrict)
            s2, i2 = ExactIndex(x, "int8").search(q, 10, restrict)
            np.testing.assert_array_equal(i1, i2)
            np.testing.assert_allclose(s1, s2, rtol=1e-5)
            np.testing.assert_allclose(sharded.scores(q, restrict), ExactIndex(x, "int8").scores(q, restrict), rtol=1e-5)
    finally:
        if on_ray:
            ray.shutdown()


def embedding_like(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Unit vectors near a 12-d subspace, in 50 clusters of uneven sizes, as real embeddings are."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, 12))
    sizes = 1 / np.arange(1, 51)
    z = centres[rng.choice(50, n, p=sizes / sizes.sum())] + 0.6 * rng.normal(size=(n, 12))
    x = z @ rng.normal(size=(12, dim)) + 0.1 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_hnsw_finds_what_exact_finds_with_exact_scores(tmp_path):
    vectors = embedding_like(4100)
    base, queries = vectors[:4000], vectors[4000:]  # queries held out of the graph
    np.save(tmp_path / "v.npy", base)
    build_hnsw(np.load(tmp_path / "v.npy", mmap_mode="r"), tmp_path / "i.hnsw")
    index = HnswIndex(tmp_path / "i.hnsw")
    scores, ids = index.search(queries, 10)
    _, ref = ExactIndex(base, device="cpu").search(queries, 10)
    found = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, ref)])
    assert len(index) == 4000 and found >= 0.95, found
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", base[ids], queries), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    _, one = index.search(queries[0], 10)  # a single vector is one query
    np.testing.assert_array_equal(one[0], ids[0])
    with pytest.raises(ValueError, match="cannot restrict"):
        index.search(queries, 10, rows=np.arange(5))


def test_hnsw_search_is_tuned_to_the_data_when_built(tmp_path):
    """efSearch is chosen per graph, for recall@10 >= 0.95 on vectors held back while it is built,
    and kept in its file: scattered vectors (random directions in 64-d) need a wider search than
    clustered ones, and get one; queries from outside either graph find what exact search finds."""
    rng = np.random.default_rng(3)
    scattered = rng.normal(size=(3200, 64)).astype(np.float32)
    sets = {"clustered": embedding_like(3200, seed=2), "scattered": scattered / np.linalg.norm(scattered, axis=1, keepdims=True)}
    width = {}
    for name, vectors in sets.items():
        base, queries = vectors[:3000], vectors[3000:]
        build_hnsw(base, tmp_path / f"{name}.hnsw")
        index = HnswIndex(tmp_path / f"{name}.hnsw")
        _, ids = index.search(queries, 10)
        _, ref = ExactIndex(base, device="cpu").search(queries, 10)
        assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, ref)]) >= 0.93, name
        width[name] = index.expansion_search
    assert width["scattered"] > width["clustered"], width
    bare = faiss.IndexHNSWFlat(64, 16, faiss.METRIC_INNER_PRODUCT)  # as graphs were written before tuning
    bare.add(sets["clustered"][:3000])
    faiss.write_index(bare, str(tmp_path / "bare.hnsw"))
    assert HnswIndex(tmp_path / "bare.hnsw").expansion_search == 32


def test_hnsw_is_built_the_same_every_time(tmp_path):
    vectors = embedding_like(2000, seed=1)
    for name in ("a", "b"):
        build_hnsw(vectors, tmp_path / f"{name}.hnsw")
    assert (tmp_path / "a.hnsw").read_bytes() == (tmp_path / "b.hnsw").read_bytes()
