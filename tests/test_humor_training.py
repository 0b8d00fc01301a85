"""Humor scoring on the real Humicroedit sample with the packaged MiniLM backbone; training runs
on small subsets only (the full run is bench/humor_training.py). Every test here is slow: it reads
the sample data, loads the backbone or trains (the pure logic is tested in test_humor.py)."""
import csv
import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest
from conftest import data_dir

from mosaic import cli
from mosaic.errors import HubError, SourceError
from mosaic.humor.config import ONLINE_BACKBONE, HumorConfig
from mosaic.humor.data import Example, load_examples, mark_edit, recenter
from mosaic.humor.evaluate import rmse
from mosaic.humor.model import HumorModel
from mosaic.humor.ridge import TfidfRidge
from mosaic.humor.train import train as train_model


@pytest.fixture(scope="module")
def data():
    return data_dir("humicroedit")


@pytest.fixture(scope="module")
def sets(data):
    return load_examples(str(data / "train.csv")), load_examples(str(data / "dev.csv"))


@pytest.fixture(scope="module")
def model_dir(humor_model):
    return humor_model


@pytest.fixture(scope="module")
def model(model_dir):
    return HumorModel.load(model_dir)


@pytest.mark.slow
def test_humicroedit_rows_become_prompt_answer_score(sets):
    train, dev = sets
    assert (len(train), len(dev)) == (9652, 2419)
    first = train[0]
    assert first.prompt == "France is ‘ hunting down its citizens who joined Isis ’ without trial in Iraq"
    assert first.answer == "France is ‘ hunting down its citizens who joined twins ’ without trial in Iraq"
    assert first.score == pytest.approx(0.2)
    assert not any("<" in e.prompt and "/>" in e.prompt for e in train)
    assert all(0 <= e.score <= 3 for e in train + dev)


@pytest.mark.slow
def test_funlines_quirks(data, sets):
    funlines = load_examples(str(data / "train_funlines.csv"))
    assert len(funlines) == 8248 - 152  # rows whose judges were lost (grades "0") are dropped
    assert all(0 <= e.score <= 3 for e in funlines)
    main = sets[0]
    shifted = recenter(funlines, main, (0.0, 3.0))
    assert np.mean([e.score for e in funlines]) > np.mean([e.score for e in main]) + 0.2
    assert np.mean([e.score for e in shifted]) == pytest.approx(np.mean([e.score for e in main]), abs=0.02)


@pytest.mark.slow
def test_generic_tables_with_text_or_image_prompts(tmp_path, data_dir_flickr):
    image = sorted((data_dir_flickr / "images").iterdir())[0]
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / image.name).write_bytes(image.read_bytes())
    rows = [{"odai": "", "pic": f"pics/{image.name}", "boke": "it is plotting something", "stars": 3.5},
            {"odai": "Why is the cat late?", "pic": "", "boke": "traffic on the keyboard", "stars": 1}]
    (tmp_path / "bokete.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    examples = load_examples(str(tmp_path / "bokete.jsonl"), prompt="odai", answer="boke", score="stars",
                                   image="pic", captioner="labels")
    assert examples[0].prompt.startswith("a photo of")  # the image was captioned
    assert examples[1] == Example("Why is the cat late?", "traffic on the keyboard", 1.0)

    with open(tmp_path / "plain.csv", "w", newline="") as f:
        csv.writer(f).writerows([["prompt", "answer"], ["a prompt", "an answer"]])
    assert load_examples(str(tmp_path / "plain.csv"), need_scores=False)[0].score is None
    with pytest.raises(SourceError, match="needs a score"):
        load_examples(str(tmp_path / "plain.csv"))
    with pytest.raises(SourceError, match="needs an 'answer' column"):
        load_examples(str(tmp_path / "bokete.jsonl"))
    with pytest.raises(SourceError, match="No such data file"):
        load_examples(str(tmp_path / "missing.csv"))


@pytest.fixture
def data_dir_flickr():
    return data_dir("flickr8k-1k")


@pytest.mark.slow
def test_marked_pairs_bracket_the_edit_of_a_headline(sets):
    first = sets[0][0]
    prompt, answer = mark_edit(first.prompt, first.answer)
    assert prompt == "France is ‘ hunting down its citizens who joined [Isis] ’ without trial in Iraq"
    assert answer == "France is ‘ hunting down its citizens who joined [twins] ’ without trial in Iraq"


@pytest.mark.slow
def test_tfidf_ridge_beats_the_mean_on_dev_and_reloads_from_plain_numbers(sets):
    from sklearn.feature_extraction.text import TfidfVectorizer

    train, dev = sets
    y = np.array([e.score for e in dev])
    prompts, answers = [e.prompt for e in dev], [e.answer for e in dev]
    mean = rmse(y, np.full(len(y), np.mean([e.score for e in train])))
    ridge = TfidfRidge.fit(train)
    assert rmse(y, ridge.predict(prompts, answers)) < mean - 0.005
    fitted = TfidfVectorizer(min_df=2, ngram_range=(1, 2), sublinear_tf=True).fit([e.answer for e in train])
    assert abs(ridge.answers.transform(answers) - fitted.transform(answers)).max() < 1e-12
    reloaded = TfidfRidge(json.loads(json.dumps(ridge.state)))
    np.testing.assert_allclose(reloaded.predict(prompts, answers), ridge.predict(prompts, answers), atol=1e-12)


