"""Preprocessing is fitted on the train split only and survives a JSON round trip unchanged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flywheel import errors
from flywheel.api import trainingrun
from flywheel.training import preprocess


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [20.0, 30.0, 40.0, np.nan],
            "city": ["paris", "oslo", "paris", "rome"],
            "label": ["yes", "no", "yes", "no"],
        }
    )


def _spec(task: str = "classification", target: str = "label", features=None) -> trainingrun.ModelSpec:
    return trainingrun.ModelSpec(task=task, target=target, features=features or [])


def test_numeric_scaled_with_train_stats_categorical_one_hot_unknown_is_zero():
    train = _frame()
    prep = preprocess.fit(train, train["label"], _spec())
    assert [c.type for c in prep.columns] == ["numeric", "categorical"]
    assert prep.columns[0].mean == pytest.approx(30.0) and prep.columns[1].categories == (
        "oslo",
        "paris",
        "rome",
    )
    x = prep.features(pd.DataFrame({"age": [30.0, np.nan, 50.0], "city": ["oslo", "paris", "lima"]}))
    assert x.shape == (3, 4) and x.dtype == np.float32
    assert x[0, 0] == 0.0 and x[1, 0] == 0.0  # the train mean, and a missing value imputed to it
    assert x[2, 0] == pytest.approx((50 - 30) / np.std([20, 30, 40]))
    assert x[:, 1:].tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert prep.labels(train["label"]).tolist() == [1, 0, 1, 0]
    assert prep.decode(np.array([[0.1, 0.9], [2.0, -1.0]])) == ["yes", "no"]


def test_json_round_trip_is_identical_and_declared_features_win():
    train = _frame()
    features = [
        trainingrun.Feature(name="city", type="categorical", categories=["rome", "paris", "oslo", "lima"])
    ]
    prep = preprocess.fit(train, train["label"], _spec(features=features))
    again = preprocess.Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert again == prep and again.n_inputs == 4
    np.testing.assert_array_equal(again.features(train), prep.features(train))


def test_regression_target_standardised_and_decoded_back():
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [10.0, 20.0, 30.0, 40.0]})
    prep = preprocess.fit(train, train["y"], _spec("regression", "y"))
    z = prep.labels(train["y"])
    assert z.mean() == pytest.approx(0.0, abs=1e-6) and prep.n_outputs == 1
    assert prep.decode(z.reshape(-1, 1)) == pytest.approx([10.0, 20.0, 30.0, 40.0])


def test_user_mistakes_name_the_column():
    train = _frame()
    with pytest.raises(errors.UserError, match="'weight'"):
        preprocess.fit(train, train["label"], _spec(features=[trainingrun.Feature(name="weight")]))
    prep = preprocess.fit(train, train["label"], _spec())
    with pytest.raises(errors.UserError, match="'city'"):
        prep.features([{"age": 3.0}])
    with pytest.raises(errors.UserError, match="one class"):
        preprocess.fit(train, pd.Series(["a"] * 4), _spec())
