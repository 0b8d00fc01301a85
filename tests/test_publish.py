"""Publishing: the --dry-run folders are exactly what would be uploaded, and they load back."""
import os
import re
import sys
import tempfile

import gradio
import pytest
import torch
from conftest import free_port, served

from mosaic.errors import HubError, UsageError
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
    assert ds[0]["human_captions"] == c.item_captions(0, human=True)
    assert ds[0]["image"].size == c.thumbnail(0).size and len(ds[0]["image_embedding"]) == c.image_emb.shape[1]
    card = DatasetCard.load(out / "README.md")
    assert card.data.license == "other" and card.data.task_categories == ["image-to-text", "text-to-image"]
    assert card.data.size_categories == ["n<1K"] and "mosaic build wikiart" in card.text
    for path in out.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes()
    assert_names_no_local_folder(out, wikiart)


def assert_names_no_local_folder(out, service):
    source = service.collection.manifest.config["path"]
    assert source.startswith("/")
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".md", ".json"):
            assert source not in path.read_text(), path


def test_collection_round_trips_to_the_same_search_results(wikiart, tmp_path):
    out = tmp_path / "collection"
    publish("collection", str(wikiart.collection.path), None, out, dry_run=True)
    loaded = SearchService(out)
    assert_names_no_local_folder(out, wikiart)
    assert loaded.collection.manifest.config["path"] == "wikiart-30"
    for query in ("a quiet landscape", "a portrait of a woman"):
        before = [(h.id, round(h.score, 5)) for h in wikiart.text_to_image(query, 5)]
        assert [(h.id, round(h.score, 5)) for h in loaded.text_to_image(query, 5)] == before


def test_space_folder_has_front_matter_and_its_app_starts(wikiart, tmp_path):
    from gradio_client import Client
    from huggingface_hub import SpaceCard

    out = tmp_path / "space"
    publish("space", str(wikiart.collection.path), None, out, dry_run=True)
    assert (out / "collection" / "manifest.json").exists()  # a local collection travels with the Space
    assert """"--collection", 'collection'""" in (out / "app.py").read_text()
    card = SpaceCard.load(out / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.models == ["timm/vit_base_patch32_clip_224.openai", "Salesforce/blip-image-captioning-base"]
    assert [p.split()[0] for p in card.data.preload_from_hub] == card.data.models
    assert card.data.startup_duration_timeout == "1h" and card.data.suggested_hardware == "cpu-upgrade"
    assert (out / "src" / "mosaic" / "app" / "__init__.py").exists() and (out / "src" / "mosaic" / "vocab" / "art.json").exists()
    requirements = (out / "requirements.txt").read_text().split()
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements and "pytest" not in str(requirements)
    assert any(re.fullmatch(rf"gradio(\[mcp\])?=={gradio.__version__}", r) for r in requirements)
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1"}
    with served([sys.executable, "app.py"], port, cwd=out, env=env) as url:
        _, hits = Client(url, verbose=False).predict("wikiart", "a city street", "both", 3, 0,
                                                     api_name="/caption_search")
    assert len(hits) == 3


def test_no_token_or_no_network_is_one_clear_message(wikiart, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored login either
    with pytest.raises(HubError, match="No Hugging Face token"):
        publish("captions", str(wikiart.collection.path), "me/captions", None, dry_run=False)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with pytest.raises(HubError, match="needs the Hugging Face Hub, and HF_HUB_OFFLINE is set.*--dry-run") as e:
        publish("collection", str(wikiart.collection.path), "me/collection", None, dry_run=False)
    assert SECRET not in str(e.value) and "cache" not in str(e.value)
    assert not list((tmp_path / "tmp").iterdir())  # the temporary copy is gone
    with pytest.raises(UsageError, match="dry-run needs --out"):
        publish("space", "hf://me/collection", None, None, dry_run=True)
    with pytest.raises(HubError, match="Dataset repository 'me/nothing-here'"):
        SearchService("hf://me/nothing-here")
