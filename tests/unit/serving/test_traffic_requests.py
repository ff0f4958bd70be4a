"""The service's traffic log path (TrafficLogger.add_request): the same Parquet as rows logged as
dicts, column for column and type for type, so the DriftMonitor reads both alike."""

from __future__ import annotations

import datetime
import io
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from flywheel.serving import traffic

FEATURES = ("age", "plan", "score")
ARRIVED = datetime.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)
ARRIVED_US = int((ARRIVED - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)).total_seconds()) * 10**6
ARRIVED_US += ARRIVED.microsecond


def _requests() -> list[traffic.Request]:
    records = [{"age": 30.0, "plan": "pro", "score": 0.5}, {"age": 41.0, "plan": "free"}]  # no score
    return [
        traffic.Request(ARRIVED_US, "a", "champion", True, "v1", records[:1], ["yes"], [0.9], 1.5),
        traffic.Request(ARRIVED_US + 7, "b", "challenger", False, "v2", records, [None, None], [None, None], 2.0,
                        ["overloaded", "overloaded"]),
        traffic.Request(ARRIVED_US + 9, "c", "champion", True, "v1", records, ["no", "yes"], [0.6, 0.7], 3.0),
    ]  # fmt: skip


def _as_dicts(requests: list[traffic.Request]) -> list[dict[str, Any]]:
    """The rows the service logged (as dicts, aware datetimes) before add_request existed."""
    rows = []
    for r in requests:
        for i, record in enumerate(r.records):
            rows.append(
                {
                    "timestamp": ARRIVED + datetime.timedelta(microseconds=r.arrived_us - ARRIVED_US),
                    "request_id": r.request_id,
                    "role": r.role,
                    "served": r.served,
                    "model_version": r.model_version,
                    **{name: record.get(name) for name in FEATURES},
                    "prediction": r.predictions[i],
                    "probability": r.probabilities[i],
                    "latency_ms": r.latency_ms,
                    traffic.ERROR: r.errors[i] if r.errors else None,
                    traffic.RECORD_INDEX: i,
                }
            )
    return rows


def _written(logger: traffic.TrafficLogger) -> Any:
    uri = logger.flush()
    assert uri is not None
    return pq.read_table(io.BytesIO(logger.store.read_bytes(uri.rsplit("/", 1)[1])))


def test_requests_write_the_table_rows_as_dicts_do(tmp_path: Path) -> None:
    fast = traffic.TrafficLogger(f"file://{tmp_path}/fast", 10**6, 3600)
    fast.features = FEATURES
    for request in _requests():
        fast.add_request(request)
    slow = traffic.TrafficLogger(f"file://{tmp_path}/slow", 10**6, 3600)
    slow.add(_as_dicts(_requests()))
    got, want = _written(fast), _written(slow)
    assert got.schema == want.schema and got.num_rows == 5
    assert got.to_pylist() == want.to_pylist()
    assert got.column("score").to_pylist() == [0.5, 0.5, None, 0.5, None]  # a missing feature: null
    assert got.column("timestamp")[0].as_py() == ARRIVED


def test_requests_and_dict_rows_share_one_file(tmp_path: Path) -> None:
    logger = traffic.TrafficLogger(f"file://{tmp_path}/mixed", 10**6, 3600)
    logger.features = FEATURES
    first, *rest = _requests()
    logger.add_request(first)
    logger.add(_as_dicts(rest))
    table = _written(logger)
    expected = traffic.TrafficLogger(f"file://{tmp_path}/dicts", 10**6, 3600)
    expected.add(_as_dicts(_requests()))
    assert table.to_pylist() == _written(expected).to_pylist()


def test_a_label_arrow_cannot_type_falls_back_to_strings(tmp_path: Path) -> None:
    logger = traffic.TrafficLogger(f"file://{tmp_path}/labels", 10**6, 3600)
    logger.features = FEATURES
    record = {"age": 1.0, "plan": "pro", "score": 0.1}
    logger.add_request(traffic.Request(ARRIVED_US, "x", "champion", True, "v1", [record], [1], [0.5], 1.0))
    logger.add_request(traffic.Request(ARRIVED_US, "y", "champion", True, "v1", [record], ["b"], [0.5], 1.0))
    assert _written(logger).column("prediction").to_pylist() == ["1", "b"]
