"""Live performance: a model's metric on labelled traffic, per served version and per time window.

Only rows whose answer went back to the caller count (`served`), so a version's figure is what its
callers got; shadow rows are for the paired comparison (flywheel.drift.paired). Each figure carries
the number of labelled rows and a 95% interval:

- accuracy: the Wilson score interval (right at small n and near 0 or 1, where the normal one is not);
- macro F1, RMSE, MAE: a percentile bootstrap over rows (seeded, so the same rows give the same
  interval);
- ROC-AUC needs the probability of every class, which the log does not keep: refused by name.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from flywheel import errors
from flywheel.api import driftmonitor
from flywheel.drift import feedback

Z95 = 1.959963984540054
RESAMPLES = 1000
CLASSIFICATION = frozenset({driftmonitor.Metric.ACCURACY, driftmonitor.Metric.F1})
REGRESSION = frozenset({driftmonitor.Metric.RMSE, driftmonitor.Metric.MAE})


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A metric on `rows` labelled rows with its 95% interval (None: no rows)."""

    value: float | None
    low: float | None
    high: float | None
    rows: int

    def as_status(self) -> dict[str, float | int | None]:
        r = lambda v: None if v is None else round(v, 6)  # noqa: E731
        return {"value": r(self.value), "low": r(self.low), "high": r(self.high), "rows": self.rows}


@dataclasses.dataclass(frozen=True)
class VersionWindow:
    version: str
    start: pd.Timestamp | None
    estimate: Estimate


def check_metric(metric: driftmonitor.Metric | str) -> driftmonitor.Metric:
    metric = driftmonitor.Metric(metric)
    if metric not in CLASSIFICATION | REGRESSION:
        raise errors.UserError(
            f"performance.metric {metric}: live performance is measured with accuracy, f1, rmse or mae "
            "(the traffic log keeps the predicted class's probability only, not every class's)"
        )
    return metric


def estimate(
    truth: np.ndarray, predicted: np.ndarray, metric: driftmonitor.Metric | str, seed: int = 0
) -> Estimate:
    """`metric` of `predicted` against `truth` (class names as text, or numbers), with its interval."""
    metric = check_metric(metric)
    n = len(truth)
    if n == 0:
        return Estimate(None, None, None, 0)
    if metric == driftmonitor.Metric.ACCURACY:
        hits = int((truth.astype(str) == predicted.astype(str)).sum())
        low, high = wilson(hits, n)
        return Estimate(hits / n, low, high, n)
    value = metric_value(truth, predicted, metric)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(RESAMPLES, n))
    samples = np.array([metric_value(truth[d], predicted[d], metric) for d in draws])
    low, high = np.nanpercentile(samples, [2.5, 97.5])
    return Estimate(value, float(low), float(high), n)


def metric_value(truth: np.ndarray, predicted: np.ndarray, metric: driftmonitor.Metric) -> float:
    if metric == driftmonitor.Metric.ACCURACY:
        return float((truth.astype(str) == predicted.astype(str)).mean())
    if metric == driftmonitor.Metric.F1:
        return macro_f1(truth.astype(str), predicted.astype(str))
    error = truth.astype(np.float64) - predicted.astype(np.float64)
    if metric == driftmonitor.Metric.RMSE:
        return float(math.sqrt(np.mean(error**2)))
    return float(np.mean(np.abs(error)))


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Macro F1 over the classes present in `truth` (as flywheel.drift.evaluate scores it)."""
    scores = []
    for label in np.unique(truth):
        tp = np.sum((predicted == label) & (truth == label))
        fp = np.sum((predicted == label) & (truth != label))
        fn = np.sum((predicted != label) & (truth == label))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else math.nan


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion hits/n."""
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def per_version(
    joined: feedback.Joined,
    metric: driftmonitor.Metric | str,
    window: pd.Timedelta | None = None,
    seed: int = 0,
) -> list[VersionWindow]:
    """The metric per served model version, and per `window` of request time when given."""
    metric = check_metric(metric)
    rows = joined.rows
    rows = rows[rows["served"].astype(bool) & rows["prediction"].notna()]
    if rows.empty:
        return []
    keys: list[str | pd.Grouper] = ["model_version"]
    if window is not None:
        keys.append(pd.Grouper(key="timestamp", freq=window))
    out = []
    for key, group in rows.groupby(keys, sort=True):
        version, start = (key[0], key[1]) if window is not None else (key[0], None)
        if group.empty:
            continue
        truth = group[feedback.LABEL].to_numpy()
        predicted = group["prediction"].to_numpy()
        out.append(VersionWindow(str(version), start, estimate(truth, predicted, metric, seed)))
    return out


def dropped(
    baseline: Estimate, current: Estimate, threshold: float | None, lower_is_better: bool
) -> str | None:
    """Why `current` counts as a drop, or None: below an absolute `threshold`, or significantly
    worse than the version's own `baseline` (the two 95% intervals do not overlap)."""
    if current.value is None:
        return None
    worse = (lambda a, b: a > b) if lower_is_better else (lambda a, b: a < b)
    if threshold is not None and worse(current.value, threshold):
        return f"{current.value:.4f} on {current.rows} labelled rows is past the threshold {threshold}"
    if baseline.value is None or current.high is None or current.low is None:
        return None
    if baseline.low is None or baseline.high is None:
        return None
    apart = current.low > baseline.high if lower_is_better else current.high < baseline.low
    if apart:
        return (
            f"{current.value:.4f} [{current.low:.4f}, {current.high:.4f}] on {current.rows} rows against "
            f"the baseline {baseline.value:.4f} [{baseline.low:.4f}, {baseline.high:.4f}]"
        )
    return None
