import json
import shutil

import numpy as np
import pytest
import torch

from mosaic import train as training
from mosaic.errors import CollectionError, SourceError
from mosaic.evaluate import split_rows
from mosaic.models import load_encoder
from mosaic.train import TrainConfig, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(flickr, tmp_path_factory):
    """Two runs' heads trained on the 100 train images of the 300-image fixture, 2 rounds of 4 epochs."""
    out = tmp_path_factory.mktemp("m") / "flickr.pt"
    return train(flickr.collection.path, out, TrainConfig(rounds=1, epochs=4, members=2), progress=False)


def test_training_learns_and_records_each_round(trained):
    work = trained.with_suffix("")
    history = json.loads((work / "history.json").read_text())
    assert len(history["members"]) == 2
    for k, rounds in enumerate(history["members"]):
        assert [r["round"] for r in rounds] == [0, 1] and [r["hard_negatives"] for r in rounds] == [False, True]
        for r in rounds:
            # 200 held-out test images as candidates: random R@10 is 5 %
            assert r["test"]["t2i"]["R@10"] > 25 and r["test"]["i2t"]["R@10"] > 25, r
            assert r["out_of_domain"]["t2i"]["R@10"] > 0  # the 17 skimage photos, recorded every round
        assert (work / f"member-{k}" / "round_1.pt").exists()
        assert json.loads((work / f"member-{k}" / "history.json").read_text())["settings"]["seed"] == k
    assert history["members"][0] != history["members"][1] and trained.exists()  # two seeds, two runs


def test_the_mix_is_chosen_on_validation_images_only(trained):
    history = json.loads((trained.with_suffix("") / "history.json").read_text())
    mix = history["mix"]
    assert mix["validation_images"] == 12 and [t["mix"] for t in mix["tried"]] == [i / 10 for i in range(11)]
    best = max(t["score"] for t in mix["tried"])
    robust = [t["mix"] for t in mix["tried"] if t["score"] >= best - TrainConfig().mix_tolerance]
    assert mix["chosen"] == robust[0]  # the most zero-shot mix within the tolerance of the best
    assert set(history["final"]) == {"test", "out_of_domain"}
    assert (trained.with_suffix("") / "history.png").stat().st_size > 20_000  # both checks by round, the mixes


def test_mined_negatives_are_wrong_train_images_only(trained, flickr):
    c = flickr.collection
    train_rows, test_rows = split_rows(c.ids(), "train"), split_rows(c.ids(), "test")
    validation = training.validation_rows(c.ids(), train_rows, TrainConfig().validation)
    fit = np.setdiff1d(train_rows, validation)
    negatives = np.load(trained.with_suffix("") / "member-0" / "negatives_1.npy")
    features = np.load(trained.with_suffix("") / "features.npz")
    owner = features["owner"][np.isin(features["owner"], fit)]
    assert negatives.shape == (len(owner), 3) == (440, 3)  # 88 of the 100 train images; 12 validate
    assert np.isin(negatives, fit).all() and not np.isin(negatives, np.concatenate([test_rows, validation])).any()
    assert not (negatives == owner[:, None]).any()


def test_checkpoint_is_a_model_spec(trained, flickr, monkeypatch):
    encoder = load_encoder(f"lite:{trained}")
    mix = encoder.heads.mix
    assert encoder.dim == (2 * 256 if mix == 1 else 2 * 256 + 384) and encoder.spec == f"lite:{trained}"
    row = 7
    image = flickr.collection.thumbnail(row)
    img, txt = encoder.encode_images([image]), encoder.encode_texts(flickr.collection.item_captions(row)[:5])
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    assert img.shape == (1, encoder.dim) and txt.shape == (5, encoder.dim)
    assert (txt @ img.T).mean() > 0.2  # its own captions, in the trained space
    zero_shot = load_encoder("lite")
    monkeypatch.setitem(encoder.heads.config, "mix", 1.0)  # the heads alone (the encoder is cached)
    alone = encoder.encode_texts(flickr.collection.item_captions(row)[:5]) @ encoder.encode_images([image]).T
    expected = mix * alone + (1 - mix) * (zero_shot.encode_texts(flickr.collection.item_captions(row)[:5])
                                          @ zero_shot.encode_images([image]).T)
    np.testing.assert_allclose(txt @ img.T, expected, atol=1e-4)  # scores mixed as WiSE-FT mixes them
    members = [m.embed_texts(torch.from_numpy(encoder.text.encode(flickr.collection.item_captions(row)[:5])))
               @ m.embed_images(torch.from_numpy(encoder.image_features([image]))).T for m in encoder.heads.members]
    np.testing.assert_allclose(alone, (members[0] + members[1]).detach().numpy() / 2, atol=1e-4)  # the runs' mean