@pytest.mark.slow
def test_embeddings_are_the_plain_backbones_and_help_the_ridge(model, sets):
    """The ridge's dense features come from the backbone with the adapters off: all-MiniLM-L6-v2's
    own sentence embeddings of the edit, the replaced word and the answer. With them, a ridge fitted
    on 2,000 headlines beats TF-IDF alone on dev."""
    from mosaic.models.lite import MiniLMTextEncoder

    prompt, answer = "Trump meets with Putin in Helsinki", "Trump meets with penguins in Helsinki"
    expected = MiniLMTextEncoder(max_length=48).encode(["penguins", "Putin", answer])
    np.testing.assert_allclose(model.embeddings([prompt], [answer]), expected.reshape(1, -1), atol=1e-5)
    train, dev = sets[0][:2000], sets[1][:500]
    y = np.array([e.score for e in dev])
    prompts, answers = [e.prompt for e in dev], [e.answer for e in dev]
    dense = model.embeddings([e.prompt for e in train], [e.answer for e in train])
    tfidf = rmse(y, TfidfRidge.fit(train).predict(prompts, answers))
    ridge = TfidfRidge.fit(train, dense)
    both = rmse(y, ridge.predict(prompts, answers, model.embeddings(prompts, answers)))
    assert both < tfidf - 0.005, (both, tfidf)


@pytest.mark.slow
def test_training_saves_small_adapters_that_reload_exactly(model_dir, model, sets):
    history = json.loads((model_dir / "history.json").read_text())
    saved = json.loads((model_dir / "humor.json").read_text())
    assert saved["members"] == [{"folder": "member-1", "marked": False}, {"folder": "member-2", "marked": True}]
    assert 0 <= saved["blend"] <= 1
    for k, member in enumerate(history["members"], 1):
        assert len(member["evaluations"]) == 2  # one an epoch
        assert member["best_dev_rmse"] == min(e["dev_rmse"] for e in member["evaluations"])
        assert (model_dir / f"member-{k}" / "adapter_model.safetensors").stat().st_size < 5e6
    assert (model_dir / "history.png").stat().st_size > 0
    held = history["held_out"]  # training rows no member saw: the blend fits them at least as well as either part
    assert held["rows"] == 40 and held["blend"] <= min(held["cross-encoders"], held["ridge"]) + 1e-6
    assert history["best_dev_rmse"] == saved["dev_rmse"]
    assert saved["config"]["backbone"] == "minilm" and saved["config"]["lora_r"] == 16
    assert "offset" not in saved["config"] and saved["offset"] == model.offset  # the training mean: model state
    dev = sets[1][:150]
    scores = model.predict([e.prompt for e in dev], [e.answer for e in dev])
    assert rmse([e.score for e in dev], scores) == pytest.approx(saved["dev_rmse"], abs=1e-5)
    assert ((0 <= scores) & (scores <= 3)).all() and np.ptp(scores) > 0
    members = model.member_scores([e.prompt for e in dev], [e.answer for e in dev])
    assert members.shape == (2, 150) and not np.allclose(members[0], members[1])


@pytest.mark.slow
def test_a_blended_model_mixes_the_members_mean_with_the_ridge(model_dir, sets, tmp_path):
    folder = tmp_path / "blended"
    shutil.copytree(model_dir, folder)
    info = json.loads((folder / "humor.json").read_text())
    (folder / "humor.json").write_text(json.dumps({**info, "blend": 0.25}))
    model = HumorModel.load(folder)
    prompts, answers = [e.prompt for e in sets[1][:50]], [e.answer for e in sets[1][:50]]
    members = model.member_scores(prompts, answers).mean(0)
    ridge = TfidfRidge(json.loads((folder / "ridge.json").read_text()))
    ridge = ridge.predict(prompts, answers, model.embeddings(prompts, answers))
    np.testing.assert_allclose(model.predict(prompts, answers), np.clip(0.75 * members + 0.25 * ridge, 0, 3), atol=1e-5)


@pytest.mark.slow
def test_folders_with_the_training_mean_in_the_settings_load_the_same(model_dir, model, sets, tmp_path):
    """Folders written before the training mean became model state keep it in "config"."""
    folder = tmp_path / "legacy"
    shutil.copytree(model_dir, folder)
    info = json.loads((folder / "humor.json").read_text())
    info["config"]["offset"] = info.pop("offset")
    (folder / "humor.json").write_text(json.dumps(info))
    legacy = HumorModel.load(folder)
    assert legacy.offset == model.offset and asdict(legacy.config) == asdict(model.config)
    prompts, answers = [e.prompt for e in sets[1][:50]], [e.answer for e in sets[1][:50]]
    np.testing.assert_array_equal(legacy.predict(prompts, answers), model.predict(prompts, answers))


