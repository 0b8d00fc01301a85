import pytest

from mosaic.errors import QueryError
from mosaic.query import parse_filters, parse_tag_weights, tag_weights


def test_values_of_one_field_are_kept_together():
    assert parse_filters(["style=Baroque", "style=Rococo", "genre=portrait", "style=Baroque"]) == {
        "style": ["Baroque", "Rococo"], "genre": ["portrait"]}
    assert parse_filters(None) == {}
    assert parse_filters(["title=a=b"]) == {"title": ["a=b"]}


@pytest.mark.parametrize("bad", ["style", "=Baroque", " =x"])
def test_malformed_filters_are_refused(bad):
    with pytest.raises(QueryError, match="field=value"):
        parse_filters([bad])


def test_repeated_tag_weights_add_up():
    assert parse_tag_weights(["mood:calm=1", "mood:calm=0.5", "objects:dog=-2"]) == {"mood:calm": 1.5, "objects:dog": -2.0}
    assert parse_tag_weights(["mood:calm=1", "mood:calm=-1"]) == {}
    assert tag_weights([("mood:calm", 1), ("", 2), ("objects:dog", 0), ("mood:calm", 0.5)]) == {"mood:calm": 1.5}


@pytest.mark.parametrize("bad, message", [("mood:calm", "category:tag=weight"), ("=1", "category:tag=weight"),
                                          ("mood:calm=much", "category:tag=weight"), ("mood:calm=nan", "finite"),
                                          ("mood:calm=inf", "finite")])
def test_bad_tag_weights_are_refused(bad, message):
    with pytest.raises(QueryError, match=message):
        parse_tag_weights([bad])