def test_a_checkpoint_of_one_run_written_before_ensembles_loads(trained, tmp_path):
    from mosaic.models.lite import FIRST_ZERO_SHOT, Heads

    ensemble = torch.load(trained, weights_only=True)
    mix = 0.4  # a one-run checkpoint's mix (its zero-shot part weighs 0.6)
    state = {k.removeprefix("members.0."): v for k, v in ensemble["state"].items() if k.startswith("members.0.")}
    config = ensemble["config"]["members"][0]
    torch.save({"config": {**config, "mix": mix}, "state": state}, tmp_path / "one-run.pt")  # one run's layout
    older = load_encoder(f"lite:{tmp_path / 'one-run.pt'}")
    run = Heads(**config).eval()
    run.load_state_dict(state)
    x = torch.from_numpy(older.text.encode(["a dog runs"]))
    expected = torch.cat([run.embed_texts(x) * mix ** 0.5, x * (1 - mix) ** 0.5], -1)  # one run's mix, as written then
    assert older.dim == 256 + 384 and older.heads.mix == mix
    np.testing.assert_allclose(older.encode_texts(["a dog runs"]), expected.detach().numpy(), atol=1e-6)
    first = {k: v for k, v in config.items() if k != "zero_shot"}  # the first layout: no mix, no zero-shot settings
    torch.save({"config": first, "state": state}, tmp_path / "first.pt")
    oldest = load_encoder(f"lite:{tmp_path / 'first.pt'}")
    assert oldest.heads.mix == 1.0 and oldest.dim == 256 and oldest.zero_shot == FIRST_ZERO_SHOT


def test_a_checkpoint_keeps_the_zero_shot_settings_it_was_trained_with(trained, tmp_path):
    from mosaic.models.lite import FIRST_ZERO_SHOT, ZeroShot

    assert load_encoder(f"lite:{trained}").zero_shot == ZeroShot() and load_encoder("lite").zero_shot == ZeroShot()
    older = torch.load(trained, weights_only=True)
    for member in older["config"]["members"]:
        del member["zero_shot"]  # written before the settings were stored
    torch.save(older, tmp_path / "older.pt")
    encoder = load_encoder(f"lite:{tmp_path / 'older.pt'}")
    assert encoder.zero_shot == FIRST_ZERO_SHOT != ZeroShot()
    expected = encoder.text.encode([p.format("tabby") for p in FIRST_ZERO_SHOT.prompts])[0]
    np.testing.assert_allclose(encoder.label_embeddings[encoder.classifier.labels.index("tabby")], expected, atol=1e-6)


def test_a_subject_split_never_trains_on_its_test_items(flickr, tmp_path):
    c = flickr.collection
    test = np.arange(0, len(c), 3)  # any rows: a subject's items
    out = train(c.path, tmp_path / "s.pt", TrainConfig(rounds=1, epochs=1, members=1), progress=False,
                split=(np.setdiff1d(np.arange(len(c)), test), test))
    negatives = np.load(out.with_suffix("") / "member-0" / "negatives_1.npy")
    history = json.loads((out.with_suffix("") / "history.json").read_text())
    assert not np.isin(negatives, test).any() and "test_rows" in history["settings"]
    assert history["final"]["test"]["t2i"]["R@10"] > 20  # scored on the subject's 100 items (chance: 10 %)


def test_interrupted_training_resumes_after_its_last_round(flickr, tmp_path, monkeypatch):
    out = tmp_path / "m.pt"
    real_mine = training.mine
    calls = []

    def mine_then_die(*args):
        calls.append(1)
        if len(calls) == 3:  # the second run's first mining
            raise KeyboardInterrupt
        return real_mine(*args)

    config = TrainConfig(rounds=2, epochs=1, members=2)
    monkeypatch.setattr(training, "mine", mine_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(flickr.collection.path, out, config, progress=False)
    work = out.with_suffix("")
    done = [len(json.loads((work / f"member-{k}" / "history.json").read_text())["rounds"]) for k in (0, 1)]
    assert done == [3, 1] and not out.exists()
    stamps = [(work / f"member-{k}" / "round_0.pt").stat().st_mtime_ns for k in (0, 1)]
    monkeypatch.setattr(training, "mine", real_mine)
    with pytest.raises(CollectionError, match="--resume"):
        train(flickr.collection.path, out, config, progress=False)
    with pytest.raises(CollectionError, match="other settings"):
        train(flickr.collection.path, out, TrainConfig(rounds=3, epochs=1, members=2), resume=True, progress=False)
    train(flickr.collection.path, out, config, resume=True, progress=False)
    members = json.loads((work / "history.json").read_text())["members"]
    assert [[r["round"] for r in m] for m in members] == [[0, 1, 2]] * 2
    assert [(work / f"member-{k}" / "round_0.pt").stat().st_mtime_ns for k in (0, 1)] == stamps and out.exists()
    with pytest.raises(CollectionError, match="before ensembles"):  # a work folder of one run, as written then
        (work / "round_0.pt").write_bytes(b"")
        train(flickr.collection.path, out, config, resume=True, progress=False)


def test_training_needs_human_captions(flickr_dir, tmp_path):
    from mosaic.build import BuildConfig, build

    (tmp_path / "photos").mkdir()
    for p in sorted((flickr_dir / "images").iterdir())[:3]:
        shutil.copy(p, tmp_path / "photos" / p.name)
    folder = build(BuildConfig("folder", str(tmp_path / "photos"), model="lite", captioner="labels"),
                   tmp_path / "photos-collection", progress=False)
    with pytest.raises(CollectionError, match="no human captions"):
        train(folder, tmp_path / "w.pt", TrainConfig(rounds=0, epochs=1), progress=False)


def test_a_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="not a checkpoint written by `mosaic train`"):
        load_encoder(f"lite:{tmp_path / 'missing.pt'}")
