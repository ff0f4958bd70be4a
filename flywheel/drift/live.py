"""What the check Job reports beyond feature drift: live performance and prediction drift.

Both are measured against the champion on its own holdout (the rows its export kept, which it
never trained on): its metric there, with a 95% interval, is the baseline a drop is judged against,
and its predictions there are the reference distribution of predictions.

- Live performance: the window's served rows joined with the ground truth that came back
  (flywheel.drift.feedback), per model version (flywheel.drift.performance). A drop is judged only
  for the champion's version and only from spec.performance.minRows labelled rows on.
- Prediction drift (a proxy for label shift, available before any label): the distance between the
  window's served predictions and the champion's on its holdout, with Evidently's defaults for a
  column of that kind: Jensen-Shannon distance of the class shares for classification, Wasserstein
  distance in units of the reference's standard deviation for regression.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import distance as sp_distance
from scipy.stats import wasserstein_distance

from flywheel import errors
from flywheel.api import driftmonitor as dm_api
from flywheel.drift import decide, evaluate, feedback, paired, performance

MAX_VERSIONS = 5  # per check: the termination message is bounded (4 KiB)


def metric_of(spec: dm_api.DriftMonitorSpec) -> dm_api.Metric:
    chosen = spec.performance.metric or spec.promotion.metric
    return dm_api.Metric.ACCURACY if chosen == dm_api.Metric.ROC_AUC else dm_api.Metric(chosen)


def assess(
    spec: dm_api.DriftMonitorSpec,
    champion_dir: Path,
    champion_version: str | None,
    current: pd.DataFrame,
    sink: str,
    seed: int = 0,
) -> dict[str, Any]:
    """Status fields: performance, predictionDrift (either absent when it cannot be measured)."""
    out: dict[str, Any] = {}
    predictor = evaluate.load(champion_dir)
    task = predictor.preprocessor.task
    try:
        holdout = evaluate.holdout(champion_dir)
    except errors.UserError:  # an export without holdout rows: nothing to compare with
        return out
    target = str(predictor.card.get("target"))
    holdout = holdout[holdout[target].notna()].reset_index(drop=True)
    if holdout.empty:
        return out
    reference = evaluate.predictions_of(predictor, predictor.predict(holdout))
    served = current["prediction"].dropna().to_numpy() if "prediction" in current.columns else np.array([])
    if len(served):
        out["predictionDrift"] = prediction_drift(
            reference, served, task, spec.performance.prediction_drift_threshold
        )
    metric = metric_of(spec)
    if (metric in performance.CLASSIFICATION) != (task == "classification"):
        return out
    truth = evaluate.truth_of(predictor, holdout, target)
    baseline = performance.estimate(truth, reference, metric, seed)
    joined = feedback.join(current, sink)
    versions = performance.per_version(joined, metric, seed=seed)
    mine = next((v.estimate for v in versions if v.version == champion_version), None)
    dropped = None
    if mine is not None and mine.rows >= spec.performance.min_rows:
        lower = metric in decide.LOWER_IS_BETTER
        dropped = performance.dropped(baseline, mine, spec.performance.threshold, lower_is_better=lower)
    out["performance"] = {
        "metric": metric.value,
        "baseline": {"version": champion_version or "champion", **baseline.as_status()},
        "versions": [{"version": v.version, **v.estimate.as_status()} for v in versions[-MAX_VERSIONS:]],
        "labels": joined.labels,
        "unknownLabels": joined.unknown,
        "dropped": dropped,
    }
    return out


def prediction_drift(
    reference: np.ndarray, current: np.ndarray, task: str, threshold: float
) -> dict[str, Any]:
    if task == "classification":
        classes = sorted(set(map(str, reference)) | set(map(str, current)))
        ref = pd.Series(reference.astype(str)).value_counts(normalize=True).reindex(classes, fill_value=0.0)
        cur = pd.Series(current.astype(str)).value_counts(normalize=True).reindex(classes, fill_value=0.0)
        value = float(sp_distance.jensenshannon(ref.to_numpy(), cur.to_numpy(), base=2))
        method = "jensenshannon"
    else:
        ref_f, cur_f = reference.astype(np.float64), current.astype(np.float64)
        scale = float(np.std(ref_f)) or 1.0
        value = float(wasserstein_distance(ref_f, cur_f) / scale)
        method = "wasserstein_normed"
    value = 0.0 if not np.isfinite(value) else value
    return {
        "method": method,
        "distance": round(value, 6),
        "threshold": threshold,
        "drifted": value >= threshold,
    }


def shadow_comparison(
    spec: dm_api.DriftMonitorSpec,
    sink: str,
    now: Any,
    challenger_version: str | None,
    task: str,
) -> paired.Difference | None:
    """Champion and challenger on the labelled shadowed records of the window (the paired test on
    the same live rows), or None below spec.performance.minRows labelled pairs or for roc_auc."""
    from flywheel.drift import window

    metric = spec.promotion.metric
    if metric not in performance.CLASSIFICATION | performance.REGRESSION:
        return None
    pairs = window.shadow_pairs(sink, spec.window, now, challenger_version)
    if pairs.empty:
        return None
    labels, _, _ = feedback.read_labels(sink, since=pairs["timestamp"].min())  # only the window's
    labelled = pairs.merge(labels[[*feedback.KEY, feedback.LABEL]], on=feedback.KEY, how="inner")
    if len(labelled) < spec.performance.min_rows:
        return None

    def as_array(column: str) -> np.ndarray:
        values = labelled[column].to_numpy()
        return values.astype(np.float64) if task == "regression" else values.astype(str)

    return paired.compare(as_array(feedback.LABEL), as_array("champion"), as_array("challenger"), metric)
