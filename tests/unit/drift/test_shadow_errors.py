"""shadow_stats and the drift window on logs with the `error` column (explicit failure rows), and
on logs written before it existed, from real Parquet files written by the serving traffic logger."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest

from flywheel.api import driftmonitor
from flywheel.drift import window
from flywheel.serving import traffic

NOW = datetime.datetime.now(datetime.UTC)
WINDOW = driftmonitor.Window(rows=10_000)


def _rows(
    ids: range, *, role: str = "champion", served: bool = True, error: str | None = None, per: int = 1,
    latency: float = 5.0,
) -> list[dict[str, object]]:  # fmt: skip
    """`per` rows for each request id, as the service logs them (error: every row of the request)."""
    at = NOW - datetime.timedelta(minutes=1)
    return [
        {
            "timestamp": at + datetime.timedelta(milliseconds=i),
            "request_id": f"r{i}",
            "role": role,
            "served": served,
            "model_version": f"{role}-v1",
            "f1": float(i),
            "prediction": None if error else "0",
            "probability": None if error else 0.9,
            "latency_ms": latency,
            "error": error,
        }
        for i in ids
        for _ in range(per)
    ]


def _log(sink: Path, *batches: list[dict[str, object]]) -> str:
    logger = traffic.TrafficLogger(sink.as_uri(), flush_rows=10**6, flush_seconds=3600)
    for rows in batches:
        logger.add(rows)
        logger.flush()
    return sink.as_uri()


def test_error_rate_counts_failed_shadow_requests_and_p99_only_successes(tmp_path: Path) -> None:
    champion = _rows(range(200), per=3)
    ok = [r for r in _rows(range(200), role="challenger", served=False, per=3, latency=8.0) if r["request_id"] not in {"r3", "r7"}]  # fmt: skip
    for row in ok[:3]:
        row["latency_ms"] = 20.0  # one slow request among 198: within the 99th percentile's reach
    failed = _rows(range(3, 8, 4), role="challenger", served=False, error="model: ValueError: x", per=3, latency=900.0)  # fmt: skip
    stats = window.shadow_stats(_log(tmp_path / "t", champion, ok, failed), WINDOW, NOW)
    assert stats is not None and stats.rows == 200
    assert stats.challenger_error_rate == 2 / 200 and stats.champion_error_rate == 0.0
    expected = float(np.percentile([20.0] + [8.0] * 197, 99))  # the 900 ms failures left out
    assert stats.challenger_p99_ms == pytest.approx(expected) and stats.champion_p99_ms == pytest.approx(5.0)


def test_a_request_sampled_out_is_no_error(tmp_path: Path) -> None:
    """Per-request sampling logs both roles or neither; a served request with no challenger row (its
    shadow still in flight at the window's end) is not a failure either."""
    champion = _rows(range(0, 100, 2)) + _rows(range(100, 103))
    shadow = _rows(range(0, 100, 2), role="challenger", served=False)
    stats = window.shadow_stats(_log(tmp_path / "t", champion, shadow), WINDOW, NOW)
    assert stats is not None and stats.rows == 50 and stats.challenger_error_rate == 0.0


def test_champion_failures_count_for_the_champion_and_are_not_drift_traffic(tmp_path: Path) -> None:
    shed = range(2, 50, 5)  # 10 of 50 requests: the champion failed, so nothing was shadowed
    answered = [i for i in range(50) if i not in shed]
    champion = [r for i in answered for r in _rows(range(i, i + 1))] + _rows(shed, error="overloaded")
    shadow = [r for i in answered for r in _rows(range(i, i + 1), role="challenger", served=False)]
    sink = _log(tmp_path / "t", champion + shadow)
    stats = window.shadow_stats(sink, WINDOW, NOW)
    assert stats is not None and stats.rows == 40
    assert stats.champion_error_rate == 10 / 50 and stats.challenger_error_rate == 0.0
    current = window.read(sink, WINDOW, NOW)
    assert current["request_id"].tolist() == [f"r{i}" for i in answered]
    assert window.features(current) == ["f1"]  # `error` is the logger's, not a feature


def test_files_from_before_the_error_column_stay_readable(tmp_path: Path) -> None:
    def old(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: v for k, v in r.items() if k != "error"} for r in rows]

    sink = tmp_path / "t"
    _log(sink, old(_rows(range(0, 10))))
    _log(sink, _rows(range(10, 20)), _rows(range(20, 22), error="overloaded"))
    frame = traffic.read(sink.as_uri())
    assert len(frame) == 22 and frame[traffic.ERROR].notna().sum() == 2
    assert len(window.read(sink.as_uri(), WINDOW, NOW)) == 20
    assert len(window.read(sink.as_uri(), driftmonitor.Window(rows=15), NOW)) == 15


def test_an_all_null_error_column_is_still_typed_string(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    sink = _log(tmp_path / "t", _rows(range(5)))
    (path,) = (tmp_path / "t").glob("*.parquet")
    assert str(pq.read_schema(path).field(traffic.ERROR).type) == "string"
    assert traffic.read(sink)[traffic.ERROR].isna().all()
