"""The all-numeric fast path of flywheel.training.preprocess (what a served request pays) gives the
same matrix as the per-column pandas path, and hands every case it cannot read to that path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from flywheel import errors
from flywheel.api import trainingrun
from flywheel.serving import models, scoring
from flywheel.training import preprocess

TRAIN = pd.DataFrame({"a": [1.0, 2.0, 4.0, np.nan], "b": [10.0, 0.0, 5.0, 7.0], "y": ["p", "q", "p", "q"]})
PREP = preprocess.fit(TRAIN, TRAIN["y"], trainingrun.ModelSpec(task="classification", target="y"))


def _column_path(prep: preprocess.Preprocessor, frame: pd.DataFrame) -> np.ndarray:
    blocks = [preprocess._encode(c, frame[c.name]) for c in prep.columns]
    return np.concatenate(blocks, axis=1).astype(np.float32)


ROWS: list[list[dict[str, Any]]] = [
    [{"a": 3.0, "b": 1.0}],
    [{"a": None, "b": 2.5}, {"a": 1e30, "b": -4.0}, {"b": 9.0, "a": 0.0}],  # null, huge, key order
    [{"a": True, "b": 2}, {"a": "3.5", "b": 1.0}],  # what pd.to_numeric reads, numpy reads alike
    [{"a": float("nan"), "b": 1.0, "extra": "ignored"}],
]


@pytest.mark.parametrize("rows", ROWS)
def test_fast_path_equals_column_path_for_records_and_frames(rows: list[dict[str, Any]]) -> None:
    frame = pd.DataFrame(rows)
    expected = _column_path(PREP, frame)
    assert PREP._numeric_fast_path(rows) is not None  # the fast path really ran
    assert PREP._numeric_fast_path(frame) is not None
    np.testing.assert_array_equal(PREP.features(rows), expected)
    np.testing.assert_array_equal(PREP.features(frame), expected)
    assert PREP.features(rows).dtype == np.float32


def test_unreadable_values_and_missing_columns_take_the_column_path() -> None:
    rows = [{"a": "n/a", "b": 1.0}, {"a": 2.0, "b": 3.0}]
    assert PREP._numeric_fast_path(rows) is None
    np.testing.assert_array_equal(PREP.features(rows), _column_path(PREP, pd.DataFrame(rows)))
    assert PREP._numeric_fast_path([{"a": 1.0}]) is None
    with pytest.raises(errors.UserError, match="'b'"):
        PREP.features([{"a": 1.0}])
    mixed = preprocess.fit(
        TRAIN.assign(c=["x", "y", "x", "y"]),
        TRAIN["y"],
        trainingrun.ModelSpec(task="classification", target="y"),
    )
    assert mixed._numeric_fast_path([{"a": 1.0, "b": 1.0, "c": "x"}]) is None


def _card(*features: dict[str, Any]) -> models.Card:
    return models.parse_card(
        {"version": "v1", "task": "classification", "classes": ["p", "q"], "features": list(features)}
    )


def test_scoring_frame_is_one_float_block_for_numeric_cards_and_from_records_otherwise() -> None:
    records = [{"b": 1.0, "a": None}, {"a": 2.0, "b": 3.0}]
    numeric = scoring._frame(
        records, _card({"name": "a", "type": "numeric"}, {"name": "b", "type": "numeric"})
    )
    assert list(numeric.columns) == ["a", "b"] and list(numeric.dtypes) == [np.float64, np.float64]
    pd.testing.assert_frame_equal(numeric, pd.DataFrame.from_records(records, columns=["a", "b"]))
    np.testing.assert_array_equal(PREP.features(numeric), _column_path(PREP, numeric))
    mixed = [{"a": 1.0, "c": "x"}]
    card = _card({"name": "a", "type": "numeric"}, {"name": "c", "type": "categorical", "categories": ["x"]})
    assert scoring._frame(mixed, card)["c"].tolist() == ["x"]
