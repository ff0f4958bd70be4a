"""Pure parts of evaluation (ROC-AUC over the classes present), the reference source choice, the
report folder layout and the Prometheus metrics, without Evidently or a trained model."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import numpy as np
import prometheus_client
import pytest
from sklearn import metrics as skm

from flywheel import errors
from flywheel.api import driftmonitor
from flywheel.drift import checks, evaluate, metrics, reference, reports


def test_binary_auc_uses_the_greater_label_and_matches_sklearn() -> None:
    truth = np.array(["0", "1", "1", "0", "1"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    expected = skm.roc_auc_score(truth == "1", proba[:, 1])
    assert evaluate.roc_auc(truth, proba, ["0", "1"], ["0", "1"]) == pytest.approx(expected)


def test_auc_with_one_class_present_is_undefined() -> None:
    assert math.isnan(evaluate.roc_auc(np.array(["a", "a"]), np.array([[0.5, 0.5]] * 2), ["a", "b"], ["a"]))


def test_multiclass_auc_is_over_the_classes_present_with_renormalised_probabilities() -> None:
    truth = np.array(["a", "b", "c", "a", "b", "c"])
    # the model also knows class "d", absent from the rows: its probability mass is dropped
    proba = np.array(
        [[0.6, 0.1, 0.1, 0.2], [0.1, 0.5, 0.2, 0.2], [0.1, 0.1, 0.6, 0.2], [0.4, 0.3, 0.1, 0.2],
         [0.3, 0.3, 0.2, 0.2], [0.2, 0.1, 0.5, 0.2]]
    )  # fmt: skip
    value = evaluate.roc_auc(truth, proba, ["a", "b", "c", "d"], ["a", "b", "c"])
    expected = skm.roc_auc_score(truth, proba[:, :3] / proba[:, :3].sum(1, keepdims=True), multi_class="ovr")
    assert value == pytest.approx(expected)


def test_a_class_the_model_never_learnt_scores_zero_probability() -> None:
    truth = np.array(["a", "b", "c", "c"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.6, 0.4]])  # knows only a and b
    value = evaluate.roc_auc(truth, proba, ["a", "b"], ["a", "b", "c"])
    assert 0.0 <= value < 1.0  # c is never ranked first: the model is penalised, not excused


def test_reference_source_prefers_an_explicit_dvc_reference_then_the_champion_lineage() -> None:
    card = {"version": "v1", "data": {"repo": "/repo", "rev": "main", "commit": "abc123", "path": "d.csv"}}
    from_card = reference.source(driftmonitor.Reference(), card)
    assert (from_card.repo, from_card.rev, from_card.path) == ("/repo", "abc123", "d.csv")  # pinned commit
    explicit = driftmonitor.Reference(from_champion=False, repo="/other", rev="v2", path="ref.csv")
    assert reference.source(explicit, card).rev == "v2"
    with pytest.raises(errors.UserError, match=r"spec\.reference\.repo"):
        reference.source(driftmonitor.Reference(), {"version": "v1", "data": {"hash": "x"}})


def _result(drifted: bool) -> checks.CheckResult:
    columns = [
        checks.ColumnResult("f1", 0.4, "wasserstein", 0.1, True),
        checks.ColumnResult("f2", 0.01, "psi", None, False),
    ]
    return checks.CheckResult(0.5, drifted, columns, 100, 200, 1.5, {"metrics": []}, lambda: "<html>r</html>")


def test_report_folder_is_stamped_in_utc_and_complete(tmp_path: Path) -> None:
    when = datetime.datetime(2026, 3, 1, 13, 30, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    uri = reports.write(tmp_path.as_uri(), "mon", when, _result(True))
    folder = tmp_path / "driftmonitors" / "mon" / "reports" / "20260301T123005Z"
    assert uri == folder.as_uri() and (folder / "report.html").read_text() == "<html>r</html>"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["time"] == "2026-03-01T12:30:05Z" and summary["columns"][0]["column"] == "f1"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_status_lists_only_drifted_columns() -> None:
    status = _result(True).to_status("file:///r", datetime.datetime(2026, 1, 1))
    assert status["driftedColumns"] == [
        {"column": "f1", "score": 0.4, "method": "wasserstein", "threshold": 0.1}
    ]
    assert status["rowsChecked"] == 100 and status["lastCheckTime"] == "2026-01-01T00:00:00Z"


def test_metrics_gauge_follows_every_check_and_the_counter_only_drift() -> None:
    labels = {"namespace": "ns", "monitor": "unit"}
    before = prometheus_client.REGISTRY.get_sample_value("flywheel_drift_detected_total", labels) or 0.0
    metrics.observe("ns", "unit", _result(True))
    metrics.observe("ns", "unit", _result(False))
    assert prometheus_client.REGISTRY.get_sample_value("flywheel_drift_detected_total", labels) == before + 1
    assert prometheus_client.REGISTRY.get_sample_value("flywheel_drift_share", labels) == 0.5
