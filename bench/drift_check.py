"""Drift check cost vs window size: logged traffic of 10k / 100k / 1M rows x 20 columns.

python -m bench.drift_check [--cap N] [--sizes N,N,...] [--uncapped N,N,...] [--repeats N]
(defaults: cap 50000 = window.maxRows' default, sizes 10000,100000,1000000, uncapped 10000,100000,
best of 2 for the capped check and the bare call)
writes bench/results/drift_check.json.

Data: the Shuttle periods (flywheel.data.examples), widened to 20 columns (the 9 sensor features, 9
neighbour differences, 2 categorical bands). The reference is 20,000 period-1 rows; the traffic is
period-2 rows drawn with replacement, written as Parquet files in the serving traffic log's format
(50,000 rows per file, as successive flushes), with every second request also shadowed by a
challenger (so half the rows are not current traffic and must be skipped).

Per size, side by side: window.read (read the newest rows, keep the champion's, sample to the cap),
checks.check (sampling + Evidently's DataDriftPreset with per-column tests + parsing), the same check
with no cap, a bare Evidently call (Report([DataDriftPreset()]).run) on the very frames the capped check
sampled (the monitor's overhead is check / bare - 1), and the report (HTML render + atomic writes).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import _common
from flywheel.api import driftmonitor
from flywheel.data import examples
from flywheel.drift import checks, reports, window

FILE_ROWS = 50_000
NOW = datetime.datetime.now(datetime.UTC)


def widen(frame: pd.DataFrame) -> pd.DataFrame:
    """9 Shuttle features -> 20 columns: + 9 neighbour differences + 2 categorical bands."""
    base = frame.drop(columns=[examples.TARGET], errors="ignore").reset_index(drop=True)
    cols = list(base.columns)
    out = base.copy()
    for left, right in zip(cols, [*cols[1:], cols[0]], strict=True):
        out[f"{left}_minus_{right}"] = base[left] - base[right]
    out["f2_band"] = pd.cut(base["f2"], [-np.inf, -5, 0, 5, np.inf], labels=["vlow", "low", "mid", "high"])
    out["f2_band"] = out["f2_band"].astype(str)
    out["f9_sign"] = np.where(base["f9"] >= 0, "pos", "neg")
    return out


def write_traffic(sink: Path, rows: int, source: pd.DataFrame, seed: int = 0) -> int:
    """`rows` logged rows: requests drawn from `source`, every second one also shadowed; returns
    how many rows the champion served (the current traffic)."""
    rng = np.random.default_rng(seed)
    requests = round(rows * 2 / 3) + 1
    drawn = source.iloc[rng.integers(0, len(source), size=requests)].reset_index(drop=True)
    stamps = pd.date_range(NOW - datetime.timedelta(hours=1), NOW, periods=requests, tz="UTC")
    meta = pd.DataFrame({"timestamp": stamps, "request_id": [f"r{i}" for i in range(requests)]})
    champion = pd.concat([meta.assign(role="champion", served=True), drawn], axis=1)
    shadow = pd.concat([meta.assign(role="challenger", served=False), drawn], axis=1).iloc[::2]
    logged = pd.concat([champion, shadow]).sort_values("timestamp", kind="stable").head(rows)
    logged = logged.assign(model_version="v1", prediction="0", probability=0.9, latency_ms=2.0)
    sink.mkdir(parents=True, exist_ok=True)
    for seq, start in enumerate(range(0, len(logged), FILE_ROWS)):
        stamp = (NOW + datetime.timedelta(milliseconds=seq)).strftime("%Y%m%dT%H%M%S.%fZ")
        logged.iloc[start : start + FILE_ROWS].to_parquet(
            sink / f"{stamp}-bench-{os.getpid()}-{seq:06d}.parquet"
        )
    return int(logged["served"].sum())


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process). The machine is shared, so CPU time is the
    load-independent figure, and ratios are taken on it."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def bare(current: pd.DataFrame, reference: pd.DataFrame) -> Any:
    ev = checks.evidently()
    return ev.Report([ev.presets.DataDriftPreset()]).run(reference_data=reference, current_data=current)


def measure(
    rows: int, cap: int, uncapped: bool, ref: pd.DataFrame, tmp: Path, repeats: int
) -> dict[str, Any]:
    sink = tmp / f"traffic-{rows}"
    served = write_traffic(sink, rows, widen(examples.period_frame(2, part="train")))
    drift = driftmonitor.Drift()
    capped = driftmonitor.Window(rows=rows, maxRows=cap)
    current, read_s, read_cpu = timed(window.read, sink.as_uri(), capped, NOW)
    features = window.features(current)
    # the very frames the capped check hands Evidently (checks.check samples with these seeds)
    sampled_cur, sampled_ref = window.sample(current[features], cap, 0), window.sample(ref[features], cap, 1)
    bare_runs, check_runs = [], []
    for _ in range(repeats):  # interleaved, best of `repeats`: the machine's load comes and goes
        bare_runs.append(timed(bare, sampled_cur, sampled_ref))
        check_runs.append(timed(checks.check, current, ref, drift, features, cap))
    _, bare_s, bare_cpu = min(bare_runs, key=lambda r: r[2])
    result, check_s, check_cpu = min(check_runs, key=lambda r: r[2])
    _, report_s, _ = timed(reports.write, (tmp / "artifacts").as_uri(), f"bench-{rows}", NOW, result)
    row: dict[str, Any] = {
        "logged_rows": rows,
        "served_rows": served,
        "cap": cap,
        "rows_checked": result.rows_current,
        "reference_rows": result.rows_reference,
        "read_s": round(read_s, 3),
        "read_cpu_s": round(read_cpu, 3),
        "check_s": round(check_s, 3),
        "check_cpu_s": round(check_cpu, 3),
        "bare_evidently_s": round(bare_s, 3),
        "bare_evidently_cpu_s": round(bare_cpu, 3),
        "overhead_vs_bare_cpu": round(check_cpu / bare_cpu - 1, 3),
        "report_s": round(report_s, 3),
        "read_plus_check_cpu_s": round(read_cpu + check_cpu, 3),
        "drift_share": round(result.drift_share, 3),
    }
    if uncapped:
        everything = driftmonitor.Window(rows=rows, maxRows=10**9)
        full, _, full_read_cpu = timed(window.read, sink.as_uri(), everything, NOW)
        full_result, full_check_s, full_check_cpu = timed(checks.check, full, ref, drift, features, 10**9)
        row.update(
            uncapped_rows_checked=full_result.rows_current,
            uncapped_reference_rows=full_result.rows_reference,
            uncapped_read_cpu_s=round(full_read_cpu, 3),
            uncapped_check_s=round(full_check_s, 3),
            uncapped_check_cpu_s=round(full_check_cpu, 3),
        )
    return row


HEADER = ("logged", "checked", "read cpu", "check cpu", "bare cpu", "overhead", "check wall", "uncapped cpu")


def _line(row: dict[str, Any]) -> str:
    full = (
        f"{row['uncapped_check_cpu_s']:.2f} ({row['uncapped_rows_checked']})"
        if "uncapped_check_cpu_s" in row
        else "-"
    )
    cells = (
        row["logged_rows"], row["rows_checked"], f"{row['read_cpu_s']:.2f}",
        f"{row['check_cpu_s']:.2f}", f"{row['bare_evidently_cpu_s']:.2f}",
        f"{row['overhead_vs_bare_cpu']:+.1%}", f"{row['check_s']:.2f}", full,
    )  # fmt: skip
    return " ".join(f"{c!s:>12}" for c in cells)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drift_check")
    parser.add_argument("--cap", type=int, default=driftmonitor.Window().max_rows)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--uncapped", default="10000,100000")
    parser.add_argument("--repeats", type=int, default=2, help="best-of for the capped check and bare call")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    uncapped = {int(s) for s in args.uncapped.split(",") if s}
    _, import_s, _ = timed(checks.evidently)
    ref = widen(examples.period_frame(1, part="train", rows=20_000))
    checks.check(ref.head(500), ref.head(500), driftmonitor.Drift(), list(ref.columns), 500)  # warm-up
    print(
        f"{len(ref.columns)} columns, reference {len(ref)} rows, cap {args.cap}; seconds (CPU unless 'wall')"
    )
    print(" ".join(f"{h:>12}" for h in HEADER))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        for rows in sizes:
            results.append(measure(rows, args.cap, rows in uncapped, ref, Path(tmp), args.repeats))
            print(_line(results[-1]), flush=True)
    out = {
        "benchmark": "drift_check",
        "columns": len(ref.columns),
        "evidently_import_s": round(import_s, 2),
        "machine": {**_common.machine(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "repeats": args.repeats,
        "results": results,
    }
    path = _common.write_results(_common.RESULTS_DIR / "drift_check.json", out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
