"""Concept drift: labelled rows until live performance flags it, and fine-tune vs from-scratch retrains.

python -m bench.concept_drift [--window 200] [--step 25] [--repeats 20] writes
bench/results/concept_drift.json.

The champion is trained (in-process, the real trainer) on period-1 rows of the Shuttle example. Its
baseline is its accuracy on its own holdout with the Wilson interval (flywheel.drift.performance).
Labelled traffic then arrives: period-1 traffic rows, relabelled from the onset by
flywheel.data.examples.concept_shift (same features, a new failure mode: a feature-drift check
cannot see it). The monitor scores the last `--window` labelled rows every `--step` rows and fires
when performance.dropped says the window is significantly below the baseline (the intervals do not
overlap).

- false alarms: checks that fire on the same number of rows of unshifted traffic, over `--repeats`
  shuffles of the traffic (the rate per check is what a no-drift run of that length would see);
- delay: labelled post-onset rows until the first check that fires, per shuffle (median and max).

Retraining on the relabelled period-1 rows: from scratch (the champion's settings) against a
fine-tune from the champion (model.initFrom, a third of the epochs); wall time and accuracy on
relabelled traffic neither trained on.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import _common
from flywheel import distributed as dist
from flywheel.api import contract, trainingrun
from flywheel.data import examples
from flywheel.drift import evaluate, performance
from flywheel.training import config, trainer


def train(
    root: Path, name: str, frame: pd.DataFrame, epochs: int, init_from: str | None = None
) -> tuple[Path, float]:
    spec = trainingrun.TrainingRunSpec(
        data=examples.file_repo(root / f"{name}-dvc", frame),  # the trainer resolves it with DVC
        model=examples.model_spec().model_copy(
            update={"architecture": trainingrun.Architecture(hidden_layers=[32, 16]), "init_from": init_from}
        ),
        training=trainingrun.Training(epochs=epochs, batch_size=128, learning_rate=0.01),
    )
    run_root = root / "artifacts" / name
    cfg = config.Config(name=name, spec=spec, artifacts_uri=run_root.as_uri())
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.run(cfg, dist.init({}))
    return run_root / contract.MODEL_DIR, time.perf_counter() - started


def accuracy(model: Path, rows: pd.DataFrame) -> float:
    return evaluate.score(evaluate.load(model), rows, examples.TARGET, "accuracy")


def scan(
    predicted: np.ndarray, truth: np.ndarray, baseline: performance.Estimate, window: int, step: int
) -> list[int]:
    """The row counts at which a check fires (each check looks at the last `window` labelled rows)."""
    fired = []
    for end in range(step, len(truth) + 1, step):
        lo = max(0, end - window)
        current = performance.estimate(truth[lo:end], predicted[lo:end], "accuracy")
        if performance.dropped(baseline, current, None, lower_is_better=False):
            fired.append(end)
    return fired


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.concept_drift")
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--step", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-concept-") as tmp:
        root = Path(tmp)
        champion, champion_s = train(root, "champion", examples.period_frame(1), epochs=6)
        holdout = evaluate.holdout(champion)
        model = evaluate.load(champion)
        hold_pred = np.asarray([str(p) for p in model.predict(holdout).predictions])
        baseline = performance.estimate(
            holdout[examples.TARGET].astype(str).to_numpy(), hold_pred, "accuracy"
        )
        traffic = examples.period_frame(1, part="traffic")
        predicted = np.asarray([str(p) for p in model.predict(traffic).predictions])
        plain = traffic[examples.TARGET].astype(str).to_numpy()
        shifted = examples.concept_shift(traffic)[examples.TARGET].astype(str).to_numpy()
        rng = np.random.default_rng(0)
        alarms, checks, delays = 0, 0, []
        for _ in range(args.repeats):
            order = rng.permutation(len(traffic))
            fired = scan(predicted[order], plain[order], baseline, args.window, args.step)
            alarms += len(fired)
            checks += len(traffic) // args.step
            hits = scan(predicted[order], shifted[order], baseline, args.window, args.step)
            delays.append(hits[0] if hits else None)
        found = [d for d in delays if d is not None]
        relabelled = examples.concept_shift(examples.period_frame(1))
        scratch, scratch_s = train(root, "scratch", relabelled, epochs=6)
        tuned, tuned_s = train(root, "tuned", relabelled, epochs=2, init_from=champion.as_uri())
        test_rows = examples.concept_shift(traffic)
        result: dict[str, Any] = {
            "machine": _common.machine(),
            "args": vars(args),
            "baseline": baseline.as_status(),
            "champion_on_shifted_traffic": accuracy(champion, test_rows),
            "champion_on_plain_traffic": accuracy(champion, traffic),
            "false_alarms": alarms,
            "checks_without_drift": checks,
            "false_alarm_rate_per_check": alarms / checks if checks else None,
            "delay_rows_median": statistics.median(found) if found else None,
            "delay_rows_max": max(found) if found else None,
            "detected": f"{len(found)}/{len(delays)}",
            "retrain": {
                "from_scratch": {
                    "epochs": 6,
                    "seconds": round(scratch_s, 2),
                    "accuracy": accuracy(scratch, test_rows),
                },
                "fine_tune": {
                    "epochs": 2,
                    "seconds": round(tuned_s, 2),
                    "accuracy": accuracy(tuned, test_rows),
                },
            },
            "champion_seconds": round(champion_s, 2),
        }
    out = _common.write_results(_common.RESULTS_DIR / "concept_drift.json", result)
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
