"""Query strings: the one parser of filters and tag weights, used by the command line, the app
and its API alike.

- A filter is `field=value`. Values of one field match any of them (OR); different fields must
  all match (AND): `style=Baroque style=Rococo genre=portrait` is a Baroque or Rococo portrait.
  `field>=value` and `field<=value` bound a range (`taken>=2021-06-01 taken<=2021-06-30`).
- A tag weight is `category:tag=weight` (a finite number; negative pushes down). A tag given
  twice counts with the sum of its weights.
- A text query may be arithmetic (`parse_terms`): `dog -grass`, `2:beach + sunset`, `id:1234 - night`.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import QueryError


@dataclass(frozen=True)
class Bound:
    """A range filter's end: `taken>=2021-06-01` is Bound(">=", "2021-06-01") on `taken`."""

    op: str
    value: str


FILTER = re.compile(r"^([^=<>]+?)\s*(>=|<=|=)(.*)$")


def parse_filters(pairs: Iterable[str] | None) -> dict[str, list]:
    """["style=Baroque", "style=Rococo", "taken>=2021"] -> {"style": ["Baroque", "Rococo"],
    "taken": [Bound(">=", "2021")]}: values are matched exactly, bounds compare (numbers as
    numbers, other values as text, so ISO dates compare by date)."""
    out: dict[str, list] = {}
    for pair in pairs or []:
        match = FILTER.match(pair)
        if not match or not match.group(1).strip():
            raise QueryError(f"The filter '{pair}' should look like field=value (e.g. style=Romanticism), "
                             "or field>=value / field<=value for a range.")
        field, op, value = match.group(1).strip(), match.group(2), match.group(3)
        condition = value if op == "=" else Bound(op, value.strip())
        values = out.setdefault(field, [])
        if condition not in values:
            values.append(condition)
    return out


def tag_weights(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    """(tag, weight) pairs -> {tag: summed weight}; empty tags and zero weights left out."""
    out: dict[str, float] = {}
    for tag, weight in pairs:
        weight = float(weight or 0)
        if not math.isfinite(weight):
            raise QueryError(f"The weight of '{tag}' must be a finite number.")
        if tag and weight:
            out[tag] = out.get(tag, 0.0) + weight
    return {tag: w for tag, w in out.items() if w}


def parse_tag_weights(pairs: Iterable[str] | None) -> dict[str, float]:
    """["mood:calm=1", "mood:calm=0.5"] -> {"mood:calm": 1.5}."""
    parsed = []
    for pair in pairs or []:
        tag, sep, weight = pair.rpartition("=")
        try:
            parsed.append((tag, float(weight)))
        except ValueError:
            sep = ""
        if not sep or not tag:
            raise QueryError(f"The tag weight '{pair}' should look like category:tag=weight (e.g. mood:calm=1).")
    return tag_weights(parsed)


@dataclass(frozen=True)
class Term:
    """One term of a text query: words, an item of the collection (`id:ITEM`) or an image file
    (a word ending in an image suffix), with its weight."""

    text: str
    weight: float = 1.0
    kind: str = "text"  # "text", "item" or "file"


IMAGE_FILE = re.compile(r".+\.(jpe?g|png|webp|bmp|gif|tiff?)$", re.I)
WEIGHTED = re.compile(r"^([-+]?\d+(?:\.\d+)?):(.+)$")


def parse_terms(text: str) -> list[Term]:
    """Query arithmetic: `dog -grass`, `a red car + snow - night`, `2:beach sunset`, `id:1234 - night`,
    `./car.jpg + snow`.

    A word glued to `+` or `-` is a term of its own; a `+` or `-` standing alone starts a term of
    all the words up to the next one; the words before any operator form the first term. A term
    may start with a weight (`2:beach`, `0.5:snow`); `-` negates it. `id:ITEM` is an item's image,
    and a word ending in an image suffix an image file. A query without operators is one term."""
    terms: list[Term] = []
    words: list[str] = []
    sign = 1.0

    def flush():
        nonlocal words, sign
        if words:
            terms.append(_term(" ".join(words), sign))
        words, sign = [], 1.0

    for token in text.split():
        if token in ("+", "-"):
            flush()
            sign = -1.0 if token == "-" else 1.0
        elif token[0] in "+-" and len(token) > 1 and not _number(token):
            flush()
            terms.append(_term(token[1:], -1.0 if token[0] == "-" else 1.0))
        else:
            words.append(token)
    flush()
    return terms


def _number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _term(text: str, sign: float) -> Term:
    weight = sign
    match = WEIGHTED.match(text)
    if match:
        weight, text = sign * float(match.group(1)), match.group(2)
        if not math.isfinite(weight):
            raise QueryError(f"The weight of '{text}' must be a finite number.")
    if text.startswith("id:") and len(text) > 3:
        return Term(text[3:], weight, "item")
    return Term(text, weight, "file" if IMAGE_FILE.match(text) and " " not in text else "text")
