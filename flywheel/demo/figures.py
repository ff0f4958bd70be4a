"""The report's figures: training curves of both runs, the champion/challenger comparison, and the
live metric over time (the concept-drift scenario).

The curves come from the trainer's own per-epoch events (JSON lines in the run's log, see
flywheel.training.trainer.emit), not from a re-computation, so they show what actually happened.
Figures are drawn on matplotlib's object API with the Agg canvas (no pyplot global state, no
display needed, safe beside the replay threads) and written atomically as PNG.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flywheel import artifacts

COLORS = {"champion": "#1f77b4", "challenger": "#d62728"}


def epochs_from_log(log_path: Path) -> list[dict[str, Any]]:
    """The per-epoch events of a training log, one per epoch, from the latest attempt.

    A resumed run's log holds several attempts; an epoch that was replayed keeps its last record."""
    by_epoch: dict[int, dict[str, Any]] = {}
    if not log_path.exists():
        return []
    for raw in log_path.read_text(errors="replace").splitlines():
        text = raw.strip()
        if not text.startswith("{"):
            continue
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("event") == "epoch" and isinstance(event.get("epoch"), int):
            by_epoch[event["epoch"]] = event
    return [by_epoch[e] for e in sorted(by_epoch)]


def training_curves(runs: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Loss and the holdout metric per epoch, one line per run (label -> epoch events)."""
    if not any(runs.values()):
        raise ValueError("no per-epoch metrics to plot: the training logs hold no epoch events")
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    loss_ax, metric_ax = fig.subplots(1, 2)
    metric_name = "metric"
    for label, epochs in runs.items():
        if not epochs:
            continue
        color = COLORS.get(label.split()[0])
        x = [e["epoch"] for e in epochs]
        loss_ax.plot(x, [e.get("loss") for e in epochs], marker="o", label=label, color=color)
        metric_name = epochs[-1].get("metric") or metric_name
        metric_ax.plot(
            x, [e.get("holdout") for e in epochs], marker="o", label=f"{label} holdout", color=color
        )
        metric_ax.plot(
            x,
            [e.get("train") for e in epochs],
            linestyle="--",
            label=f"{label} train",
            color=color,
            alpha=0.6,
        )
    loss_ax.set(title="Training loss", xlabel="epoch", ylabel="loss")
    metric_ax.set(
        title=f"{metric_name} per epoch (each run on its own data)", xlabel="epoch", ylabel=metric_name
    )
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    fig.tight_layout()
    return _save(fig, path)


def comparison(
    values: dict[str, tuple[float, float]], path: Path, *, rows: int, decision: str, primary: str
) -> Path:
    """Champion vs challenger on the same rows, one pair of bars per metric (metric -> values)."""
    if not values:
        raise ValueError("no metric values to compare")
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    names = list(values)
    width = 0.38
    for offset, (label, index) in ((-width / 2, ("champion", 0)), (width / 2, ("challenger", 1))):
        heights = [values[n][index] for n in names]
        bars = ax.bar(
            [i + offset for i in range(len(names))], heights, width, label=label, color=COLORS[label]
        )
        ax.bar_label(bars, labels=[f"{h:.3f}" for h in heights], fontsize=8, padding=2)
    ax.set_xticks(range(len(names)), [f"{n} *" if n == primary else n for n in names])
    top = max(max(v) for v in values.values())
    ax.set_ylim(0, max(1.0, top) * 1.15)
    ax.set_title(f"Champion vs challenger on {rows} period-2 holdout rows: {decision}")
    ax.set_ylabel("score")
    ax.legend(loc="lower right", fontsize=8)
    ax.text(0.01, 0.98, "* decides the promotion", transform=ax.transAxes, fontsize=7, va="top")
    fig.tight_layout()
    return _save(fig, path)


def live_performance(
    windows: list[dict[str, Any]], marks: dict[str, float], path: Path, *, metric: str, baseline: float | None
) -> Path:
    """The live metric over consecutive windows of labelled rows (x: labelled rows so far), with its
    95% interval, coloured by the model version that served the window; vertical marks (label -> x)
    for what the monitor did, a dotted line for the champion's holdout figure."""
    if not windows:
        raise ValueError("no labelled windows to plot")
    fig = Figure(figsize=(8, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    versions = list(dict.fromkeys(w["version"] for w in windows))
    for i, version in enumerate(versions):
        mine = [w for w in windows if w["version"] == version]
        x = [w["end"] for w in mine]
        color = palette[i % len(palette)]
        ax.plot(x, [w["value"] for w in mine], marker="o", color=color, label=f"served by {version}")
        ax.fill_between(x, [w["low"] for w in mine], [w["high"] for w in mine], color=color, alpha=0.15)
    if baseline is not None:
        ax.axhline(baseline, linestyle=":", color="grey", label="champion on its holdout")
    for n, (label, x) in enumerate(marks.items()):
        ax.axvline(x, linestyle="--", color="black", alpha=0.6)
        ax.text(x, 0.02 + 0.08 * n, f" {label}", transform=ax.get_xaxis_transform(), fontsize=8)
    ax.set(title=f"Live {metric} on labelled traffic (95% intervals)", xlabel="labelled rows", ylabel=metric)
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    artifacts.atomic_write_bytes(path, buf.getvalue())
    return path
