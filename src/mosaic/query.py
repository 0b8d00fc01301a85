"""Query strings: the one parser of filters and tag weights, used by the command line, the app
and its API alike.

- A filter is `field=value`. Values of one field match any of them (OR); different fields must
  all match (AND): `style=Baroque style=Rococo genre=portrait` is a Baroque or Rococo portrait.
- A tag weight is `category:tag=weight` (a finite number; negative pushes down). A tag given
  twice counts with the sum of its weights.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from .errors import QueryError


def parse_filters(pairs: Iterable[str] | None) -> dict[str, list[str]]:
    """["style=Baroque", "style=Rococo", "genre=portrait"] -> {"style": [...2], "genre": [...1]}."""
    out: dict[str, list[str]] = {}
    for pair in pairs or []:
        field, sep, value = pair.partition("=")
        if not sep or not field.strip():
            raise QueryError(f"The filter '{pair}' should look like field=value (e.g. style=Romanticism).")
        values = out.setdefault(field.strip(), [])
        if value not in values:
            values.append(value)
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
