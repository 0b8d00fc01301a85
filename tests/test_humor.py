"""Humor scoring's pure logic, on literal inputs: no sample data, no model weights (the tests that
train or load the backbone are in test_humor_training.py)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from mosaic import cli
from mosaic.humor.data import mark_edit
from mosaic.humor.evaluate import metrics
from mosaic.humor.ridge import fit_blend
from mosaic.humor.train import length_batches


def test_marked_pairs_bracket_the_words_that_differ():
    assert mark_edit("a b c", "a x y c") == ("a [b] c", "a [x y] c")
    assert mark_edit("Why is the cat late?", "traffic jam") == ("Why is the cat late?", "traffic jam")


def test_metrics_on_hand_computed_predictions():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    perfect = metrics(y, y, (0, 3))
    assert perfect["rmse"] == 0 and perfect["r2"] == 1 and perfect["accuracy"] == 1 and perfect["macro_f1"] == 1
    assert perfect["confusion"] == np.eye(4, dtype=int).tolist()
    m = metrics(y, np.array([1.0, 1.0, 1.0, 1.4]), (0, 3))
    assert m["rmse"] == pytest.approx(np.sqrt((1 + 0 + 1 + 1.6 ** 2) / 4))
    assert m["mae"] == pytest.approx((1 + 0 + 1 + 1.6) / 4)
    assert m["r2"] == pytest.approx(1 - (1 + 0 + 1 + 1.6 ** 2) / 5)
    assert m["accuracy"] == 0.25  # every prediction rounds to grade 1; only the true 1 is right
    assert m["confusion"] == [[0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]]
    assert m["macro_f1"] == pytest.approx((2 * 1 / (2 + 3)) / 4)
    assert m["spearman"] == pytest.approx(3 / np.sqrt(15))  # ranks 2,2,2,4 against 1,2,3,4


def test_blend_weight_is_the_least_squares_mix():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    assert fit_blend(0.7 * a + 0.3 * b, a, b) == pytest.approx(0.3)
    assert fit_blend(a, a, b) == pytest.approx(0, abs=1e-12)
    assert fit_blend(2 * b - a, a, b) == 1  # the best mix lies outside [0, 1]


def test_length_batches_hold_every_row_once_with_similar_lengths():
    lengths = np.random.default_rng(0).integers(5, 60, size=1000).tolist()
    batches = length_batches(lengths, 32, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    assert sorted(map(len, batches)) == [8] + [32] * 31
    assert max(np.ptp([lengths[i] for i in b]) for b in batches) <= 5  # of 55 lengths in all
    again = length_batches(lengths, 32, np.random.default_rng(1))
    assert all(np.array_equal(x, y) for x, y in zip(batches, again))  # the same seed: the same batches


def test_bad_input_gets_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit, match="not a humor model"):
        cli.main(["humor", "score", str(tmp_path), str(tmp_path / "x.csv")])
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["humor", "train", "x", "--scale", "4-1"])
    assert "should look like 0-3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["humor", "train", "x", "--members", "0"])
    assert "should be a whole number, 1 or more" in capsys.readouterr().err


def test_the_settings_load_without_torch():
    code = "import mosaic.humor.config, sys; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
