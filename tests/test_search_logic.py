"""The search service's logic on the tiny fake-encoder collection (fast tier)."""
import numpy as np
import pytest

from mosaic.errors import CollectionError, QueryError
from mosaic.search import TAG_SCALE


def titles(hits):
    return [h.metadata["title"] for h in hits]


def test_text_finds_the_colour_it_names(tiny):
    hits = tiny.text_to_image("red", k=3, target="image")
    assert {h.id for h in hits} == {"red-boat.png", "red-coat.png", "red-barn.png"}
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_filters_or_within_a_field_and_within_fields(tiny):
    hits = tiny.text_to_image("boat", k=12, filters={"style": ["Baroque", "Cubism"], "genre": ["marina"]})
    assert {h.id for h in hits} == {"red-boat.png", "blue-boat.png", "white-ship.png"}
    assert tiny.collection.filter_rows({"style": "Rococo"}).tolist() == [2, 3, 5, 9]


def test_unknown_filters_name_the_valid_ones(tiny):
    with pytest.raises(CollectionError, match="Known values: Baroque, Cubism, Rococo"):
        tiny.text_to_image("red", filters={"style": ["Vaporwave"]})
    with pytest.raises(CollectionError, match="can be filtered by: .*genre"):
        tiny.text_to_image("red", filters={"colour": ["red"]})


def test_image_query_by_id_returns_the_item_first_and_shared_tags(tiny):
    hits = tiny.image_to_image("blue-lake.png", k=3)
    assert hits[0].id == "blue-lake.png" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].explanation["mode"] == "image"


def test_omni_adds_z_scored_text_and_tag_weights(tiny):
    text_only = tiny.omni("yellow", k=12)
    tag = tiny.collection.tag_names[0]
    weighted = tiny.omni("yellow", k=12, tag_weights={tag: 2.0})
    for hits in (text_only, weighted):
        parts = np.array([sum(h.explanation["parts"].values()) for h in hits])
        np.testing.assert_allclose(parts, [h.score for h in hits], atol=1e-3)
    assert weighted[0].explanation["parts"][tag] == pytest.approx(2.0 * TAG_SCALE * tiny.tag_z[weighted[0].row, 0],
                                                                abs=1e-3)
    with pytest.raises(QueryError, match="Unknown tag"):
        tiny.omni("red", tag_weights={"style:vaporwave": 1})
    with pytest.raises(QueryError, match="Give a text"):
        tiny.omni("")


def test_explanations_rank_query_words_by_their_share(tiny):
    hit = tiny.text_to_image("a red boat", k=1, target="image")[0]
    assert hit.id == "red-boat.png"
    contributions = {w["word"]: w["contribution"] for w in hit.explanation["query_words"]}
    assert set(contributions) == {"red", "boat"}  # stop words are not explained
    assert contributions["red"] > 0


@pytest.mark.parametrize("text, message", [("", "empty"), ("x" * 1001, "under 1000")])
def test_bad_queries_get_clear_errors(tiny, text, message):
    with pytest.raises(QueryError, match=message):
        tiny.text_to_image(text)


def test_unknown_items_and_targets_are_query_errors(tiny):
    with pytest.raises(QueryError, match="No item with id"):
        tiny.image_to_image("nothing.png")
    with pytest.raises(QueryError, match="Unknown target"):
        tiny.text_to_image("red", target="everything")


@pytest.mark.parametrize("k", [0, -1, 10**9, 2.5])
def test_k_must_be_a_count_within_the_documented_bound(tiny, k):
    for search in (lambda: tiny.text_to_image("red", k=k), lambda: tiny.image_to_image("red-boat.png", k=k),
                   lambda: tiny.omni("red", k=k)):
        with pytest.raises(QueryError, match="Ask for 1 to 1000 results"):
            search()


def test_queries_without_visible_characters_and_nan_weights_are_refused(tiny):
    for text in ("\x00\x00\x00", " \t\n", "\u200b"):
        with pytest.raises(QueryError, match="empty"):
            tiny.text_to_image(text)
    with pytest.raises(QueryError, match="finite"):
        tiny.omni("red", tag_weights={tiny.collection.tag_names[0]: float("nan")})


def test_only_the_first_hits_get_word_explanations(tiny, monkeypatch):
    from mosaic import search

    monkeypatch.setattr(search, "EXPLAINED", 2)
    hits = tiny.text_to_image("a red boat", k=5)
    assert [("query_words" in h.explanation) for h in hits] == [True, True, False, False, False]
    assert all("parts" in h.explanation for h in hits)


def test_query_arithmetic_adds_and_subtracts_terms(tiny):
    plain = tiny.text_to_image("red", k=3, target="image")
    assert plain[0].explanation.get("terms") is None
    minus = tiny.text_to_image("red -blue", k=3, target="image")
    assert [h.id for h in minus][0] != "red-boat.png" and "red-boat.png" not in [h.id for h in minus][:2]
    hit = minus[0]
    terms = {t["term"]: t for t in hit.explanation["terms"]}
    assert terms["blue"]["weight"] == -1.0 and terms["red"]["contribution"] > 0
    assert sum(t["contribution"] for t in terms.values()) == pytest.approx(hit.score, abs=1e-3)
    doubled = tiny.text_to_image("2:red + white", k=1, target="image")[0]
    assert doubled.id in {"red-coat.png"}
    by_item = tiny.text_to_image("id:blue-lake.png - green", k=2, target="image")
    assert by_item[0].id == "blue-boat.png"  # blue like the lake, without the lake's green


