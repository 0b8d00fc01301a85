"""Evaluating a humor model: regression errors, correlations and graded accuracy beside two
baselines, per-row scores as CSV, and the report as text."""
from __future__ import annotations

import csv
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .data import Example
from .model import HumorModel
from .ridge import TfidfRidge


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    """Root mean squared error of predictions `p` against the truth `y`."""
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(p)) ** 2)))


def metrics(y: np.ndarray, p: np.ndarray, scale: tuple[float, float]) -> dict:
    """Regression errors and correlations; then both sides rounded to the scale's whole grades
    (Humicroedit: 0 not funny .. 3 funny) for accuracy, macro F1 and a confusion matrix."""
    from scipy.stats import pearsonr, spearmanr

    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    flat = np.ptp(p) == 0 or np.ptp(y) == 0
    grades = np.arange(math.ceil(scale[0]), math.floor(scale[1]) + 1)
    yc = np.clip(np.rint(y), grades[0], grades[-1]).astype(int) - grades[0]
    pc = np.clip(np.rint(p), grades[0], grades[-1]).astype(int) - grades[0]
    confusion = np.zeros((len(grades), len(grades)), int)
    np.add.at(confusion, (yc, pc), 1)
    f1s = []
    for g in range(len(grades)):
        tp, fp, fn = confusion[g, g], confusion[:, g].sum() - confusion[g, g], confusion[g].sum() - confusion[g, g]
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"rmse": rmse(y, p), "mae": float(np.mean(np.abs(y - p))),
            "r2": float(1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)),
            "pearson": 0.0 if flat else float(pearsonr(y, p)[0]),
            "spearman": 0.0 if flat else float(spearmanr(y, p)[0]),
            "accuracy": float(np.trace(confusion) / len(y)), "macro_f1": float(np.mean(f1s)),
            "grades": grades.tolist(), "confusion": confusion.tolist()}


def evaluate(model: HumorModel, test_set: list[Example], train_set: list[Example]) -> dict:
    """The model's metrics on `test_set`, each member's and their mean's when there are several,
    beside the two baselines fitted on `train_set`; and how its training went."""
    scale = model.config.scale
    y = np.array([e.score for e in test_set])
    prompts, answers = [e.prompt for e in test_set], [e.answer for e in test_set]
    members, ridge = model.member_scores(prompts, answers), model.ridge_scores(prompts, answers)
    predictions = {"model": model.blended(members.mean(0), ridge)}
    if ridge is not None or len(members) > 1:
        predictions["cross-encoders"] = np.clip(members.mean(0), *scale)
    if len(members) > 1:
        predictions.update({f"member {k}": np.clip(m, *scale) for k, m in enumerate(members, 1)})
    if ridge is not None:
        predictions["tf-idf+emb ridge"] = np.clip(ridge, *scale)
    predictions["train mean"] = np.full(len(y), np.mean([e.score for e in train_set]))
    predictions["tf-idf + ridge"] = np.clip(TfidfRidge.fit(train_set).predict(prompts, answers), *scale)
    history = model.info.get("history", {})
    return {"examples": len(y), "scale": list(scale), "backbone": model.config.backbone,
            "results": {name: metrics(y, p, scale) for name, p in predictions.items()},
            "training": {"config": asdict(model.config), "offset": model.offset, "data": model.info.get("data"),
                         "blend": model.blend,
                         **{k: history.get(k) for k in ("best_dev_rmse", "held_out", "stopped", "minutes")}}}


def write_scores(model: HumorModel, examples: list[Example], out: Path, explain: bool = False) -> Path:
    """A CSV of prompt, answer, score (and, with `explain`, the three words that move it most)."""
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "answer", "score"] + (["words"] if explain else []))
        if explain:
            for e in examples:
                score, parts = model.explain(e.prompt, e.answer)
                top = sorted(parts, key=lambda w: -abs(w["contribution"]))[:3]
                writer.writerow([e.prompt, e.answer, f"{score:.4f}",
                                 " ".join(f"{w['word']}:{w['contribution']:+.3f}" for w in top)])
        else:
            scores = model.predict([e.prompt for e in examples], [e.answer for e in examples])
            writer.writerows([e.prompt, e.answer, f"{s:.4f}"] for e, s in zip(examples, scores))
    return out


def report_text(report: dict) -> str:
    """The metrics as a table, then each system's confusion matrix (rows: true grade)."""
    keys = ["rmse", "mae", "r2", "pearson", "spearman", "accuracy", "macro_f1"]
    lines = [f"{report['examples']} examples, scale {report['scale'][0]:g}-{report['scale'][1]:g}",
             f"{'system':<16}" + "".join(f"{k:>10}" for k in keys)]
    for name, m in report["results"].items():
        lines.append(f"{name:<16}" + "".join(f"{m[k]:>10.4f}" for k in keys))
    for name, m in report["results"].items():
        lines.append(f"\nconfusion matrix, {name} (rows: true grade, columns: predicted; grades rounded)")
        lines.append("      " + "".join(f"{g:>7}" for g in m["grades"]))
        lines += [f"{g:>6}" + "".join(f"{c:>7}" for c in row) for g, row in zip(m["grades"], m["confusion"])]
    return "\n".join(lines)
