"""Publishing: the --dry-run folders are exactly what would be uploaded, and they load back."""
import os
import sys

import pytest
from conftest import free_port, served

from mosaic.errors import HubError
from mosaic.publish import publish
from mosaic.search import SearchService

pytestmark = pytest.mark.slow
SECRET = "hf_mosaicTestTokenThatMustNeverBeWritten"


def test_captions_dataset_loads_back_with_the_same_rows(wikiart, tmp_path, monkeypatch):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    monkeypatch.setenv("HF_TOKEN", SECRET)
    out = tmp_path / "captions"
    publish("captions", str(wikiart.collection.path), None, out, dry_run=True, images=True, embeddings=True)
    ds = load_dataset(str(out), split="train")
    c = wikiart.collection
    assert ds["id"] == c.ids() and ds["caption"] == c.metadata["caption"].to_pylist()
    assert ds["style"] == c.metadata["style"].to_pylist()
    assert ds[0]["human_captions"] == [t for t in c.item_captions(0) if t != c.item(0)["caption"]]
    assert ds[0]["image"].size == c.thumbnail(0).size and len(ds[0]["image_embedding"]) == c.image_emb.shape[1]
    card = DatasetCard.load(out / "README.md")
    assert card.data.license == "other" and card.data.task_categories == ["image-to-text", "text-to-image"]
    assert card.data.size_categories == ["n<1K"] and "mosaic build wikiart" in card.text
    for path in out.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes()


def test_collection_round_trips_to_the_same_search_results(wikiart, tmp_path):
    out = tmp_path / "collection"
    publish("collection", str(wikiart.collection.path), None, out, dry_run=True)
    loaded = SearchService(out)
    for query in ("a quiet landscape", "a portrait of a woman"):
        before = [(h.id, round(h.score, 5)) for h in wikiart.text_to_image(query, 5)]
        assert [(h.id, round(h.score, 5)) for h in loaded.text_to_image(query, 5)] == before


def test_space_folder_has_front_matter_and_its_app_starts(wikiart, tmp_path):
    from gradio_client import Client
    from huggingface_hub import SpaceCard

    out = tmp_path / "space"
    publish("space", str(wikiart.collection.path), None, out, dry_run=True)
    card = SpaceCard.load(out / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert (out / "src" / "mosaic" / "app" / "__init__.py").exists() and (out / "requirements.txt").exists()
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1"}
    with served([sys.executable, "app.py"], port, cwd=out, env=env) as url:
        _, hits = Client(url, verbose=False).predict("wikiart", "a city street", "both", 3, -1,
                                                     api_name="/caption_search")
    assert len(hits) == 3


def test_no_token_or_no_network_is_one_clear_message(wikiart, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored login either
    with pytest.raises(HubError, match="No Hugging Face token"):
        publish("captions", str(wikiart.collection.path), "me/captions", None, dry_run=False)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE") as e:
        publish("collection", str(wikiart.collection.path), "me/collection", None, dry_run=False)
    assert SECRET not in str(e.value)
    with pytest.raises(HubError, match="dry-run needs --out"):
        publish("space", "hf://me/collection", None, None, dry_run=True)
    with pytest.raises(HubError, match="Dataset repository 'me/nothing-here'"):
        SearchService("hf://me/nothing-here")
