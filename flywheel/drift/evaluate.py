"""Champion vs challenger on the same rows, scored as served (the quantized models, when exported).

The rows are the challenger's holdout (contract.HOLDOUT_FILE, written by the trainer's export): data
from the new revision that neither model trained on. Metrics: accuracy, macro F1 and ROC-AUC
(binary, or one-vs-rest for 3+ classes) for classification; RMSE and MAE for regression. The label
space is the classes present in the rows, the same for both models, so a class one model never
learnt costs it rather than vanishing from the average; ROC-AUC with fewer than two classes present
is undefined (NaN), and the verdict rejects rather than inventing a winner.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from flywheel import errors
from flywheel.api import contract, driftmonitor
from flywheel.drift import decide, paired, performance
from flywheel.training import inference

Comparison = decide.Comparison
CLASSIFICATION = frozenset(
    {driftmonitor.Metric.ACCURACY, driftmonitor.Metric.F1, driftmonitor.Metric.ROC_AUC}
)


def holdout(challenger_dir: Path) -> pd.DataFrame:
    """The challenger's holdout rows with the target, as its export wrote them."""
    path = Path(challenger_dir) / contract.HOLDOUT_FILE
    if not path.is_file():
        raise errors.UserError(
            f"{challenger_dir}: no {contract.HOLDOUT_FILE}; retrain the challenger with a flywheel "
            "version whose export writes its holdout rows"
        )
    return pd.read_parquet(path)


def load(model_dir: Path) -> inference.Predictor:
    """The model as served: int8 (ONNX Runtime, no torch import) when the export has it, else fp32."""
    card_file = Path(model_dir) / contract.MODEL_CARD
    if not card_file.is_file():
        raise errors.UserError(f"{model_dir}: no {contract.MODEL_CARD}, so the export is incomplete")
    quantized = bool(json.loads(card_file.read_text()).get("files", {}).get("quantized"))
    return inference.load(Path(model_dir), quantized=quantized)


def compare(
    champion_dir: Path,
    challenger_dir: Path,
    rows: pd.DataFrame,
    target: str,
    metric: driftmonitor.Metric,
) -> decide.Comparison:
    """Score both models on `rows` (features + `target`) with `metric`, and, for a per-row metric,
    the paired bootstrap interval of their difference (flywheel.drift.paired)."""
    metric = driftmonitor.Metric(metric)
    if target not in rows.columns:
        raise errors.UserError(f"the evaluation rows lack the target column {target!r}")
    rows = rows[rows[target].notna()].reset_index(drop=True)
    if rows.empty:
        raise errors.UserError("no evaluation rows with a target value: nothing to compare on")
    predictors = [load(Path(d)) for d in (champion_dir, challenger_dir)]
    outputs = [_predict(p, rows, target, metric) for p in predictors]
    values = [_value(p, o, rows, target, metric) for p, o in zip(predictors, outputs, strict=True)]
    comparison = decide.Comparison.of(metric, values[0], values[1], len(rows))
    if metric not in performance.CLASSIFICATION | performance.REGRESSION:
        return comparison
    truth, (champion, challenger) = (
        truth_of(predictors[0], rows, target),
        [predictions_of(p, o) for p, o in zip(predictors, outputs, strict=True)],
    )
    difference = paired.compare(truth, champion, challenger, metric)
    return dataclasses.replace(comparison, interval=(difference.low, difference.high), test=difference.test)


def score(
    predictor: inference.Predictor, rows: pd.DataFrame, target: str, metric: driftmonitor.Metric
) -> float:
    """One model's `metric` on `rows`."""
    return _value(predictor, _predict(predictor, rows, target, metric), rows, target, metric)


def _predict(
    predictor: inference.Predictor, rows: pd.DataFrame, target: str, metric: driftmonitor.Metric
) -> inference.Prediction:
    task = predictor.preprocessor.task
    if (metric in CLASSIFICATION) != (task == "classification"):
        fits = "accuracy, f1 or roc_auc" if task == "classification" else "rmse or mae"
        raise errors.UserError(f"promotion.metric {metric} does not fit a {task} model; use {fits}")
    if predictor.card.get("target") not in (None, target):
        raise errors.UserError(
            f"model {predictor.version} predicts {predictor.card['target']!r}, not {target!r}: "
            "champion and challenger must share the target"
        )
    return predictor.predict(rows)


def truth_of(predictor: inference.Predictor, rows: pd.DataFrame, target: str) -> np.ndarray:
    if predictor.preprocessor.task == "regression":
        return rows[target].to_numpy(dtype=np.float64)
    return rows[target].astype(str).to_numpy()


def predictions_of(predictor: inference.Predictor, prediction: inference.Prediction) -> np.ndarray:
    if predictor.preprocessor.task == "regression":
        return np.asarray(prediction.predictions, dtype=np.float64)
    return np.asarray([str(p) for p in prediction.predictions])


def _value(
    predictor: inference.Predictor,
    prediction: inference.Prediction,
    rows: pd.DataFrame,
    target: str,
    metric: driftmonitor.Metric,
) -> float:
    truth = truth_of(predictor, rows, target)
    if metric == driftmonitor.Metric.ROC_AUC:
        return roc_auc(truth, np.asarray(prediction.probabilities), prediction.classes, sorted(set(truth)))
    # One definition of each per-row metric: the one live performance and the paired test use.
    return performance.metric_value(truth, predictions_of(predictor, prediction), metric)


def roc_auc(truth: np.ndarray, probabilities: np.ndarray, classes: list[str], labels: list[str]) -> float:
    """Binary AUC of the greater label, or one-vs-rest over `labels` (the classes present), with a
    model's probabilities for those labels renormalised; a label the model lacks has probability 0."""
    if len(labels) < 2:
        return math.nan
    index = {c: i for i, c in enumerate(classes)}
    columns = np.stack(
        [probabilities[:, index[c]] if c in index else np.zeros(len(truth)) for c in labels], axis=1
    )
    if len(labels) == 2:
        return float(skm.roc_auc_score(truth == labels[1], columns[:, 1]))
    total = columns.sum(axis=1, keepdims=True)
    uniform = np.full_like(columns, 1.0 / len(labels))
    normalised = np.divide(columns, total, out=uniform, where=total > 0)
    return float(skm.roc_auc_score(truth, normalised, multi_class="ovr", labels=labels))
