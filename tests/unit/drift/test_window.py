"""The traffic window, read from real Parquet files written by the serving traffic logger."""

from __future__ import annotations

import datetime
from pathlib import Path

import pandas as pd
import pytest

from flywheel.api import driftmonitor
from flywheel.drift import window
from flywheel.serving import traffic

NOW = datetime.datetime.now(datetime.UTC)


def _rows(
    start: int, count: int, *, role: str = "champion", served: bool = True, minutes_ago: float = 1.0
) -> list[dict[str, object]]:
    at = NOW - datetime.timedelta(minutes=minutes_ago)
    return [
        {
            "timestamp": at + datetime.timedelta(milliseconds=i),
            "request_id": f"r{i}",
            "role": role,
            "served": served,
            "model_version": f"{role}-v1",
            "f1": float(i),
            "colour": "red" if i % 2 else "blue",
            "prediction": "0",
            "probability": 0.9,
            "latency_ms": 5.0 if role == "champion" else 8.0,
        }
        for i in range(start, start + count)
    ]


def _log(sink: Path, *batches: list[dict[str, object]]) -> str:
    logger = traffic.TrafficLogger(sink.as_uri(), flush_rows=10**6, flush_seconds=3600)
    for rows in batches:  # one Parquet file per batch, like successive flushes
        logger.add(rows)
        logger.flush()
    return sink.as_uri()


def _window(**fields: object) -> driftmonitor.Window:
    return driftmonitor.Window.model_validate(fields)


def test_last_rows_are_the_newest_champion_served_ones_despite_shadow_rows(tmp_path: Path) -> None:
    batches = []
    for start in (0, 100, 200):  # each request logged twice: served by the champion, shadowed
        batches += [_rows(start, 100), _rows(start, 100, role="challenger", served=False)]
    sink = _log(tmp_path / "traffic", *batches)
    frame = window.read(sink, _window(rows=150), NOW)
    assert len(frame) == 150 and set(frame["role"]) == {"champion"} and frame["served"].all()
    assert frame["request_id"].tolist() == [f"r{i}" for i in range(150, 300)]  # newest, oldest first
    assert window.features(frame) == ["f1", "colour"]


def test_canary_rows_answered_by_the_challenger_are_not_current_traffic(tmp_path: Path) -> None:
    sink = _log(tmp_path / "t", _rows(0, 50), _rows(50, 50, role="challenger", served=True))
    frame = window.read(sink, _window(rows=1000), NOW)
    assert frame["request_id"].tolist() == [f"r{i}" for i in range(50)]


def test_minutes_window_keeps_only_recent_rows(tmp_path: Path) -> None:
    sink = _log(tmp_path / "t", _rows(0, 40, minutes_ago=30), _rows(40, 60, minutes_ago=5))
    frame = window.read(sink, _window(rows=None, minutes=10), NOW)
    assert len(frame) == 60 and frame["f1"].min() == 40
    both = window.read(sink, _window(rows=10, minutes=10), NOW)  # rows and minutes: both limits
    assert both["f1"].tolist() == [float(i) for i in range(90, 100)]


def test_sampling_caps_rows_keeps_order_and_depends_only_on_the_seed(tmp_path: Path) -> None:
    sink = _log(tmp_path / "t", _rows(0, 500), _rows(500, 500))
    capped = _window(rows=None, maxRows=100)
    first = window.read(sink, capped, NOW, seed=1)
    assert len(first) == 100 and first["timestamp"].is_monotonic_increasing
    assert first["f1"].nunique() == 100 and first["f1"].max() > 500 and first["f1"].min() < 500
    pd.testing.assert_frame_equal(first, window.read(sink, capped, NOW, seed=1))
    assert not first["f1"].equals(window.read(sink, capped, NOW, seed=2)["f1"])


def test_empty_or_missing_sink_gives_an_empty_frame(tmp_path: Path) -> None:
    frame = window.read((tmp_path / "nothing").as_uri(), _window(), NOW)
    assert frame.empty
    assert window.shadow_stats((tmp_path / "nothing").as_uri(), _window(), NOW) is None


def test_shadow_stats_on_logs_before_the_error_column_count_missing_shadow_rows_as_errors(
    tmp_path: Path,
) -> None:
    champion = _rows(0, 200)
    shadow = [
        r for r in _rows(0, 200, role="challenger", served=False) if r["request_id"] not in {"r3", "r7"}
    ]
    for row in shadow[50:55]:  # 2.5% slow shadow scorings: above the 99th percentile's reach
        row["latency_ms"] = 80.0
    sink = _log(tmp_path / "t", champion, shadow)
    stats = window.shadow_stats(sink, _window(), NOW)
    assert stats is not None and stats.rows == 200
    assert stats.champion_error_rate == 0.0 and stats.challenger_error_rate == pytest.approx(2 / 200)
    assert stats.champion_p99_ms == pytest.approx(5.0) and stats.challenger_p99_ms == pytest.approx(80.0)


def test_shadow_stats_ignore_traffic_before_the_challenger_was_deployed(tmp_path: Path) -> None:
    before = _rows(0, 100, minutes_ago=20)
    during = _rows(100, 50, minutes_ago=2)
    shadow = _rows(100, 50, role="challenger", served=False, minutes_ago=2)
    stats = window.shadow_stats(_log(tmp_path / "t", before, during, shadow), _window(), NOW)
    assert stats is not None and stats.rows == 50 and stats.challenger_error_rate == 0.0


def test_no_shadow_rows_means_no_shadow_stats(tmp_path: Path) -> None:
    assert window.shadow_stats(_log(tmp_path / "t", _rows(0, 20)), _window(), NOW) is None


def test_reading_stops_at_the_files_that_hold_enough_served_rows(tmp_path: Path) -> None:
    sink = _log(tmp_path / "t", _rows(0, 100), _rows(100, 100))
    # an older file that cannot be parsed: reading it would raise, so it must not be read
    (tmp_path / "t" / "20000101T000000.000000Z-old-1-000000.parquet").write_bytes(b"not parquet")
    frame = window.read(sink, _window(rows=100), NOW)
    assert frame["f1"].tolist() == [float(i) for i in range(100, 200)]
