import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def mosaic(*args):
    return subprocess.run([sys.executable, "-m", "mosaic", *map(str, args)], capture_output=True, text=True)


def test_search_prints_json_hits_with_explanations(flickr):
    out = mosaic("search", flickr.collection.path, "a dog running on the grass", "--mode", "image", "-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert len(hits) == 3 and {"id", "score", "caption", "metadata", "explanation"} <= set(hits[0])


def test_search_prints_a_table(wikiart):
    out = mosaic("search", wikiart.collection.path, "a city street", "--filter", "genre=cityscape", "-k", "2")
    assert out.returncode == 0, out.stderr
    assert "rank" in out.stdout and "Cornelia Street.jpg" in out.stdout


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


@pytest.mark.parametrize("args, message", [
    (("search", "/nonexistent/collection", "dog"), "No collection at"),
    (("build", "captions", "/nonexistent/flickr"), "not found"),
    (("search", "{wikiart}", "a city", "--filter", "style=Vaporwave"), "Unknown value 'Vaporwave'"),
    (("search", "{wikiart}", ""), "empty"),
    (("train", "{wikiart}", "--out", "model.bin"), "should end in .pt"),
])
def test_user_errors_are_one_line_not_a_traceback(wikiart, args, message):
    out = mosaic(*(a.format(wikiart=wikiart.collection.path) for a in args))
    assert out.returncode != 0
    assert message in out.stderr and "Traceback" not in out.stderr
