"""The demo's outcome: summary.json (for machines and tests) and a rich table (for people).

summary.json carries the real figures of the run, never a constant: drift share and drifted
columns from the check, both models' metric values from the evaluation on the same rows, the
decision and its reason from the DriftMonitor's status, the replay's counts, per-stage timings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from flywheel import artifacts

FILE = "summary.json"


def write(report: Path, summary: dict[str, Any]) -> Path:
    """Write summary.json into the report folder, atomically."""
    path = report / FILE
    artifacts.atomic_write_text(path, json.dumps(summary, indent=2, default=str) + "\n")
    return path


def table(summary: dict[str, Any]) -> Table:
    """One table: drift, data, models, evaluation, decision, traffic, timings."""
    out = Table(title="flywheel demo: the closed loop", box=box.SIMPLE_HEAVY, show_lines=False)
    out.add_column("stage / figure", style="bold")
    out.add_column("value", overflow="fold")
    for section, rows in _sections(summary):
        out.add_row(f"[cyan]{section}[/cyan]", "", end_section=False)
        for key, value in rows:
            out.add_row(f"  {key}", value)
    return out


def _sections(s: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    drift, ev, dec = s.get("drift") or {}, s.get("evaluation") or {}, s.get("decision") or {}
    traffic, data, models = s.get("traffic") or {}, s.get("data") or {}, s.get("models") or {}
    columns = drift.get("driftedColumns") or []
    metric = ev.get("metric", "?")
    evaluation = [
        (f"{metric} champion", _num(ev.get("champion"))),
        (f"{metric} challenger", _num(ev.get("challenger"))),
        ("improvement", _num(ev.get("improvement"), signed=True)),
        ("rows (same for both)", _text(ev.get("rows"))),
    ]
    for name, pair in (ev.get("otherMetrics") or {}).items():
        evaluation.append((f"{name} champion / challenger", f"{_num(pair[0])} / {_num(pair[1])}"))
    timings = [
        (t["key"], f"{t['seconds']:.1f} s" + (" (reused)" if t.get("reused") else ""))
        for t in s.get("timings") or []
    ]
    timings.append(("total", f"{s.get('totalSeconds', 0):.1f} s"))
    return [
        (
            "drift",
            [
                ("dataset drift share", _num(drift.get("share"))),
                ("drift detected", _text(drift.get("detected"))),
                ("drifted columns", f"{len(columns)}: {', '.join(c['column'] for c in columns)}"),
                ("rows checked", _text(drift.get("rowsChecked"))),
            ],
        ),
        (
            "data (DVC)",
            [(role, _rev(data[role])) for role in ("champion", "challenger") if data.get(role)],
        ),
        ("models", [(role, _text(models.get(role))) for role in ("champion", "challenger")]),
        ("evaluation", evaluation),
        (
            "decision",
            [("decision", _text(dec.get("decision"))), ("reason", _text(dec.get("reason")))],
        ),
        (
            "traffic (replayed period-2)",
            [
                ("requests / rows", f"{_text(traffic.get('requests'))} / {_text(traffic.get('rows'))}"),
                ("failed requests", _text(traffic.get("failed"))),
                ("failed during promotion", _text((s.get("promotion") or {}).get("failedRequests"))),
                ("latency p50 / p99", f"{_text(traffic.get('p50Ms'))} / {_text(traffic.get('p99Ms'))} ms"),
                ("served by", _versions(traffic.get("versions") or {})),
            ],
        ),
        ("timings", timings),
    ]


def _rev(data: dict[str, Any]) -> str:
    return (
        f"{data.get('tag') or data.get('rev')} @ {str(data.get('commit'))[:8]}, {data.get('rows', '?')} rows"
    )


def _versions(versions: dict[str, int]) -> str:
    return ", ".join(f"{v}: {n}" for v, n in versions.items()) or "-"


def _num(value: Any, signed: bool = False) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _text(value: Any) -> str:
    return "-" if value is None else str(value)
