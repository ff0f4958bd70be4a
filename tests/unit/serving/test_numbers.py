"""numbers: which answers are refused as not finite, and how the refusal names the cause."""

from __future__ import annotations

import math

import pydantic
import pytest

from flywheel.serving import models, numbers, schema

CARD = models.parse_card(
    {
        "version": "v1",
        "classes": ["no", "yes"],
        "features": [
            {"name": "age", "type": "numeric", "min": 0, "max": 120},
            {"name": "income", "type": "numeric"},
            {"name": "plan", "type": "categorical", "categories": ["free", "pro"]},
        ],
    }
)


def test_bad_rows_are_nan_or_infinite_predictions_or_probabilities() -> None:
    preds = ["yes", 1.5, math.nan, "no", 2.0]
    probs = [0.9, None, 0.8, math.inf, math.nan]
    assert numbers.bad_rows(preds, probs) == [2, 3, 4]


def test_refusal_names_rows_and_features_outside_the_training_range() -> None:
    records = [
        {"age": 30.0, "income": 1.0, "plan": "pro"},
        {"age": 3e38, "income": -1e30, "plan": "free"},
    ]
    message = numbers.refusal(CARD, records, [1])
    assert "records[1]" in message and "age=3e+38 (trained on 0..120)" in message
    assert "income" not in message  # no range in the card: not named as outside it
    many = numbers.refusal(CARD, records * 5, list(range(10)), limit=2)
    assert "and 8 more rows" in many and many.count("records[") == 2


@pytest.mark.parametrize("value", [1e39, -3.5e38, 1e308])
def test_schema_refuses_what_float32_cannot_hold(value: float) -> None:
    records = pydantic.TypeAdapter(schema.records_type(CARD, 10))
    records.validate_python([{"age": numbers.FLOAT32_MAX, "income": -numbers.FLOAT32_MAX, "plan": "pro"}])
    with pytest.raises(pydantic.ValidationError) as caught:
        records.validate_python([{"age": 1.0, "income": value, "plan": "pro"}])
    assert caught.value.errors()[0]["loc"] == (0, "income")
