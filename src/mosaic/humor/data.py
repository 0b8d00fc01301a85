"""Humor data: rated (prompt, answer) pairs read from Humicroedit or a generic table, image prompts
captioned, extra data recentred, and the pairs with their edit marked."""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import hub
from ..errors import HubError, SourceError
from ..models import caption_images
from ..sources import load_image

MARKER = re.compile(r"<([^<>]*)/>")


@dataclass(frozen=True)
class Example:
    """A (prompt, answer) pair and its score (None when unrated)."""

    prompt: str
    answer: str
    score: float | None = None


def read_rows(spec: str) -> list[dict]:
    """The rows of a CSV/TSV/JSON/JSONL file or of `hf://user/dataset[:split]` (default split train)."""
    if spec.startswith("hf://"):
        repo, _, split = spec[5:].partition(":")
        from datasets import load_dataset

        try:
            return list(load_dataset(hub.download_dataset(repo), split=split or "train"))
        except HubError:
            raise
        except Exception as e:  # noqa: BLE001 - surfaced as one clear message
            raise SourceError(f"Cannot read dataset '{repo}': {e}") from None
    path = Path(spec)
    if not path.is_file():
        raise SourceError(f"No such data file: {spec}")
    if path.suffix in (".jsonl", ".json"):
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))


def humicroedit_example(row: dict) -> Example | None:
    """prompt = the original headline, answer = it with the marked word replaced by the edit,
    score = meanGrade. FunLines rows whose `grades` is "0" lost their judges (their meanGrade 0
    is no rating) and are dropped; grades of 4 (off the 0-3 scale) are already left out of
    meanGrade, which is used as is."""
    original, edit = row["original"], row["edit"]
    if len(MARKER.findall(original)) != 1:
        raise SourceError(f"Humicroedit row {row.get('id')}: 'original' must mark exactly one word as <word/>.")
    if str(row.get("grades", "")).strip() == "0":
        return None
    grade = row.get("meanGrade")
    clean = lambda s: " ".join(s.split())  # noqa: E731
    return Example(clean(MARKER.sub(lambda m: m.group(1), original)),
                   clean(MARKER.sub(lambda m: edit, original)),
                   None if grade in (None, "") else float(grade))


def load_examples(spec: str, prompt: str = "prompt", answer: str = "answer", score: str = "score",
                  image: str = "image", captioner: str = "auto", need_scores: bool = True) -> list[Example]:
    """A dataset as examples; Humicroedit is recognised by its columns."""
    rows = read_rows(spec)
    if not rows:
        raise SourceError(f"{spec} has no rows.")
    columns = set(rows[0])
    if {"original", "edit"} <= columns:
        examples = [e for e in map(humicroedit_example, rows) if e is not None]
    else:
        if answer not in columns or not ({prompt, image} & columns):
            raise SourceError(f"{spec} needs an '{answer}' column and a '{prompt}' or '{image}' column "
                              f"(it has: {', '.join(sorted(columns))}); name yours with --columns.")
        texts = [str(r.get(prompt) or "").strip() for r in rows]
        missing = [i for i, t in enumerate(texts) if not t]
        if any(not rows[i].get(image) for i in missing):
            raise SourceError(f"{spec}: row {next(i for i in missing if not rows[i].get(image)) + 1} has "
                              f"neither a prompt ('{prompt}') nor an image ('{image}').")
        captions = caption_prompts([rows[i][image] for i in missing], Path(spec).parent, captioner)
        for i, caption in zip(missing, captions):
            texts[i] = caption
        examples = [Example(t, str(r[answer]).strip(), _score(r.get(score), spec, n))
                    for n, (t, r) in enumerate(zip(texts, rows), 1)]
    if need_scores and any(e.score is None for e in examples):
        raise SourceError(f"{spec}: every row needs a score (column '{score}') for training and evaluation.")
    return examples


def _score(value, spec: str, row: int) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        raise SourceError(f"{spec}: row {row} has the score {value!r}, not a number.") from None


def caption_prompts(values: list, root: Path, captioner: str) -> list[str]:
    """Captions for image prompts: paths (relative to the data file), PIL images or datasets
    Image values ({"bytes": ..., "path": ...})."""
    def located(value):
        if isinstance(value, dict) and not value.get("bytes"):
            value = value["path"]
        return root / value if isinstance(value, (str, Path)) else value
    return caption_images([load_image(located(v)) for v in values], captioner)


def recenter(extra: list[Example], main: list[Example], scale: tuple[float, float]) -> list[Example]:
    """Extra training data graded more generously (FunLines: mean 1.27 against Humicroedit's
    0.94) shifted to the main set's mean, so it adds signal without moving the predictions."""
    shift = np.mean([e.score for e in main]) - np.mean([e.score for e in extra])
    return [Example(e.prompt, e.answer, float(np.clip(e.score + shift, *scale))) for e in extra]


def mark_edit(prompt: str, answer: str) -> tuple[str, str]:
    """The pair with the words where it differs bracketed in both (Humicroedit: the replaced word
    and its edit), so a member sees what changed; pairs with no word in common stay as they are."""
    p, a = prompt.split(), answer.split()
    n, head, tail = min(len(p), len(a)), 0, 0
    while head < n and p[head] == a[head]:
        head += 1
    while tail < n - head and p[-1 - tail] == a[-1 - tail]:
        tail += 1
    if head + tail == 0 or p == a:
        return prompt, answer
    wrap = lambda w: " ".join(w[:head] + ["[" + " ".join(w[head:len(w) - tail]) + "]"] + w[len(w) - tail:])  # noqa: E731
    return wrap(p), wrap(a)
