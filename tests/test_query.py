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


@pytest.mark.parametrize("text, terms", [
    ("a dog on the grass", [("a dog on the grass", 1.0, "text")]),
    ("dog -grass", [("dog", 1.0, "text"), ("grass", -1.0, "text")]),
    ("a red car + snow - night", [("a red car", 1.0, "text"), ("snow", 1.0, "text"), ("night", -1.0, "text")]),
    ("2:beach + -0.5:crowd", [("beach", 2.0, "text"), ("crowd", -0.5, "text")]),
    ("id:Cornelia Street.jpg - night", [("Cornelia Street.jpg", 1.0, "item"), ("night", -1.0, "text")]),
    ("./car.jpg + snow", [("./car.jpg", 1.0, "file"), ("snow", 1.0, "text")]),
    ("a black-and-white t-shirt at -5 degrees", [("a black-and-white t-shirt at -5 degrees", 1.0, "text")]),
])
def test_query_arithmetic_terms(text, terms):
    from mosaic.query import parse_terms

    assert [(t.text, t.weight, t.kind) for t in parse_terms(text)] == terms


def test_filters_mean_the_same_in_the_command_line_and_the_app(tiny, capsys):
    import json

    from mosaic import cli
    from mosaic.app.handlers import Library, omni_search

    filters = ["style=Baroque", "style=Cubism", "genre=marina"]  # (Baroque or Cubism) and marina
    cli.main(["search", str(tiny.collection.path), "boat", "--mode", "omni", "-k", "12", "--json",
              *[arg for f in filters for arg in ("--filter", f)]])
    from_cli = [h["id"] for h in json.loads(capsys.readouterr().out)]
    _, from_app = omni_search(Library([tiny.collection.path]), tiny.collection.name, "boat", filters,
                              None, 1, None, 1, None, 1, 12, 0, False)
    assert [h["id"] for h in from_app] == from_cli
    assert set(from_cli) == {"red-boat.png", "blue-boat.png", "white-ship.png"}
