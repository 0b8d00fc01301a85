import numpy as np
import pytest
from PIL import Image

from mosaic.errors import CollectionError, QueryError

pytestmark = pytest.mark.slow


def has_word(service, hit, word):
    c = service.collection
    human = [t for t, k in zip(c.captions["text"].to_pylist(), c.captions["kind"].to_pylist()) if k == "human"]
    owners = c.caption_items[np.asarray(c.captions["kind"].to_pylist()) == "human"]
    return any(word in t.lower() for t, o in zip(human, owners) if o == hit.row)


def test_text_to_image_finds_dogs_far_above_chance(flickr):
    # against image embeddings only: the human captions are the ground truth, not the input
    hits = flickr.text_to_image("a dog running on the grass", k=10, target="image")
    dogs = sum(has_word(flickr, h, "dog") for h in hits)
    c = flickr.collection
    rate = np.mean([has_word(flickr, h, "dog") for h in flickr._hits(np.arange(len(c)), np.zeros(len(c)))])
    assert dogs >= 6, dogs
    assert dogs / 10 > 2 * rate  # the base rate of dog images in the sample is about 0.2


def test_image_to_image_returns_the_query_image_first(flickr):
    c = flickr.collection
    for row in (0, 57, 123):
        hits = flickr.image_to_image(c.ids()[row], k=5)
        assert hits[0].row == row and hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_uploaded_image_finds_itself(flickr, flickr_dir):
    c = flickr.collection
    image = Image.open(flickr_dir / "images" / c.ids()[42])
    hits = flickr.image_to_image(image, k=3)
    assert hits[0].id == c.ids()[42]


def test_caption_and_both_targets_rank_by_their_own_scores(flickr):
    for target in ("caption", "both"):
        hits = flickr.text_to_image("a dog running on the grass", k=10, target=target)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert sum(has_word(flickr, h, "dog") for h in hits) >= 8
        parts = hits[0].explanation["parts"]
        expected = parts["caption"] if target == "caption" else (parts["caption"] + parts["image"]) / 2
        assert hits[0].score == pytest.approx(expected, abs=1e-3)


def test_every_hit_explains_itself(flickr):
    hit = flickr.text_to_image("a dog running on the grass", k=3)[0]
    e = hit.explanation
    assert e["query_words"][0]["word"] == "dog"  # the word that carries the match
    assert {w["word"] for w in e["query_words"]} == {"dog", "running", "grass"}
    assert e["caption_words"] and e["captions"]
    assert any(t["tag"] == "objects:dog" for t in e["tags"])


def test_filters_apply_before_ranking(wikiart):
    hits = wikiart.text_to_image("a portrait of a woman", k=30, filters={"style": "Expressionism"})
    assert hits and all(h.metadata["style"] == "Expressionism" for h in hits)
    assert len(hits) == sum(1 for s in wikiart.collection.metadata["style"].to_pylist() if s == "Expressionism")


def test_unknown_filters_name_the_valid_ones(wikiart):
    with pytest.raises(CollectionError, match="Known values: .*Expressionism"):
        wikiart.text_to_image("a portrait", filters={"style": "Vaporwave"})
    with pytest.raises(CollectionError, match="can be filtered by: .*style"):
        wikiart.text_to_image("a portrait", filters={"mood": "calm"})


def test_omni_tag_weights_pull_matching_items_up(wikiart):
    tag = "genre:landscape"
    col = wikiart.collection.tag_names.index(tag)
    plain = wikiart.omni("a painting", k=5)
    weighted = wikiart.omni("a painting", k=5, tag_weights={tag: 3.0})
    mean_tag = lambda hits: np.mean([wikiart.collection.tags[h.row, col] for h in hits])  # noqa: E731
    assert mean_tag(weighted) > mean_tag(plain)
    assert set(weighted[0].explanation["parts"]) == {"text", tag}
    only_tags = wikiart.omni("", k=3, tag_weights={tag: 1.0})
    assert only_tags[0].row == int(np.argmax(wikiart.collection.tags[:, col]))


def test_bad_queries_get_clear_errors(flickr):
    with pytest.raises(QueryError, match="empty"):
        flickr.text_to_image("   ")
    with pytest.raises(QueryError, match="under 1000"):
        flickr.text_to_image("dog " * 400)
    with pytest.raises(QueryError, match="No item with id"):
        flickr.image_to_image("missing.jpg")
    with pytest.raises(QueryError, match="Unknown tag"):
        flickr.omni("dog", tag_weights={"mood:calm": 1})
    with pytest.raises(QueryError, match="Unknown target"):
        flickr.text_to_image("dog", target="video")


@pytest.mark.parametrize("kind", ["hnsw", "annoy"])
def test_approximate_and_exact_services_agree(flickr, kind):
    from mosaic.search import SearchService

    approximate = SearchService(flickr.collection, flickr.encoder, index=kind)
    a = [h.row for h in approximate.text_to_image("children playing in the snow", k=5, target="image")]
    e = [h.row for h in flickr.text_to_image("children playing in the snow", k=5, target="image")]
    assert len(set(a) & set(e)) >= 4


def test_sharded_service_answers_like_one_index(flickr):
    from mosaic.search import SearchService

    sharded = SearchService(flickr.collection, flickr.encoder, shard_rows=128)
    assert len(sharded.exact["image"].shards) == 3  # 300 items
    for target in ("image", "both"):
        a = sharded.text_to_image("a dog jumping into a pool", k=8, target=target)
        b = flickr.text_to_image("a dog jumping into a pool", k=8, target=target)
        assert [h.row for h in a] == [h.row for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-5)


def test_a_negative_term_pushes_its_matches_down(flickr):
    def grass_share(text, k=20):
        """The share of the top hits' human captions that mention grass."""
        hits = flickr.text_to_image(text, k=k)
        captions = [c for h in hits for c in h.explanation["captions"]]
        return sum("grass" in c.lower() for c in captions) / len(captions)

    assert grass_share("dog") >= 0.1
    assert grass_share("dog -grass") < grass_share("dog") / 2
    top = flickr.text_to_image("dog -grass", k=1)[0]
    assert [t["term"] for t in top.explanation["terms"]] == ["dog", "grass"]
    assert top.explanation["terms"][1]["weight"] == -1.0
