"""The check half of the monitor on real pieces: period-2 traffic logged by the serving traffic logger,
the reference resolved from the champion's lineage through real DVC, real Evidently, the report
written to the artifact store, the status patch and the Prometheus metrics."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pandas as pd
import prometheus_client
import pytest

from flywheel import errors
from flywheel.api import driftmonitor
from flywheel.data import examples
from flywheel.drift import checks, metrics, reference, reports, window
from flywheel.serving import traffic
from tests.integration.drift import conftest

pytestmark = [
    pytest.mark.slow,  # trained exports, a DVC repository, Evidently
    pytest.mark.filterwarnings("ignore::DeprecationWarning:litestar"),
    pytest.mark.filterwarnings("ignore:.*Deprecated in litestar:DeprecationWarning"),
]
NOW = datetime.datetime.now(datetime.UTC)


def _spec(**fields: object) -> driftmonitor.DriftMonitorSpec:
    template = {
        "data": {"repo": "/r", "path": "d.csv"},
        "model": {"task": "classification", "target": "anomaly"},
    }
    return driftmonitor.DriftMonitorSpec.model_validate(
        {"deploymentRef": "shuttle", "retrain": {"template": template}, **fields}
    )


def _log_traffic(sink: Path, frame: pd.DataFrame) -> str:
    logger = traffic.TrafficLogger(sink.as_uri(), flush_rows=10**6, flush_seconds=3600)
    for start in range(0, len(frame), 500):  # one Parquet file per 500 requests
        logger.add(
            [
                {"timestamp": NOW, "request_id": f"r{start + i}", "role": "champion", "served": True,
                 "model_version": "champion-1", **row, "prediction": "0", "probability": 0.9, "latency_ms": 3.0}
                for i, row in enumerate(frame.iloc[start : start + 500].to_dict("records"))
            ]
        )  # fmt: skip
        logger.flush()
    return sink.as_uri()


def test_reference_is_the_champions_training_data_resolved_through_dvc(
    exports: conftest.Exports, tmp_path: Path
) -> None:
    ref = reference.load(_spec(), exports.champion, tmp_path / "cache")
    expected = examples.period_frame(1).drop(columns=examples.TARGET)
    pd.testing.assert_frame_equal(ref.reset_index(drop=True), expected, check_dtype=False)
    dvc_ref = _spec(reference={"fromChampion": False, "repo": str(exports.repo.root), "rev": "period-2",
                               "path": examples.DATA_PATH})  # fmt: skip
    period_2 = reference.load(dvc_ref, exports.champion, tmp_path / "cache")
    assert period_2["f1"].min() >= expected["f1"].max() and examples.TARGET not in period_2.columns


def test_a_champion_without_dvc_lineage_asks_for_a_reference(
    exports: conftest.Exports, tmp_path: Path
) -> None:
    card = json.loads((exports.champion / "model_card.json").read_text())
    card["data"] = {"hash": card["data"]["hash"]}
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(errors.UserError, match=r"set spec\.reference\.repo and spec\.reference\.path"):
        reference.load(_spec(), tmp_path / "model", tmp_path / "cache")


def test_logged_shifted_traffic_is_flagged_reported_and_counted(
    exports: conftest.Exports, tmp_path: Path
) -> None:
    spec = _spec(window={"rows": 1500, "maxRows": 1000})
    sink = _log_traffic(tmp_path / "traffic", examples.period_frame(2, part="traffic", labelled=False))
    current = window.read(sink, spec.window, NOW)
    assert len(current) == 1000  # the last 1500 logged rows, sampled to maxRows
    assert set(current["request_id"]) <= {f"r{i}" for i in range(500, 2000)}
    ref = reference.load(spec, exports.champion, tmp_path / "cache")
    result = checks.check(current, ref, spec.drift, window.features(current), spec.window.max_rows)
    assert result.drifted and result.rows_current == result.rows_reference == 1000

    uri = reports.write((tmp_path / "artifacts").as_uri(), "shuttle", NOW, result)
    stamp = NOW.strftime("%Y%m%dT%H%M%SZ")
    folder = tmp_path / "artifacts" / "driftmonitors" / "shuttle" / "reports" / stamp
    assert uri == folder.as_uri()
    assert sorted(p.name for p in folder.iterdir()) == ["report.html", "report.json", "summary.json"]
    assert "<html" in (folder / "report.html").read_text()[:5000].lower()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["driftShare"] == result.drift_share and len(summary["columns"]) == 9
    status = driftmonitor.DriftMonitorStatus.model_validate(result.to_status(uri, NOW))
    assert status.report_uri == uri and status.drifted

    labels = {"namespace": "default", "monitor": "flow-test"}
    before = prometheus_client.REGISTRY.get_sample_value("flywheel_drift_detected_total", labels) or 0.0
    metrics.observe("default", "flow-test", result)
    assert prometheus_client.REGISTRY.get_sample_value("flywheel_drift_share", labels) == result.drift_share
    assert prometheus_client.REGISTRY.get_sample_value("flywheel_drift_detected_total", labels) == before + 1
