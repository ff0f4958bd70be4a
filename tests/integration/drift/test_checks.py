"""Real Evidently on the real Shuttle periods (flywheel.data.examples): the shift of mission time is
flagged, a resample of the same period is not, overrides reach Evidently, and sampling bounds rows."""

from __future__ import annotations

import datetime

import pytest

from flywheel import errors
from flywheel.api import driftmonitor
from flywheel.data import examples
from flywheel.drift import checks

# Evidently's UI imports litestar, which warns about litestar's own deprecated API.
pytestmark = [
    pytest.mark.slow,  # Evidently's import alone takes several seconds
    pytest.mark.filterwarnings("ignore::DeprecationWarning:litestar"),
    pytest.mark.filterwarnings("ignore:.*Deprecated in litestar:DeprecationWarning"),
]

REFERENCE = examples.period_frame(1, labelled=False)
FEATURES = list(REFERENCE.columns)


def test_period_2_drifts_from_period_1_and_a_resample_of_period_1_does_not() -> None:
    shifted = checks.check(
        examples.period_frame(2, part="traffic", labelled=False),
        REFERENCE,
        driftmonitor.Drift(),
        FEATURES,
        50_000,
    )
    assert shifted.drifted and shifted.drift_share >= 0.5
    assert len(shifted.columns) == len(FEATURES) and shifted.rows_current == examples.TRAFFIC_ROWS
    drifted = {c.column for c in shifted.drifted_columns}
    assert examples.TIME_COLUMN in drifted  # mission time is the axis the periods are cut along
    assert shifted.drift_share == pytest.approx(len(drifted) / len(FEATURES))
    assert shifted.html.lstrip().lower().startswith("<!doctype html") or "<html" in shifted.html[:2000]
    assert shifted.json["metrics"][0]["value"]["share"] == shifted.drift_share

    status = shifted.to_status("file:///reports/x", datetime.datetime(2026, 1, 1, 12))
    assert status["lastCheckTime"] == "2026-01-01T12:00:00Z" and status["drifted"] is True
    assert {c["column"] for c in status["driftedColumns"]} == drifted and status["rowsChecked"] == 2000
    validated = driftmonitor.DriftMonitorStatus.model_validate(status)  # the patch fits the status model
    assert validated.dataset_drift_share == shifted.drift_share

    same = checks.check(
        examples.period_frame(1, part="traffic", labelled=False),
        REFERENCE,
        driftmonitor.Drift(),
        FEATURES,
        50_000,
    )
    assert not same.drifted and same.drift_share < 0.5


def test_overrides_and_the_sampling_cap_reach_evidently() -> None:
    drift = driftmonitor.Drift.model_validate(
        {
            "method": "ks",
            "datasetDriftShare": 0.9,
            "columns": [
                {"column": "f2", "method": "psi", "threshold": 0.3},
                {"column": "f4", "threshold": 0.001},
            ],
        }
    )
    current = examples.period_frame(2, part="traffic", labelled=False)
    result = checks.check(current, REFERENCE, drift, FEATURES, max_rows=500, seed=3)
    assert result.rows_current == 500 and result.rows_reference == 500
    by_column = {c.column: c for c in result.columns}
    assert by_column["f2"].method == "psi" and by_column["f2"].threshold == 0.3
    assert by_column["f1"].method == "ks" and by_column["f4"].threshold == 0.001
    # ks reports a p-value: drifted columns are those below their threshold
    assert all(c.drifted == (c.score < c.threshold) for c in result.columns if c.method == "ks")
    assert result.drifted == (result.drift_share >= 0.9)
    with pytest.raises(errors.UserError, match="lacks feature column"):
        checks.check(current.drop(columns=["f3"]), REFERENCE, drift, FEATURES, max_rows=500)
