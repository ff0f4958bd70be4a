"""`flywheel demo`: the most complete flow that exists today, on this machine.

It trains the champion on period 1 of the example DVC repository through the local backend (data
resolution, the Great Expectations gate, torchrun with 2 workers, fp32 + int8 export), then scores
the int8 model on the next period's labelled traffic to show what the shift costs. The closed loop
(drift detection, a challenger, guarded promotion; the DriftMonitor issue) is not built yet, and the
summary says so rather than pretending.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from flywheel import api, artifacts, errors
from flywheel.api import loading

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trainingrun-local.yaml"


def cli(args: argparse.Namespace) -> int:
    console = Console()
    home = Path(args.home).resolve()
    report = Path(args.report).resolve() if args.report else home / "report"
    started = time.monotonic()
    run = _train(home, console)
    trained = time.monotonic()
    status = run["status"]
    if status.get("phase") != "Succeeded":
        raise errors.UserError(
            f"the champion did not train: {status.get('message')}; see `flywheel logs tr/shuttle`"
        )
    shift = _score_next_period(status)
    summary = {
        "champion": status["model"]["version"],
        "data": status.get("data"),
        "holdoutMetrics": status.get("metrics"),
        "nextPeriod": shift,
        "seconds": {"train": round(trained - started, 1), "total": round(time.monotonic() - started, 1)},
        "notYetBuilt": "drift detection, challenger retraining and guarded promotion (DriftMonitor)",
    }
    report.mkdir(parents=True, exist_ok=True)
    artifacts.atomic_write_text(report / "summary.json", json.dumps(summary, indent=2) + "\n")
    _print(console, summary, report)
    return 0


def _train(home: Path, console: Console) -> dict[str, Any]:
    from flywheel.local import runners

    (resource,) = loading.load_file(EXAMPLE)
    ctx = runners.Context.create(str(home), detach=False)
    manifest = ctx.store.put(resource.to_manifest())
    module = runners.runner(resource.KIND)
    assert module is not None
    console.print(f"[bold]Training the champion[/bold] from {EXAMPLE.name} (period-1 data)")
    module.run(ctx, manifest)
    stored = ctx.store.get(resource.KIND, resource.name)
    assert stored is not None
    return stored


def _score_next_period(status: dict[str, Any]) -> dict[str, Any]:
    """Accuracy of the int8 champion on period-2 traffic (labels known to the demo only)."""
    from flywheel.data import examples
    from flywheel.training import inference

    model_dir = artifacts.Store(status["model"]["cardUri"].rsplit("/", 1)[0]).local_path()
    predictor = inference.load(model_dir, quantized=True)
    out: dict[str, Any] = {}
    for period in (1, 2):
        frame = examples.period_frame(period, part="traffic")
        target = api.TrainingRun.model_validate(loading.read_documents(EXAMPLE)[0]).spec.model.target
        labels = frame.pop(target).astype(str).tolist()
        predicted = [str(p) for p in predictor.predict(frame).predictions]
        out[f"period{period}Accuracy"] = round(
            sum(a == b for a, b in zip(labels, predicted, strict=True)) / len(labels), 4
        )
        out[f"period{period}Rows"] = len(labels)
    return out


def _print(console: Console, summary: dict[str, Any], report: Path) -> None:
    table = Table(title="flywheel demo")
    table.add_column("what")
    table.add_column("value")
    table.add_row("champion", summary["champion"])
    data = summary.get("data") or {}
    table.add_row(
        "data", f"{data.get('rev')} @ {str(data.get('commit'))[:8]} md5 {str(data.get('hash'))[:8]}"
    )
    for name, value in (summary.get("holdoutMetrics") or {}).items():
        table.add_row(f"holdout {name}", f"{value:.4f}")
    shift = summary["nextPeriod"]
    table.add_row("int8 accuracy, period-1 traffic", f"{shift['period1Accuracy']:.4f}")
    table.add_row("int8 accuracy, period-2 traffic", f"{shift['period2Accuracy']:.4f}")
    table.add_row(
        "time (train / total)", f"{summary['seconds']['train']} s / {summary['seconds']['total']} s"
    )
    console.print(table)
    console.print(f"Not built yet: {summary['notYetBuilt']}.")
    console.print(f"Report: {report}")
