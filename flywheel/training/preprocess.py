"""Tabular preprocessing fitted on the train split and saved as plain JSON.

Numeric features are standard-scaled (missing values become the train mean, i.e. 0 after scaling),
categorical features are one-hot encoded (unknown values encode as all zeros), classification labels
map to class indices, regression targets are standardised. The JSON form is all the serving and drift
workloads need: no pickles, no training code.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from flywheel import errors
from flywheel.api import trainingrun

FORMAT = "flywheel-tabular-v1"


@dataclasses.dataclass(frozen=True)
class Column:
    """One input column and the statistics learnt for it."""

    name: str
    type: str  # numeric | categorical
    mean: float = 0.0
    std: float = 1.0
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()
    nullable: bool = False

    @property
    def width(self) -> int:
        return len(self.categories) if self.type == "categorical" else 1


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    task: str
    target: str
    columns: tuple[Column, ...]
    classes: tuple[str, ...] = ()
    target_mean: float = 0.0
    target_std: float = 1.0

    @property
    def n_inputs(self) -> int:
        return sum(c.width for c in self.columns)

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    # --- transform ------------------------------------------------------------------------------
    def features(self, data: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Rows -> float32 matrix (n, n_inputs); a missing column is a UserError naming it."""
        fast = self._numeric_fast_path(data)
        if fast is not None:
            return fast
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
        missing = [c.name for c in self.columns if c.name not in frame.columns]
        if missing:
            raise errors.UserError(f"input lacks feature column(s) {missing}: send every model feature")
        blocks = [_encode(c, frame[c.name]) for c in self.columns]
        return np.concatenate(blocks, axis=1).astype(np.float32) if blocks else np.zeros((len(frame), 0))

    def _numeric_fast_path(self, data: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray | None:
        """All-numeric models (the common tabular case): one float64 matrix, scaled in one step.
        Per-column pandas work costs ~100 us per call, which at one record per request is most
        of the preprocessing a served request pays. The same numbers as the column path; None
        (use that path) for categoricals, missing columns or values numpy cannot read as floats."""
        names = self._numeric_names
        if names is None or len(data) == 0:
            return None
        try:
            if isinstance(data, pd.DataFrame):
                if not set(names).issubset(data.columns):
                    return None
                values = (data if list(data.columns) == names else data[names]).to_numpy(dtype=np.float64)
            else:
                if not all(name in data[0] for name in names):
                    return None
                values = np.array([[row.get(n) for n in names] for row in data], dtype=np.float64)
        except (ValueError, TypeError):
            return None
        means, stds = self._scaling
        scaled: np.ndarray = np.nan_to_num((values - means) / stds, nan=0.0).astype(np.float32)
        return scaled

    @functools.cached_property
    def _numeric_names(self) -> list[str] | None:
        if not self.columns or any(c.type != "numeric" for c in self.columns):
            return None
        return [c.name for c in self.columns]

    @functools.cached_property
    def _scaling(self) -> tuple[np.ndarray, np.ndarray]:
        means = np.array([c.mean for c in self.columns], dtype=np.float64)
        return means, np.array([c.std for c in self.columns], dtype=np.float64)

    def labels(self, target: pd.Series) -> np.ndarray:
        """Target column -> class indices (int64) or standardised values (float32)."""
        if self.task == "classification":
            index = {c: i for i, c in enumerate(self.classes)}
            codes = target.astype(str).map(index)
            if codes.isna().any():
                raise errors.UserError(f"target {self.target!r} has values outside the learnt classes")
            return codes.to_numpy(dtype=np.int64)
        values = target.to_numpy(dtype=np.float64)
        return ((values - self.target_mean) / self.target_std).astype(np.float32)

    def decode(self, outputs: np.ndarray) -> list[Any]:
        """Network outputs -> class labels or target values in original units."""
        if self.task == "classification":
            return [self.classes[i] for i in outputs.argmax(axis=1)]
        return (outputs.reshape(-1) * self.target_std + self.target_mean).tolist()

    # --- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["format"] = FORMAT
        for col in out["columns"]:
            col["categories"] = list(col["categories"])
        out["classes"] = list(self.classes)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Preprocessor:
        if raw.get("format") != FORMAT:
            raise errors.UserError(f"preprocessor format {raw.get('format')!r}: expected {FORMAT}")
        columns = tuple(Column(**{**c, "categories": tuple(c.get("categories", ()))}) for c in raw["columns"])
        fields = {k: raw[k] for k in ("task", "target", "target_mean", "target_std")}
        return cls(columns=columns, classes=tuple(raw.get("classes", ())), **fields)

    def schema(self) -> list[dict[str, Any]]:
        """The feature schema for the model card: types, observed ranges, categories."""
        rows = []
        for c in self.columns:
            row: dict[str, Any] = {"name": c.name, "type": c.type, "nullable": c.nullable}
            if c.type == "numeric":
                row.update(min=c.min, max=c.max, mean=c.mean, std=c.std)
            else:
                row["categories"] = list(c.categories)
            rows.append(row)
        return rows


def _encode(column: Column, values: pd.Series) -> np.ndarray:
    if column.type == "categorical":
        codes = pd.Categorical(values.astype("string"), categories=list(column.categories)).codes
        onehot = np.zeros((len(values), column.width), dtype=np.float32)
        rows = np.flatnonzero(codes >= 0)
        onehot[rows, codes[rows]] = 1.0
        return onehot
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    scaled = (numeric - column.mean) / column.std
    return np.nan_to_num(scaled, nan=0.0).reshape(-1, 1)


def fit(train: pd.DataFrame, classes_from: pd.Series, spec: trainingrun.ModelSpec) -> Preprocessor:
    """Learn statistics on the train split. Classes come from the whole target column so a class seen
    only in the holdout still has an output (the label space is not a statistic that can leak)."""
    if spec.target not in train.columns:
        raise errors.UserError(f"model.target {spec.target!r} is not a column of the data")
    declared = spec.features or _infer(train, spec.target)
    columns = tuple(_fit_column(f, train) for f in declared)
    if spec.task == trainingrun.Task.CLASSIFICATION:
        classes = tuple(sorted(classes_from.astype(str).unique()))
        if len(classes) < 2:
            raise errors.UserError(f"model.target {spec.target!r} has one class: classification needs 2+")
        return Preprocessor(task="classification", target=spec.target, columns=columns, classes=classes)
    target = pd.to_numeric(train[spec.target], errors="raise").to_numpy(dtype=np.float64)
    return Preprocessor(
        task="regression",
        target=spec.target,
        columns=columns,
        target_mean=float(target.mean()),
        target_std=_safe_std(target),
    )


def _infer(frame: pd.DataFrame, target: str) -> list[trainingrun.Feature]:
    out = []
    for name in frame.columns:
        if name == target:
            continue
        numeric = pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(frame[name])
        out.append(trainingrun.Feature(name=str(name), type="numeric" if numeric else "categorical"))
    return out


def _fit_column(feature: trainingrun.Feature, train: pd.DataFrame) -> Column:
    if feature.name not in train.columns:
        raise errors.UserError(f"model.features: column {feature.name!r} is not in the data")
    values = train[feature.name]
    if feature.type == "categorical":
        learnt = sorted(values.dropna().astype(str).unique())
        categories = tuple(feature.categories) if feature.categories else tuple(learnt)
        return Column(feature.name, "categorical", categories=categories, nullable=feature.nullable)
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    observed = numeric[~np.isnan(numeric)]
    if observed.size == 0:
        raise errors.UserError(f"model.features: {feature.name!r} has no numeric values; type it categorical")
    low = feature.min if feature.min is not None else float(observed.min())
    high = feature.max if feature.max is not None else float(observed.max())
    return Column(
        feature.name,
        "numeric",
        mean=float(observed.mean()),
        std=_safe_std(observed),
        min=low,
        max=high,
        nullable=feature.nullable,
    )


def _safe_std(values: np.ndarray) -> float:
    std = float(values.std())
    return std if std > 1e-12 and math.isfinite(std) else 1.0
