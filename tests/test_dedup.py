"""Exact and near duplicates, found at build time and left out of results on request (fast tier)."""
import io
import json
import shutil

import numpy as np
from fakes import picture
from PIL import Image

from mosaic.build import BuildConfig, build
from mosaic.collection import Collection
from mosaic.search import SearchService


def textured(subject, background, seed, size=96):
    """A fake-encoder picture with a smooth random texture of its own, as photos have."""
    noise = np.random.default_rng(seed).uniform(-40, 40, (6, 6))
    texture = np.asarray(Image.fromarray(noise.astype(np.float32)).resize((size, size), Image.Resampling.BICUBIC))
    pixels = np.asarray(picture(subject, background, size), np.float32) + texture[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def seeded_folder(root, colours):
    """Pictures, an exact copy, a half-size copy and a low-quality JPEG of one of them."""
    root.mkdir()
    for i, (a, b) in enumerate(colours):
        textured(a, b, seed=i).save(root / f"{i:02d}.png")
    shutil.copy(root / "00.png", root / "00-copy.png")
    original = Image.open(root / "00.png")
    original.resize((48, 48)).save(root / "00-small.png")
    buf = io.BytesIO()
    original.save(buf, "JPEG", quality=30)
    (root / "00-low.jpg").write_bytes(buf.getvalue())
    return root


def test_exact_and_near_duplicates_are_found_apart_and_collapsed(tmp_path, fake_encoder):
    colours = [("red", "blue"), ("green", "white"), ("yellow", "black"), ("white", "green")]
    root = seeded_folder(tmp_path / "photos", colours)
    out = build(BuildConfig("folder", str(root), model="fake", captioner="none"), tmp_path / "c", progress=False)
    found = json.loads((out / "duplicates.json").read_text())
    assert found["exact"] == [["00-copy.png", "00.png"]]
    assert found["near"] == [["00-copy.png", "00-low.jpg", "00-small.png", "00.png"]]
    service = SearchService(out)
    all_hits = [h.id for h in service.text_to_image("red", k=7, target="image")]
    distinct = [h.id for h in service.text_to_image("red", k=4, target="image", distinct=True)]
    assert len(set(all_hits[:4]) & {"00.png", "00-copy.png", "00-small.png", "00-low.jpg"}) == 4
    assert distinct[0] == all_hits[0] and len(distinct) == 4 and set(distinct[1:]) == {"01.png", "02.png", "03.png"}
    assert Collection.load(out).duplicate_groups == found


def test_the_dedup_command_and_search_pages(tmp_path, fake_encoder, capsys):
    from mosaic import cli

    root = seeded_folder(tmp_path / "photos", [("red", "blue"), ("green", "white")])
    out = str(tmp_path / "c")
    cli.main(["build", "folder", str(root), "--model", "fake", "--captioner", "none", "--out", out, "--quiet"])
    capsys.readouterr()
    cli.main(["dedup", out])
    text = capsys.readouterr().out
    assert "1 group(s) of exact duplicates" in text and "00-copy.png  00.png" in text
    cli.main(["dedup", out, "--json"])
    assert json.loads(capsys.readouterr().out)["near"][0][0] == "00-copy.png"
    cli.main(["search", out, "red", "--mode", "image", "-k", "2", "--offset", "1", "--distinct", "--json"])
    assert [h["id"] for h in json.loads(capsys.readouterr().out)] == ["01.png"]
