"""Answers that are numbers: inputs float32 can hold, and no NaN or infinity coming back.

Models compute in float32, so a finite JSON number beyond float32's range (1e45) turns into
infinity before the first layer, and a finite but extreme one (-1e308 scaled by the preprocessor)
can overflow on the way: the answer came back as NaN, which JSON writes as null, the probability
histogram's sum stayed NaN for good and the traffic log stored it. The request schema refuses
what float32 cannot hold; a row whose answer still is not finite is refused here, naming the row
and the features outside the range the model was trained on (the likely cause).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from flywheel.serving import models

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest magnitude a numeric feature may have (what the schema lets through)."""

NON_FINITE = "non-finite output"  # the traffic log's `error` and the metric's reason


def finite(value: Any) -> bool:
    """A prediction or probability that JSON can carry as a number (labels and None pass)."""
    return not isinstance(value, float) or math.isfinite(value)


def bad_rows(predictions: list[Any], probabilities: list[float | None]) -> list[int]:
    """Indices of rows whose prediction or probability is NaN or infinite."""
    return [
        i
        for i, (p, q) in enumerate(zip(predictions, probabilities, strict=True))
        if not (finite(p) and finite(q))
    ]


def outside_training(card: models.Card, record: dict[str, Any]) -> list[str]:
    """`name=value (trained on min..max)` for each numeric feature of `record` outside the card's
    observed range (cards without a range name none)."""
    out = []
    for f in card.features:
        value = record.get(f.name)
        if f.type != "numeric" or not isinstance(value, int | float):
            continue
        if (f.min is not None and value < f.min) or (f.max is not None and value > f.max):
            low, high = ("?" if v is None else f"{v:g}" for v in (f.min, f.max))
            out.append(f"{f.name}={value:g} (trained on {low}..{high})")
    return out


def refusal(card: models.Card, records: list[dict[str, Any]], rows: list[int], limit: int = 5) -> str:
    """The error message for rows whose answer is not a number: each row and its suspects."""
    parts = []
    for i in rows[:limit]:
        suspects = outside_training(card, records[i])
        because = f": outside the training range: {', '.join(suspects[:limit])}" if suspects else ""
        parts.append(f"records[{i}]{because}")
    more = f" (and {len(rows) - limit} more rows)" if len(rows) > limit else ""
    return (
        "the model's answer is not a finite number for "
        + "; ".join(parts)
        + more
        + ". Send values closer to the training data"
    )
