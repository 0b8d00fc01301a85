"""The paths most users with internet take, run without it: transformers CLIP (`hf:`) and BLIP
(`blip:`) as tiny random-weight models saved to temporary folders, the `hub` source streaming a
local Parquet dataset, `auto` choosing the online models when a (fake) cached snapshot exists,
and open_clip specs that name no pretrained weights. The tiny models only prove the plumbing:
no quality figure is read from them."""
import logging

import numpy as np
import pytest
from fakes import picture

from mosaic import models
from mosaic.build import BuildConfig, build
from mosaic.collection import Collection
from mosaic.errors import HubError, SourceError, UsageError
from mosaic.search import SearchService
from mosaic.sources import load_image, open_source

# distinct subject/background pairs, so no two images embed the same
PAIRS = [("red", "blue"), ("green", "white"), ("blue", "yellow"), ("yellow", "black"), ("black", "green"),
         ("white", "red")]
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def write_images(folder):
    folder.mkdir()
    for subject, background in PAIRS:
        picture(subject, background, size=48).save(folder / f"{subject}-{background}.png")
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("online") / "photos")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random-weight transformers CLIP (32 px images, 16-d projections) with a byte-level BPE
    tokenizer of single characters, saved as a model folder."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    special = dict(bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                   pad_token_id=vocab["<|endoftext|>"])
    config = CLIPConfig(text_config=dict(TINY, vocab_size=len(vocab), max_position_embeddings=77, **special),
                        vision_config=dict(TINY, image_size=32, patch_size=8), projection_dim=16)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    folder = tmp_path_factory.mktemp("online") / "tiny-clip"
    CLIPModel(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    """A random-weight BLIP captioner with a small WordPiece (BERT) tokenizer, saved as a model
    folder. Its special tokens are never predicted, so every caption has words."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    vocab = {w: i for i, w in enumerate(specials + "a the red blue boat sea painting of woman dog".split())}
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]")
    text = dict(TINY, vocab_size=len(vocab), encoder_hidden_size=32, max_position_embeddings=64,
                bos_token_id=vocab["[DEC]"], sep_token_id=vocab["[SEP]"], eos_token_id=vocab["[SEP]"], pad_token_id=0)
    config = BlipConfig(text_config=text, vision_config=dict(TINY, image_size=32, patch_size=8),
                        projection_dim=16, image_text_hidden_size=16)
    model = BlipForConditionalGeneration(config)
    with torch.no_grad():
        model.text_decoder.cls.predictions.bias[: len(specials)] = -1e4
    folder = tmp_path_factory.mktemp("online") / "tiny-blip"
    model.save_pretrained(folder)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    processor.save_pretrained(folder)
    return folder


# ---- 1. transformers CLIP from a folder: build, text and image search, exact = HNSW -----------------
@pytest.mark.slow
def test_hf_clip_folder_builds_a_collection_that_searches_alike_exactly_and_with_hnsw(tiny_clip, photos, tmp_path):
    out = build(BuildConfig("folder", str(photos), model=f"hf:{tiny_clip}", captioner="none"), tmp_path / "c",
                progress=False)
    exact = SearchService(out, index="exact")  # the encoder comes from the manifest's spec
    graph = SearchService(out, index="hnsw", encoder=exact.encoder)
    assert exact.encoder.dim == 16 and exact.collection.image_emb.shape == (len(PAIRS), 16)
    np.testing.assert_allclose(np.linalg.norm(exact.collection.image_emb, axis=1), 1, atol=1e-5)
    query = picture("red", "green", size=48)
    for search in (lambda s: s.text_to_image("a red boat on a blue sea", k=4, target="image"),
                   lambda s: s.image_to_image(query, k=4), lambda s: s.image_to_image("red-blue.png", k=4)):
        a, b = search(exact), search(graph)
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-4)
    assert exact.image_to_image("red-blue.png", k=1)[0].id == "red-blue.png"


# ---- 2. BLIP from a folder: captions, and a build that stores them ----------------------------------
@pytest.mark.slow
def test_blip_folder_captions_images_and_a_build_stores_the_captions(tiny_blip, photos, fake_encoder, tmp_path):
    images = [load_image(p) for p in sorted(photos.iterdir())]
    captions = models.load_captioner(f"blip:{tiny_blip}").caption(images)
    assert len(captions) == len(images) and all(isinstance(c, str) and c.strip() for c in captions)
    assert "[DEC]" not in " ".join(captions)
    assert models.caption_images(images[:2], f"blip:{tiny_blip}", batch_size=1) == captions[:2]

    out = build(BuildConfig("folder", str(photos), model="fake", captioner=f"blip:{tiny_blip}"), tmp_path / "c",
                progress=False)
    c = Collection.load(out)
    assert c.manifest.models["captioner"] == f"blip:{tiny_blip}"
    for row in range(len(c)):
        caption = c.item(row)["caption"]
        assert caption.strip() and c.item_captions(row) == [caption]


# ---- 3. the hub source on a local dataset, offline ---------------------------------------------------
STYLES, GENRES = ["Baroque", "Cubism", "Rococo"], ["landscape", "portrait"]


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory):
    """A WikiArt-shaped dataset folder: data/train-00000-of-00001.parquet with an image column,
    two class-label columns (style, genre) and a text column (title)."""
    import datasets

    rows = [(picture(s, b), i % 3, i % 2, f"A {s} thing on {b}") for i, (s, b) in enumerate(PAIRS)]
    ds = datasets.Dataset.from_dict({"image": [r[0] for r in rows], "style": [r[1] for r in rows],
                                     "genre": [r[2] for r in rows], "title": [r[3] for r in rows]})
    ds = ds.cast_column("image", datasets.Image())
    ds = ds.cast_column("style", datasets.ClassLabel(names=STYLES)).cast_column("genre", datasets.ClassLabel(names=GENRES))
    root = tmp_path_factory.mktemp("online") / "wikiart-local"
    (root / "data").mkdir(parents=True)
    ds.to_parquet(root / "data" / "train-00000-of-00001.parquet")
    return root


def test_hub_source_streams_a_local_dataset_offline_with_label_names(local_dataset):
    for path in (local_dataset, local_dataset / "data" / "train-00000-of-00001.parquet"):
        records = list(open_source("hub", str(path), text_column="title"))
        assert len(records) == len(PAIRS)
        assert records[1].metadata == {"style": "Cubism", "genre": "portrait"}
        assert records[1].texts == ["A green thing on white"]
        assert load_image(records[0].image).size == (64, 64)
    art = list(open_source("wikiart-hub", str(local_dataset)))
    assert art[2].metadata == {"style": "Rococo", "genre": "landscape", "title": "A blue thing on yellow"}


def test_a_build_from_a_local_hub_dataset_offers_its_labels_as_filters(local_dataset, fake_encoder, tmp_path):
    out = build(BuildConfig("hub", str(local_dataset), model="fake", captioner="none", options={"text_column": "title"}),
                tmp_path / "c", progress=False)
    service = SearchService(out)
    fields = service.collection.filter_fields()
    assert sorted(fields["style"]) == STYLES and sorted(fields["genre"]) == GENRES
    hits = service.omni("red", k=10, filters={"style": "Baroque"})
    assert {h.metadata["style"] for h in hits} == {"Baroque"} and len(hits) == 2
    assert service.collection.item_captions(0) == ["A red thing on blue"]


def test_hub_source_failures_are_one_line_and_name_the_fix(local_dataset, tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "notes.txt").write_text("hello")
    cases = [(str(tmp_path / "missing.parquet"), {}, SourceError, "not found: give an existing folder"),
             (str(local_dataset), {"split": "validation"}, SourceError, "cannot be opened with split 'validation'"),
             (str(local_dataset), {"image_column": "picture"}, SourceError, "no column 'picture'"),
             (str(tmp_path / "broken.parquet"), {}, SourceError, "broken.parquet"),
             (str(tmp_path / "notes.txt"), {}, SourceError, "is not one of .parquet"),
             ("someone/not-cached", {}, HubError, "HF_HUB_OFFLINE is set")]
    for path, options, error, message in cases:
        with pytest.raises(error, match=message) as e:
            list(open_source("hub", path, **options))
        assert "\n" not in str(e.value)


# ---- 4. auto chooses the online models when they are cached ----------------------------------------
def fake_cache(root, repo: str, filename: str):
    """A snapshot of `repo` laid out as huggingface_hub's cache keeps it."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123456789abcdef")
    (folder / "snapshots" / "0123456789abcdef").mkdir(parents=True)
    (folder / "snapshots" / "0123456789abcdef" / filename).write_bytes(b"{}")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))  # read once at import
    return cache


