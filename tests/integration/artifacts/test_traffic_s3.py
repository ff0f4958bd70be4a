"""The serving traffic log, the DriftMonitor's window over it and its reports, on s3:// over real
HTTP (moto's S3 emulator, see conftest): what a serving pod writes, the operator reads back."""

from __future__ import annotations

import datetime
import json

from flywheel import artifacts
from flywheel.api import driftmonitor
from flywheel.drift import checks, reports, window
from flywheel.serving import traffic

NOW = datetime.datetime.now(datetime.UTC)


def rows(ids: range, role: str = "champion", served: bool = True, minutes_ago: float = 1) -> list[dict]:
    at = NOW - datetime.timedelta(minutes=minutes_ago)
    return [
        {
            "timestamp": at + datetime.timedelta(milliseconds=i),
            "request_id": f"r{i}",
            "role": role,
            "served": served,
            "model_version": f"{role}-1",
            "time": float(i),
            "rad_flow": 10.0 * i,
            "prediction": "1",
            "probability": 0.9,
            "latency_ms": 2.0 + i,
        }
        for i in ids
    ]


def test_logger_writes_parquet_the_window_reads(s3) -> None:
    sink = f"{s3.root}/default/traffic/shuttle"
    logger = traffic.TrafficLogger(sink, flush_rows=100, flush_seconds=60)
    assert window.read(sink, driftmonitor.Window(rows=10), NOW).empty  # a sink nobody wrote yet
    logger.add(rows(range(0, 3)) + rows(range(0, 3), role="challenger", served=False))
    first = logger.flush()
    logger.add(rows(range(3, 6)))
    second = logger.flush()
    assert logger.flush() is None
    assert first and second and first != second and first.startswith(sink + "/")
    assert sorted(artifacts.Store(sink).list()) == sorted(u.rsplit("/", 1)[1] for u in (first, second))

    everything = traffic.read(sink)
    assert len(everything) == 9
    assert everything["timestamp"].is_monotonic_increasing

    last = window.read(sink, driftmonitor.Window(rows=4), NOW)
    assert list(last["request_id"]) == ["r2", "r3", "r4", "r5"]  # champion-served only, oldest first
    assert window.features(last) == ["time", "rad_flow"]
    recent = window.read(sink, driftmonitor.Window(rows=None, minutes=5), NOW)
    assert list(recent["request_id"]) == [f"r{i}" for i in range(6)]

    shadow = window.shadow_stats(sink, driftmonitor.Window(rows=100), NOW)
    assert shadow is not None and shadow.rows == 3
    assert shadow.challenger_error_rate == 0.0 and shadow.champion_error_rate == 0.0


def test_report_folder_written_to_s3(s3) -> None:
    result = checks.CheckResult(
        drift_share=0.5,
        drifted=True,
        columns=[checks.ColumnResult("time", 0.3, "wasserstein", 0.1, True)],
        rows_current=600,
        rows_reference=900,
        seconds=0.25,
        json={"metrics": []},
        render=lambda: "<html>report</html>",
    )
    uri = reports.write(s3.root, "shuttle", NOW, result)
    stamp = NOW.strftime("%Y%m%dT%H%M%SZ")
    assert uri == f"{s3.root}/{reports.PLURAL}/shuttle/{reports.REPORTS_DIR}/{stamp}"
    folder = artifacts.Store(uri)
    assert folder.list() == [reports.HTML_FILE, reports.JSON_FILE, reports.SUMMARY_FILE]
    summary = json.loads(folder.read_bytes(reports.SUMMARY_FILE))
    assert summary["driftShare"] == 0.5 and summary["rowsCurrent"] == 600
    assert summary["columns"][0]["column"] == "time"
    assert folder.read_bytes(reports.HTML_FILE) == b"<html>report</html>"
