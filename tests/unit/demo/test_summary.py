"""summary.json round-trips the run's figures; the table shows them to a person."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from flywheel.demo import summary

SUMMARY = {
    "drift": {
        "detected": True,
        "share": 0.7778,
        "rowsChecked": 2000,
        "driftedColumns": [{"column": "f5", "score": 0.0, "method": "ks"}, {"column": "f9", "score": 0.01}],
    },
    "data": {"champion": {"rev": "period-1", "commit": "a" * 40, "rows": 4000}},
    "models": {"champion": "shuttle-622e9c8e", "challenger": "shuttle-1-0b1c2d3e"},
    "evaluation": {
        "metric": "accuracy",
        "champion": 0.8612,
        "challenger": 0.9911,
        "improvement": 0.1299,
        "rows": 800,
        "otherMetrics": {"f1": [0.51, 0.98]},
    },
    "decision": {"decision": "promoted", "reason": "accuracy 0.8612 -> 0.9911"},
    "traffic": {
        "requests": 812,
        "rows": 3650,
        "failed": 0,
        "p50Ms": 6.1,
        "p99Ms": 40.2,
        "versions": {"shuttle-622e9c8e": 700, "shuttle-1-0b1c2d3e": 112},
    },
    "promotion": {"failedRequests": 0},
    "timings": [{"key": "data", "title": "Commit period-1", "seconds": 1.25, "reused": True}],
    "totalSeconds": 181.5,
}


def test_write_round_trips_atomically(tmp_path: Path) -> None:
    path = summary.write(tmp_path, SUMMARY)
    assert path == tmp_path / summary.FILE
    assert json.loads(path.read_text()) == SUMMARY
    assert [p.name for p in tmp_path.iterdir()] == [summary.FILE]


def test_table_shows_the_figures() -> None:
    console = Console(width=160, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(summary.table(SUMMARY))
    text = console.export_text()
    for expected in (
        "0.7778",
        "2: f5, f9",
        "0.8612",
        "0.9911",
        "+0.1299",
        "promoted",
        "800",
        "812 / 3650",
        "failed requests",
        "shuttle-1-0b1c2d3e: 112",
        "data",
        "1.2 s (reused)",
        "181.5 s",
        "period-1 @ aaaaaaaa, 4000 rows",
        "0.5100 / 0.9800",
    ):
        assert expected in text, expected


def test_table_tolerates_a_partial_summary() -> None:
    console = Console(width=120, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(summary.table({"totalSeconds": 3.0}))
    assert "3.0 s" in console.export_text()