CACHED = [pytest.param(models.resolve_encoder, models.ONLINE_ENCODER, models.OFFLINE_ENCODER,
                       "timm/vit_base_patch32_clip_224.openai", "open_clip_config.json",
                       marks=pytest.mark.slow, id="encoder"),  # open_clip is slow to import
          pytest.param(models.resolve_captioner, models.ONLINE_CAPTIONER, models.OFFLINE_CAPTIONER,
                       "Salesforce/blip-image-captioning-base", "config.json", id="captioner")]


@pytest.mark.parametrize("resolve, online, offline, repo, filename", CACHED)
def test_auto_uses_the_online_model_only_when_it_is_cached(hf_cache, caplog, resolve, online, offline, repo, filename):
    with caplog.at_level(logging.INFO, logger="mosaic"):
        assert resolve("auto") == offline
    assert f"using offline {offline} instead of {online} (HF_HUB_OFFLINE is set)" in caplog.text
    assert models._hub_repo(online) == repo
    fake_cache(hf_cache, repo, filename)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mosaic"):
        assert resolve("auto") == online
    assert f"model auto: using {online} (found in the local cache)" in caplog.text


# ---- 5. open_clip specs must name their weights -----------------------------------------------------
def test_open_clip_without_pretrained_weights_is_refused():
    with pytest.raises(UsageError, match=r"would have random weights.*open_clip:ViT-B-32/openai.*"
                                         r"open_clip:ViT-B-32/random for random weights"):
        models.load_encoder("open_clip:ViT-B-32")