@pytest.mark.slow
def test_adapters_sit_in_the_top_layers():
    def adapted(config):
        model = HumorModel.new(config)
        return {int(n.split(".layer.")[1].split(".")[0]) for n, p in model.body.named_parameters() if p.requires_grad}

    assert adapted(HumorConfig(backbone="minilm")) == {3, 4, 5}  # the top three of MiniLM's six
    assert adapted(HumorConfig(backbone="minilm", lora_layers=0)) == set(range(6))


@pytest.mark.slow
def test_the_model_fits_what_it_is_trained_on(tmp_path, sets):
    """LoRA and the head together can learn: 96 headlines, trained on repeatedly, are scored far
    better than by their mean (by the cross-encoder alone: nothing held out, no ridge)."""
    train = sets[0][:96]
    config = HumorConfig(backbone="minilm", epochs=10, max_length=48, lr=2e-3, patience=100, evals_per_epoch=1,
                                blend_share=0)
    train_model(train, train[:32], tmp_path, config, progress=False)
    y = np.array([e.score for e in train])
    fitted = HumorModel.load(tmp_path).predict([e.prompt for e in train], [e.answer for e in train])
    assert rmse(y, fitted) < 0.7 * rmse(y, np.full(len(y), y.mean()))


@pytest.mark.slow
def test_a_time_limit_stops_training_and_keeps_the_adapter(tmp_path, sets):
    config = HumorConfig(backbone="minilm", epochs=3, max_length=32, members=3)
    history = train_model(sets[0][:64], sets[1][:16], tmp_path / "a", config, max_minutes=0, progress=False)
    assert vars(config) == vars(HumorConfig(backbone="minilm", epochs=3, max_length=32, members=3))  # not changed
    assert history["stopped"] == "time" and len(history["members"]) == 1  # of 3
    assert len(history["members"][0]["evaluations"]) == 1
    model = HumorModel.load(tmp_path / "a")
    assert [m["folder"] for m in model.info["members"]] == ["member-1"] and model.predict(["a"], ["b"]).shape == (1,)
    train_model(sets[0][:64], sets[1][:16], tmp_path / "b", config, max_minutes=0, progress=False)
    pairs = [e.prompt for e in sets[1][:16]], [e.answer for e in sets[1][:16]]  # the same seed: the same adapter
    again = HumorModel.load(tmp_path / "b")
    np.testing.assert_array_equal(again.member_scores(*pairs), model.member_scores(*pairs))


@pytest.mark.slow
def test_explanations_are_leave_one_out_differences(model):
    prompt = "Trump meets with Putin in Helsinki"
    answer = "Trump meets with penguins in Helsinki"
    score, parts = model.explain(prompt, answer)
    assert [p["word"] for p in parts] == answer.split()
    without = model.predict([prompt], ["Trump meets with in Helsinki"])[0]
    assert parts[3]["contribution"] == pytest.approx(score - without, abs=1e-5)
    ranked = model.rank(prompt, [answer, prompt, "Trump dances with Putin in Helsinki"])
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)


@pytest.mark.slow
def test_cli_eval_prints_metrics_beside_the_baselines(model_dir, data, tmp_path, capsys):
    cli.main(["humor", "eval", str(model_dir), str(data / "dev.csv"), "--limit", "300",
              "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    for word in ("rmse", "spearman", "macro_f1", "train mean", "tf-idf + ridge", "confusion matrix"):
        assert word in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["examples"] == 300
    assert set(report["results"]) == {"model", "cross-encoders", "member 1", "member 2", "tf-idf+emb ridge",
                                      "train mean", "tf-idf + ridge"}
    assert sum(map(sum, report["results"]["model"]["confusion"])) == 300


@pytest.mark.slow
def test_cli_score_writes_scores_and_words(model_dir, tmp_path, capsys):
    with open(tmp_path / "in.csv", "w", newline="") as f:
        csv.writer(f).writerows([["prompt", "answer"], ["Senate passes the budget", "Senate eats the budget"],
                                 ["Storm hits the coast", "Storm hugs the coast"]])
    cli.main(["humor", "score", str(model_dir), str(tmp_path / "in.csv"), "--explain"])
    out = capsys.readouterr().out.strip()
    rows = list(csv.DictReader(open(out)))
    assert [r["answer"] for r in rows] == ["Senate eats the budget", "Storm hugs the coast"]
    assert all(0 <= float(r["score"]) <= 3 and r["words"].count(":") == 3 for r in rows)


@pytest.mark.slow
def test_offline_backbones_get_clear_errors_and_auto_resolves_in_a_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set"):
        HumorModel.new(HumorConfig(backbone=ONLINE_BACKBONE))
    config = HumorConfig()
    assert HumorModel.new(config).config.backbone == "minilm"  # auto, offline
    assert config.backbone == "auto"  # the caller's settings stay as they were
