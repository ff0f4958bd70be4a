"""Detection delay: rows of shifted traffic after a controlled onset until the drift check flags it.

python -m bench.drift_delay [--windows 1000,5000] [--step 250] [--pre-rows 6000] [--resolution 25]
writes bench/results/drift_delay.json.

The stream is `--pre-rows` period-1 traffic rows (flywheel.data.examples, part="traffic", unlabelled:
what a model server sees) followed, from the onset, by period-2 traffic rows: the real mission-time
shift of the Shuttle data. The reference is the champion's training data (period-1 "train" rows,
disjoint from the traffic). The monitor checks the last W rows (window.rows) every S rows with
checks.check and the default Drift (Evidently's automatic per-column test, datasetDriftShare 0.5).

Per window size W:
- false alarms: every check on a pure period-1 window (ending at W, W+S, ..., the onset) that flags;
- delay on the grid: the onset falls right after a check, checks then run at onset+S, onset+2S, ...;
  the delay is the rows after the onset until the first flagged check (a multiple of S);
- needed rows: the fewest period-2 rows in the window that flag it (bisected to --resolution rows,
  assuming more shifted rows never un-flag; the grid scan cross-checks that). With the onset at a
  random point between two checks the delay lies in [needed, needed + S - 1].
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import pandas as pd

from bench import _common
from flywheel.api import driftmonitor
from flywheel.data import examples
from flywheel.drift import checks

DRIFT = driftmonitor.Drift()  # the defaults a DriftMonitor gets


class Monitor:
    """Checks windows of one stream against one reference, counting checks and their CPU time."""

    def __init__(self, stream: pd.DataFrame, onset: int, reference: pd.DataFrame, cap: int) -> None:
        self.stream, self.onset, self.reference, self.cap = stream, onset, reference, cap
        self.features = [str(c) for c in stream.columns]
        self.checks = 0
        self.cpu_s = 0.0

    def check(self, end: int, rows: int) -> checks.CheckResult:
        """The check a monitor runs when the stream has reached `end` rows: the last `rows` of them."""
        started = time.process_time()
        current = self.stream.iloc[end - rows : end]
        result = checks.check(current, self.reference, DRIFT, self.features, self.cap)
        self.checks += 1
        self.cpu_s += time.process_time() - started
        return result

    def shifted(self, shifted: int, rows: int) -> bool:
        """Whether the window holding `shifted` post-onset rows is flagged."""
        return self.check(self.onset + shifted, rows).drifted


def false_alarms(monitor: Monitor, rows: int, step: int) -> dict[str, Any]:
    ends = range(monitor.onset, rows - 1, -step)  # pure period-1 windows, the onset's own first
    shares = [monitor.check(end, rows).drift_share for end in ends]
    flagged = [s for s in shares if s >= DRIFT.dataset_drift_share]
    return {
        "checks": len(shares),
        "flagged": len(flagged),
        "max_share": round(max(shares), 3),
        "mean_share": round(sum(shares) / len(shares), 3),
    }


def grid_delay(monitor: Monitor, rows: int, step: int) -> tuple[int | None, float | None]:
    """Rows after the onset until the first flagged check on the S grid (None: never within W)."""
    for shifted in range(step, rows + step, step):
        result = monitor.check(monitor.onset + min(shifted, rows), rows)
        if result.drifted:
            return min(shifted, rows), result.drift_share
    return None, None


def needed_rows(monitor: Monitor, rows: int, resolution: int) -> int | None:
    """Fewest post-onset rows (to `resolution`) that flag a window of `rows`, by bisection."""
    if not monitor.shifted(rows, rows):
        return None
    low, high = 0, rows  # low does not flag (a pure period-1 window; checked by false_alarms), high does
    while high - low > resolution:
        mid = (low + high) // 2
        low, high = (low, mid) if monitor.shifted(mid, rows) else (mid, high)
    return high


def measure(
    stream: pd.DataFrame, onset: int, reference: pd.DataFrame, rows: int, step: int, resolution: int
) -> dict[str, Any]:
    monitor = Monitor(stream, onset, reference, driftmonitor.Window().max_rows)
    wall = time.perf_counter()
    alarms = false_alarms(monitor, rows, step)
    delay, share = grid_delay(monitor, rows, step)
    needed = needed_rows(monitor, rows, resolution)
    return {
        "window_rows": rows,
        "step_rows": step,
        "false_alarms": alarms,
        "delay_rows_onset_after_check": delay,
        "drift_share_at_detection": None if share is None else round(share, 3),
        "needed_shifted_rows": needed,
        "needed_share_of_window": None if needed is None else round(needed / rows, 3),
        "delay_range_any_phase": None if needed is None else [needed, needed + step - 1],
        "checks_run": monitor.checks,
        "check_cpu_s": round(monitor.cpu_s, 2),
        "wall_s": round(time.perf_counter() - wall, 2),
    }


HEADER = ("W", "S", "alarms", "p1 share", "delay(grid)", "share@det", "needed", "any phase", "checks")


def _line(r: dict[str, Any]) -> str:
    fa, needed = r["false_alarms"], r["needed_shifted_rows"]
    cells = (
        r["window_rows"], r["step_rows"], f"{fa['flagged']}/{fa['checks']}",
        f"{fa['mean_share']:.2f}/{fa['max_share']:.2f}", r["delay_rows_onset_after_check"],
        r["drift_share_at_detection"], needed,
        "-" if needed is None else f"{needed}-{needed + r['step_rows'] - 1}", r["checks_run"],
    )  # fmt: skip
    return " ".join(f"{c!s:>11}" for c in cells)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drift_delay")
    parser.add_argument("--windows", default="1000,5000", help="window.rows values (W)")
    parser.add_argument("--step", type=int, default=250, help="rows between checks (S)")
    parser.add_argument("--pre-rows", type=int, default=6000, help="period-1 rows before the onset")
    parser.add_argument("--resolution", type=int, default=25, help="bisection resolution in rows")
    args = parser.parse_args(argv)
    windows = [int(w) for w in args.windows.split(",") if w]
    if max(windows) > args.pre_rows:
        parser.error(f"--pre-rows {args.pre_rows} must be at least the largest window {max(windows)}")
    checks.evidently()  # import time is not detection time
    reference = examples.period_frame(1, part="train").drop(columns=[examples.TARGET])
    before = examples.period_frame(1, part="traffic", labelled=False, rows=args.pre_rows)
    after = examples.period_frame(2, part="traffic", labelled=False, rows=max(windows))
    stream = pd.concat([before, after], ignore_index=True)
    print(
        f"reference {len(reference)} period-1 training rows; stream {len(before)} period-1 + "
        f"{len(after)} period-2 traffic rows; default Drift (share >= {DRIFT.dataset_drift_share})"
    )
    print(" ".join(f"{h:>11}" for h in HEADER))
    results = []
    for rows in windows:
        results.append(measure(stream, len(before), reference, rows, args.step, args.resolution))
        print(_line(results[-1]), flush=True)
    out = {
        "benchmark": "drift_delay",
        "command": " ".join(["python -m bench.drift_delay", *argv]),
        "features": list(stream.columns),
        "reference_rows": len(reference),
        "pre_onset_rows": len(before),
        "resolution_rows": args.resolution,
        "machine": {**_common.machine(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "results": results,
    }
    path = _common.write_results(_common.RESULTS_DIR / "drift_delay.json", out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