@pytest.mark.slow  # open_clip is slow to import
def test_open_clip_weights_and_architectures_are_checked():
    from mosaic.models.clip import open_clip_weights

    assert open_clip_weights("ViT-B-32/openai") == ("ViT-B-32", "openai")
    assert open_clip_weights("ViT-B-32/random") == ("ViT-B-32", None)
    with pytest.raises(UsageError, match="has no pretrained weights 'nonsense'. Use one of: openai"):
        models.load_encoder("open_clip:ViT-B-32/nonsense")
    with pytest.raises(UsageError, match="Unknown open_clip architecture 'ViT-Q-32'"):
        models.load_encoder("open_clip:ViT-Q-32/random")


def test_the_command_line_refuses_random_weights_in_one_line(photos, tmp_path):
    from mosaic import cli

    with pytest.raises(SystemExit, match="^error: open_clip:ViT-B-32 names no pretrained weights") as e:
        cli.main(["build", "folder", str(photos), "--model", "open_clip:ViT-B-32", "--captioner", "none",
                  "--out", str(tmp_path / "c"), "--quiet"])
    assert "\n" not in str(e.value) and not (tmp_path / "c").exists()


@pytest.mark.slow
def test_open_clip_random_weights_when_asked_for():
    encoder = models.load_encoder("open_clip:ViT-S-32-alt/random")
    assert encoder.spec == "open_clip:ViT-S-32-alt/random" and encoder.dim == 256
    emb = np.concatenate([encoder.encode_images([picture("red", "blue")]), encoder.encode_texts(["a red boat"])])
    assert emb.shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


# ---- 6. models that cannot load: one line that names the fix ----------------------------------------
@pytest.mark.slow  # transformers is slow to import
def test_model_folders_that_cannot_load_say_so_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    cases = [(models.load_encoder, f"hf:{tmp_path / 'empty'}", UsageError, "cannot be loaded from that folder"),
             (models.load_captioner, f"blip:{tmp_path / 'empty'}", UsageError, "written by save_pretrained"),
             (models.load_encoder, f"hf:{tmp_path / 'bert'}", UsageError, "cannot be loaded from that folder"),
             (models.load_encoder, "hf:someone/not-cached", HubError, "not in the local cache and HF_HUB_OFFLINE"),
             (models.load_captioner, "blip:someone/not-cached", HubError, "--captioner labels")]
    for load, spec, error, message in cases:
        with pytest.raises(error, match=message) as e:
            load(spec)
        assert "\n" not in str(e.value), str(e.value)
