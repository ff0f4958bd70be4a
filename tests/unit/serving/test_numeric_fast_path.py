"""The all-numeric fast path of flywheel.training.preprocess (what a served request pays) gives the
same matrix as the per-column pandas path, and hands every case it cannot read to that path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from flywheel import errors
from flywheel.api import deployment, trainingrun
from flywheel.serving import models, scoring
from flywheel.training import inference, preprocess

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


class _Spy(inference.Predictor):
    """Flywheel's own predictor with a fixed linear runner, noting what each call was given."""

    seen: list[type]

    def predict(self, data: Any) -> inference.Prediction:
        self.seen.append(type(data))
        return super().predict(data)


def _spy(card: dict[str, Any]) -> _Spy:
    weights = np.array([[1.0, -1.0], [0.5, 2.0]], dtype=np.float32)
    spy = _Spy(card=card, preprocessor=PREP, quantized=True, runner=lambda feeds: feeds["input"] @ weights)
    spy.seen = []
    return spy


async def test_flywheel_predictor_on_numeric_cards_scores_records_without_a_dataframe() -> None:
    numeric = _card({"name": "a", "type": "numeric"}, {"name": "b", "type": "numeric"})
    nullable = _card({"name": "a", "type": "numeric", "nullable": True}, {"name": "b", "type": "numeric"})
    assert models._takes_records(_spy(numeric.raw), numeric)
    assert not models._takes_records(_spy(nullable.raw), nullable)  # a record may omit "a"
    assert not models._takes_records(_foreign_predictor(), numeric)  # a foreign predictor gets a DataFrame
    records = [{"a": 3.0, "b": 1.0}, {"a": -2.0, "b": 7.5}, {"a": 1e6, "b": 0.0}]
    results = []
    for takes_records in (True, False):
        spy = _spy(numeric.raw)
        model = models.LoadedModel("file:///m", True, numeric, spy, takes_records)
        off = deployment.Batching(enabled=False)
        results.append(await scoring.Scorer(model, off).score(records))
        assert spy.seen == [list if takes_records else pd.DataFrame]
    assert results[0].predictions == results[1].predictions
    assert results[0].probabilities == results[1].probabilities
    assert len(set(results[0].predictions)) == 2  # both classes: the rows really differ


def _foreign_predictor() -> Any:
    class Foreign:
        def predict(self, frame: pd.DataFrame) -> tuple[list[str], list[float]]:
            return ["p"] * len(frame), [1.0] * len(frame)

    return Foreign()
