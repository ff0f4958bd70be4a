"""The check Job's live assessment with a real exported champion: labelled traffic under concept drift
(examples.concept_shift: same features, a new failure mode) is a performance drop; the same traffic
labelled as before is not; prediction drift stays quiet on both (the features did not move)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flywheel.api import driftmonitor
from flywheel.data import examples
from flywheel.drift import evaluate, live
from flywheel.serving import feedback, traffic
from tests.integration.drift import conftest

pytestmark = pytest.mark.slow  # the session fixture trains two tiny models
T0 = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)


def _served(champion: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """The log a server running the champion writes for `rows`, one request per row."""
    model = evaluate.load(champion)
    out = rows.drop(columns=[examples.TARGET]).copy()
    out["timestamp"] = [T0 + datetime.timedelta(seconds=i) for i in range(len(rows))]
    out["request_id"] = [f"r{i}" for i in range(len(rows))]
    out[traffic.RECORD_INDEX] = 0
    out["role"], out["served"], out["model_version"] = "champion", True, model.version
    out["prediction"] = [str(p) for p in model.predict(rows).predictions]
    return out


def _label(sink: Path, rows: pd.DataFrame) -> None:
    labels = [{"request_id": f"r{i}", "label": str(v)} for i, v in enumerate(rows[examples.TARGET])]
    parsed = feedback.Feedback.model_validate({"labels": labels}).labels
    feedback.FeedbackWriter(sink.as_uri()).write(parsed)


@pytest.mark.parametrize("shifted", [True, False])
def test_concept_drift_is_a_performance_drop_only_when_the_labels_moved(
    exports: conftest.Exports, tmp_path: Path, shifted: bool
) -> None:
    rows = examples.period_frame(1, part="traffic", rows=400)
    truth = examples.concept_shift(rows) if shifted else rows
    log = _served(exports.champion, rows)
    _label(tmp_path, truth)
    spec = driftmonitor.DriftMonitorSpec.model_validate(
        {
            "deploymentRef": "d",
            "retrain": {
                "template": {
                    "data": {"repo": "r", "path": "p"},
                    "model": {"task": "classification", "target": examples.TARGET},
                }
            },
        }
    )
    version = str(log["model_version"].iloc[0])
    out = live.assess(spec, exports.champion, version, log, tmp_path.as_uri())
    perf = out["performance"]
    (mine,) = perf["versions"]
    assert mine["version"] == version and mine["rows"] == 400 and perf["labels"] == 400
    expected = float(np.mean(log["prediction"].to_numpy() == truth[examples.TARGET].astype(str).to_numpy()))
    assert mine["value"] == pytest.approx(expected)
    assert (perf["dropped"] is not None) == shifted
    assert not out["predictionDrift"]["drifted"]  # same inputs, same predictions: nothing to see there
