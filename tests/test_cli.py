import json
import re
import subprocess
import sys

import pytest
from PIL import Image

COMMANDS = ("build", "update", "dedup", "verify", "search", "eval", "train", "composed", "humor", "publish", "serve", "info")


@pytest.fixture(autouse=True)
def own_artifacts(tmp_path, monkeypatch):
    """Commands write their default outputs under the test's folder, never into the checkout's artifacts/."""
    monkeypatch.setenv("MOSAIC_ARTIFACTS", str(tmp_path / "artifacts"))


def mosaic(*args, python_flags=()):
    return subprocess.run([sys.executable, *python_flags, "-m", "mosaic", *map(str, args)],
                          capture_output=True, text=True)


def assert_one_line_error(out, message):
    """The command failed with one line `error: ...` naming `message` as the last line of stderr
    (log lines may come before it), and no traceback."""
    assert out.returncode != 0, out.stdout
    assert "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [out.stderr.strip().splitlines()[-1]], out.stderr
    assert message in errors[0], out.stderr


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of two small PNG images."""
    folder = tmp_path_factory.mktemp("images")
    for name, colour in (("red", (220, 40, 40)), ("blue", (40, 70, 220))):
        Image.new("RGB", (32, 32), colour).save(folder / f"{name}.png")
    return folder


# ---- the fast tier: no model weights, no sample data ------------------------------------------
def test_help_lists_every_command_without_importing_heavy_libraries():
    out = mosaic("--help", python_flags=("-X", "importtime"))
    assert out.returncode == 0, out.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "mosaic.cli" in imported
    assert not {"torch", "gradio", "transformers", "pyarrow"} & imported
    listed = re.findall(r"^    (\S+)", out.stdout, re.M)
    assert listed == list(COMMANDS) and "--debug" in out.stdout


def test_build_help_shows_the_build_config_defaults():
    from mosaic.build import BuildConfig

    d = BuildConfig("folder")
    out = mosaic("build", "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for option, default in (("--shard-size SHARD_SIZE", d.shard_size), ("--batch-size BATCH_SIZE", d.batch_size),
                            ("--model MODEL", d.model), ("--captioner CAPTIONER", d.captioner)):
        assert re.search(rf"{option} (?:(?! --).)*\(default: {default}\)", text), option
    assert "(default: 256)" in text


def test_defaults_come_from_the_config_dataclasses():
    from dataclasses import asdict

    from mosaic import cli
    from mosaic.build import BuildConfig
    from mosaic.composed import CombinerConfig
    from mosaic.train import TrainConfig

    p = cli.parser()
    build, fields = vars(p.parse_args(["build", "folder"])), ("model", "captioner", "vocab", "shard_size", "batch_size")
    assert {k: build[k] for k in fields} == {k: getattr(BuildConfig("folder"), k) for k in fields}
    train = vars(p.parse_args(["train", "c"]))
    assert all(train[k] == v for k, v in asdict(TrainConfig()).items() if k in train)
    combiner = vars(p.parse_args(["composed", "train", "c", "cirr"]))
    assert (combiner["rounds"], combiner["epochs"]) == (CombinerConfig().rounds, CombinerConfig().epochs)
    humor = vars(p.parse_args(["humor", "train", "data"]))
    expected = asdict(cli._humor_config_class()())
    expected["lora_targets"] = ",".join(expected["lora_targets"])
    shared = set(expected) & set(humor)
    assert {k: humor[k] for k in shared} == {k: expected[k] for k in shared} and len(shared) >= 14


@pytest.mark.parametrize("args, message", [
    (("search", "/nonexistent/collection", "dog"), "No collection at"),
    (("build", "captions", "/nonexistent/flickr"), "not found"),
    (("search", "{tiny}", "dog", "--filter", "style"), "should look like field=value"),
    (("search", "{tiny}", "dog", "--tag", "mood:calm=nan"), "must be a finite number"),
    (("search", "{tiny}", "dog", "--tag", "calm"), "should look like category:tag=weight"),
    (("search", "{tiny}", "dog", "--ray"), "give --shard-rows too"),
    (("train", "{tiny}", "--out", "model.bin"), "should end in .pt"),
    (("train", "{tiny}", "--members", "0"), "--members must be at least 1"),
    (("build", "folder", "{images}", "--model", "typo", "--out", "{tmp}/c"), "Unknown model spec 'typo'"),
    (("build", "folder", "{images}", "--workers", "0", "--out", "{tmp}/c"), "--workers must be at least 1"),
    (("humor", "score", "{tmp}", "{tmp}/x.csv", "--columns", "answer"), "column 'answer' should look like"),
])
def test_user_errors_before_any_model_loads_are_one_line(tiny, images, tmp_path, args, message):
    # `tiny` was built with the fake encoder, which a new process cannot load: these fail before.
    out = mosaic(*(a.format(tiny=tiny.collection.path, images=images, tmp=tmp_path) for a in args))
    assert_one_line_error(out, message)


def test_debug_shows_the_traceback():
    out = mosaic("--debug", "search", "/nonexistent/collection", "dog")
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "CollectionError: No collection at" in out.stderr


# ---- the slow tier: real models and sample data --------------------------------------------------
@pytest.mark.slow
def test_search_prints_json_hits_with_explanations(flickr):
    out = mosaic("search", flickr.collection.path, "a dog running on the grass", "--mode", "image", "-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert len(hits) == 3 and {"id", "score", "caption", "metadata", "explanation"} <= set(hits[0])


@pytest.mark.slow
def test_search_prints_a_table(wikiart):
    out = mosaic("search", wikiart.collection.path, "a city street", "--filter", "genre=cityscape", "-k", "2")
    assert out.returncode == 0, out.stderr
    assert "rank" in out.stdout and "Cornelia Street.jpg" in out.stdout


@pytest.mark.slow
def test_eval_retrieval_prints_a_table_and_writes_json_csv(flickr, tmp_path):
    out = mosaic("eval", "retrieval", flickr.collection.path, "--split", "test", "--candidates", "50",
                 "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv")
    assert out.returncode == 0, out.stderr
    assert "200 images, 1000 captions, 50 candidates" in out.stdout and "t2i random" in out.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["candidates"] == 50 and report["split"] == "test" and report["model"] == "lite"
    for direction in ("t2i", "i2t"):
        assert set(report[direction]) == {"R@1", "R@5", "R@10", "MRR", "NDCG@10"}
    assert (tmp_path / "r.csv").read_text().startswith("section,direction,candidates")


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (("search", "{wikiart}", "a city", "--filter", "style=Vaporwave"), "Unknown value 'Vaporwave'"),
    (("search", "{wikiart}", ""), "empty"),
])
def test_user_errors_are_one_line_not_a_traceback(wikiart, args, message):
    out = mosaic(*(a.format(wikiart=wikiart.collection.path) for a in args))
    assert_one_line_error(out, message)


@pytest.mark.slow
def test_an_unknown_vocabulary_is_one_line(images, tmp_path):
    out = mosaic("build", "folder", images, "--vocab", "typo", "--model", "lite", "--captioner", "none",
                 "--out", tmp_path / "c")
    assert_one_line_error(out, "Unknown tag vocabulary 'typo'")


@pytest.mark.slow
def test_a_file_that_is_no_checkpoint_is_one_line(images, tmp_path):
    (tmp_path / "not-a-checkpoint.pt").write_bytes(b"these bytes are no checkpoint\n" * 8)
    out = mosaic("build", "folder", images, "--model", f"lite:{tmp_path / 'not-a-checkpoint.pt'}",
                 "--captioner", "none", "--out", tmp_path / "c")
    assert_one_line_error(out, "is not a checkpoint written by `mosaic train`")


@pytest.mark.slow
def test_eval_of_a_collection_without_human_captions_is_one_line(images, tmp_path):
    built = mosaic("build", "folder", images, "--model", "lite", "--captioner", "none", "--out", tmp_path / "c",
                   "--quiet")
    assert built.returncode == 0, built.stderr
    out = mosaic("eval", "retrieval", tmp_path / "c")
    assert_one_line_error(out, "has no human captions")
