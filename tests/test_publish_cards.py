"""The Hub cards (fast tier, the tiny fake-encoder collection): what the Hub's viewer, search and
SQL console read from them, the source's licence carried over, and the Space's front matter."""
import logging
import re

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT

from mosaic.publish import publish as publish_folder
from mosaic.publish import space_front_matter


def publish(what, tiny, out, **options):
    return publish_folder(what, str(tiny.collection.path), options.pop("repo", None), out, dry_run=True, **options)


def card(folder):
    from huggingface_hub import DatasetCard

    return DatasetCard.load(folder / "README.md")


def test_this_repository_is_the_space_publish_writes():
    text = (ROOT / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front == space_front_matter("Mosaic", "demo.py")
    assert "datasets" not in front  # the bundled default collection comes from no Hub dataset
    assert space_front_matter("Mosaic", "app.py", "hf://me/photos")["datasets"] == ["me/photos"]


def test_captions_card_is_what_the_hub_reads_and_its_sql_runs(tiny, tmp_path, caplog):
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "captions"
    with caplog.at_level(logging.WARNING, "mosaic"):
        publish("captions", tiny, out, embeddings=True, license="cc-by-4.0", repo="me/paintings")
    assert not caplog.records  # no previews republished, an open licence: nothing to warn about
    data = card(out).data
    assert data.license == "cc-by-4.0" and data.annotations_creators == ["machine-generated"]
    assert data.language == ["en"] and data.pretty_name == "paintings generated captions" and "mosaic" in data.tags
    assert data.configs == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}]
    schema = pq.read_schema(next((out / "data").glob("*.parquet")))
    assert str(schema.field("image_embedding").type) == "fixed_size_list<element: float>[64]"
    text = card(out).text
    assert 'load_dataset("me/paintings", split="train")' in text and "under the licence `cc-by-4.0`" in text
    sql = re.search(r"```sql\n(.*?)```", text, re.S).group(1)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW train AS SELECT * FROM '{out}/data/*.parquet'")
    ranked = con.execute(sql).fetchall()
    first = tiny.collection.ids()[0]
    assert ranked[0][0] == first and ranked[0][2] == pytest.approx(1.0, abs=1e-5)
    expected = sorted(tiny.collection.ids(), key=lambda i: -float(tiny.collection.image_emb[tiny.row(i)]
                                                                   @ tiny.collection.image_emb[0]))[:10]
    assert [r[0] for r in ranked][1:] == expected[1:]


def test_republished_images_under_a_restrictive_or_unknown_licence_are_flagged(tiny, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, "mosaic"):
        publish("captions", tiny, tmp_path / "nc", images=True, license="cc-by-nc-4.0")
    assert card(tmp_path / "nc").data.license == "cc-by-nc-4.0"
    assert "⚠️ This dataset republishes previews" in card(tmp_path / "nc").text
    assert len(caplog.records) == 1 and "(cc-by-nc-4.0) may not allow it" in caplog.records[0].message
    caplog.clear()
    with caplog.at_level(logging.WARNING, "mosaic"):
        publish("captions", tiny, tmp_path / "open", images=True, license="cc0-1.0")
        publish("captions", tiny, tmp_path / "text", license="cc-by-nc-4.0")  # captions only: no previews
    assert not caplog.records and "⚠️" not in card(tmp_path / "open").text + card(tmp_path / "text").text


def test_collection_card_says_how_to_load_it_and_loads_as_it_says(tiny, tmp_path, caplog):
    from datasets import load_dataset

    out = tmp_path / "collection"
    with caplog.at_level(logging.WARNING, "mosaic"):
        publish("collection", tiny, out, repo="me/paintings")
    text, data = card(out).text, card(out).data
    assert 'mosaic search hf://me/paintings "a query"' in text and 'load_dataset("me/paintings", split="train")' in text
    assert data.license == "other" and "licence (unknown) may not allow it" in caplog.text  # previews, licence unknown
    items = load_dataset(str(out), split="train")  # as the card's config says: the items' Parquet file
    assert items["id"] == tiny.collection.ids()