def test_query_arithmetic_errors(tiny, tmp_path):
    with pytest.raises(QueryError, match="cancel"):
        tiny.text_to_image("red -red")
    with pytest.raises(QueryError, match="No item with id"):
        tiny.text_to_image("id:nothing.png + red")
    with pytest.raises(QueryError, match="upload it"):
        tiny.text_to_image("./car.jpg + snow")


def test_image_files_are_terms_on_the_command_line_only(tiny, tmp_path):
    from fakes import picture

    from mosaic.search import SearchService

    picture("yellow", "blue").save(tmp_path / "sun.png")
    cli_service = SearchService(tiny.collection, encoder=tiny.encoder, allow_files=True)
    assert cli_service.text_to_image(f"{tmp_path / 'sun.png'} + landscape", k=1, target="image")[0].id == "yellow-sun.png"


def test_pages_follow_each_other(tiny):
    for search in (lambda **kw: tiny.text_to_image("red boat", **kw), lambda **kw: tiny.omni("red boat", **kw),
                   lambda **kw: tiny.image_to_image("red-boat.png", **kw),
                   lambda **kw: tiny.text_to_image("boat", filters={"genre": ["marina"]}, **kw)):
        whole = [h.id for h in search(k=6)]
        assert [h.id for h in search(k=3)] + [h.id for h in search(k=3, offset=3)] == whole
        assert search(k=5, offset=20) == []
    with pytest.raises(QueryError, match="offset"):
        tiny.text_to_image("red", offset=-1)
    with pytest.raises(QueryError, match="up to the 1000th"):
        tiny.text_to_image("red", k=10, offset=995)


def test_match_strength_is_zero_at_the_collection_mean_and_full_four_sd_above():
    from mosaic.strength import FULL, match_strength, reference_rows

    reference = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    mean, sd = reference.mean(), reference.std()
    assert list(match_strength([mean, mean - sd, mean + FULL / 2 * sd, mean + 10 * sd], reference)) == [0, 0, 50, 100]
    assert list(match_strength([0.9], [0.5])) == [0]  # no distribution to place it on
    assert list(reference_rows(5)) == [0, 1, 2, 3, 4]
    sample = reference_rows(10_000, size=100)
    assert len(set(sample)) == 100 and list(sample) == list(reference_rows(10_000, size=100))


def test_every_mode_gives_hits_a_strength_on_one_scale(tiny):
    for hits in (tiny.text_to_image("red", k=12, target="both"), tiny.image_to_image("blue-lake.png", k=12),
                 tiny.omni("red", k=12, tag_weights={tiny.collection.tag_names[0]: 1.0})):
        strengths = [h.strength for h in hits]
        assert all(0 <= s <= 100 for s in strengths) and strengths == sorted(strengths, reverse=True)
        assert strengths[0] > 0 and strengths[-1] == 0 and hits[0].to_dict()["strength"] == strengths[0]


def test_above_the_exact_limit_the_hnsw_graphs_answer_like_exact_search(tiny):
    from mosaic.search import SearchService

    graph = SearchService(tiny.collection, tiny.encoder, exact_limit=0)
    assert set(graph.ann) == {"image", "text", "omni"} and type(graph.ann["image"]).__name__ == "HnswIndex"
    for search in (lambda s: s.text_to_image("red boat", k=5), lambda s: s.image_to_image("blue-lake.png", k=4),
                   lambda s: s.omni("yellow", k=3)):
        a, b = search(graph), search(tiny)
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)


def test_annoy_is_an_option_of_the_build(tiny, tmp_path):
    from fakes import write_paintings

    from mosaic.build import BuildConfig, build
    from mosaic.search import SearchService

    with pytest.raises(CollectionError, match="no annoy index: rebuild it with --annoy"):
        SearchService(tiny.collection, tiny.encoder, index="annoy")
    assert not list((tiny.collection.path / "index").glob("*.ann"))
    out = build(BuildConfig("wikiart", str(write_paintings(tmp_path / "src")), model="fake", captioner="none", annoy=True),
                tmp_path / "c", progress=False)
    annoy = SearchService(out, tiny.encoder, index="annoy")
    assert {p.name for p in (out / "index").iterdir()} == {f"{n}.{e}" for n in ("image", "caption", "omni")
                                                           for e in ("ann", "hnsw")}
    assert {"index/image.ann", "index/image.hnsw"} <= set(annoy.collection.manifest.checksums)
    assert [h.id for h in annoy.text_to_image("red boat", k=5)] == [h.id for h in tiny.text_to_image("red boat", k=5)]


def test_scoring_every_item_in_place_gives_what_scoring_a_subset_does(tiny):
    """All items in order are scored by reading the arrays in place, any other list by gathering
    its rows: each item gets the same image and best-caption scores either way."""
    q = tiny.text_query("red boat")
    rows = np.arange(len(tiny.collection))
    every, backwards = tiny._components(q, rows, "both"), tiny._components(q, rows[::-1], "both")
    assert set(every) == {"image", "caption"} and np.ptp(every["caption"]) > 0
    for name, scores in every.items():
        np.testing.assert_allclose(scores, backwards[name][::-1], rtol=1e-6)
