"""Holdout metrics: accuracy, macro f1, roc_auc (one-vs-rest for multiclass); rmse, mae, r2."""

from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as skm

from flywheel.training import preprocess


def evaluate(prep: preprocess.Preprocessor, outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Metrics of network outputs against encoded labels (class indices or standardised targets)."""
    if len(labels) == 0:
        return {}
    if prep.task == "classification":
        return _classification(outputs, labels, len(prep.classes))
    pred = outputs.reshape(-1) * prep.target_std + prep.target_mean
    true = labels.reshape(-1) * prep.target_std + prep.target_mean
    return {
        "rmse": float(math.sqrt(skm.mean_squared_error(true, pred))),
        "mae": float(skm.mean_absolute_error(true, pred)),
        "r2": float(skm.r2_score(true, pred)) if len(true) > 1 else float("nan"),
    }


def primary(task: str) -> str:
    """The metric shown per epoch."""
    return "accuracy" if task == "classification" else "rmse"


def _classification(logits: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, float]:
    pred = logits.argmax(axis=1)
    out = {
        "accuracy": float(skm.accuracy_score(labels, pred)),
        "f1": float(skm.f1_score(labels, pred, average="macro", labels=range(n_classes), zero_division=0)),
    }
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba = shifted / shifted.sum(axis=1, keepdims=True)
    try:
        if n_classes == 2:
            out["roc_auc"] = float(skm.roc_auc_score(labels, proba[:, 1]))
        else:
            out["roc_auc"] = float(
                skm.roc_auc_score(labels, proba, multi_class="ovr", labels=range(n_classes))
            )
    except ValueError:  # a holdout missing a class has no AUC; leave it out rather than invent one
        pass
    return out
