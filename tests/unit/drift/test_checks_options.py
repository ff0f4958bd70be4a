"""How the spec's Drift model maps to the preset's per-column methods and thresholds (no Evidently)."""

from __future__ import annotations

import pytest

from flywheel import errors
from flywheel.api import driftmonitor
from flywheel.drift import checks

FEATURES = ["speed", "load", "colour"]
NUMERICAL = {"speed", "load"}


def _drift(**fields: object) -> driftmonitor.Drift:
    return driftmonitor.Drift.model_validate(fields)


def test_auto_leaves_everything_to_evidently() -> None:
    assert checks.column_options(_drift(), FEATURES, NUMERICAL) == ({}, {})


def test_a_global_method_applies_only_where_the_column_type_allows_it() -> None:
    methods, thresholds = checks.column_options(
        _drift(method="ks", columnThreshold=0.01), FEATURES, NUMERICAL
    )
    assert methods == {"speed": "ks", "load": "ks"}  # ks has no categorical form: colour stays auto
    assert thresholds == {"speed": 0.01, "load": 0.01, "colour": 0.01}
    methods, _ = checks.column_options(_drift(method="chisquare"), FEATURES, NUMERICAL)
    assert methods == {"colour": "chisquare"}
    methods, _ = checks.column_options(_drift(method="psi"), FEATURES, NUMERICAL)
    assert methods == dict.fromkeys(FEATURES, "psi")


def test_column_overrides_win_and_auto_resets_a_column() -> None:
    drift = _drift(
        method="wasserstein",
        columnThreshold=0.2,
        columns=[
            {"column": "load", "method": "auto"},
            {"column": "colour", "method": "jensenshannon", "threshold": 0.3},
            {"column": "speed", "threshold": 0.05},
        ],
    )
    methods, thresholds = checks.column_options(drift, FEATURES, NUMERICAL)
    assert methods == {"speed": "wasserstein", "colour": "jensenshannon"}
    assert thresholds == {"speed": 0.05, "load": 0.2, "colour": 0.3}


def test_override_of_an_unknown_column_names_the_field() -> None:
    with pytest.raises(errors.UserError, match=r"drift.columns\[0\].column 'spead' is not a model feature"):
        checks.column_options(_drift(columns=[{"column": "spead"}]), FEATURES, NUMERICAL)


def test_override_method_that_cannot_apply_to_the_column_type_names_the_field() -> None:
    with pytest.raises(
        errors.UserError, match=r"drift.columns\[0\].method ks does not apply to the categorical"
    ):
        checks.column_options(_drift(columns=[{"column": "colour", "method": "ks"}]), FEATURES, NUMERICAL)
