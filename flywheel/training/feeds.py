"""Rows -> the ONNX model's inputs, by the card's `inputs` (the model-input contract).

- matrix (the built-in MLP; a card without `inputs`): one FP32 matrix `input` [N, n_inputs], the
  Preprocessor's scaling and one-hot encoding.
- tabular (a user's tabular model): `numeric` FP32 [N, len(numeric)] standardised as the built-in
  scales them (nulls -> 0) and, with categorical features, `categorical` INT64 [N, len(categorical)]:
  1 + the value's index in the feature's categories, 0 for missing or unseen (so an nn.Embedding
  has num_embeddings = len(categories) + 1).
- tensors: each named tensor [N, *shape], filled row-major from its columns, unscaled.

numpy only (no torch): serving and drift load it. The trainer's context wraps it into tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from flywheel import errors
from flywheel.training import preprocess

MATRIX, TABULAR, TENSORS = "matrix", "tabular", "tensors"
Feeds: TypeAlias = dict[str, np.ndarray]
Rows: TypeAlias = pd.DataFrame | Sequence[Mapping[str, Any]]


def describe(
    prep: preprocess.Preprocessor, kind: str, tensors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The card's `inputs` for a model of `kind` over `prep`'s columns."""
    if kind == MATRIX:
        return {"kind": MATRIX}
    if kind == TABULAR:
        return {
            "kind": TABULAR,
            "numeric": [c.name for c in prep.columns if c.type == "numeric"],
            "categorical": [c.name for c in prep.columns if c.type == "categorical"],
        }
    return {"kind": TENSORS, "tensors": list(tensors or [])}


def names(inputs: Mapping[str, Any] | None) -> list[str]:
    """The ONNX input names of a card's `inputs`, in the order the model takes them."""
    kind = (inputs or {}).get("kind", MATRIX)
    if kind == MATRIX:
        return ["input"]
    if kind == TABULAR:
        return ["numeric", "categorical"] if inputs and inputs.get("categorical") else ["numeric"]
    return [t["name"] for t in (inputs or {}).get("tensors", [])]


def encode(prep: preprocess.Preprocessor, inputs: Mapping[str, Any] | None, data: Rows) -> Feeds:
    """The feeds of `data` for a model whose card says `inputs` (None: matrix)."""
    kind = (inputs or {}).get("kind", MATRIX)
    if kind == MATRIX:
        return {"input": prep.features(data)}
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
    if kind == TABULAR:
        return _tabular(prep, frame, inputs or {})
    if kind == TENSORS:
        return _tensors(frame, (inputs or {}).get("tensors", []))
    raise errors.UserError(f"model card inputs.kind {kind!r}: expected matrix, tabular or tensors")


def _missing(frame: pd.DataFrame, wanted: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise errors.UserError(f"input lacks feature column(s) {missing[:10]}: send every model feature")


def _tabular(prep: preprocess.Preprocessor, frame: pd.DataFrame, inputs: Mapping[str, Any]) -> Feeds:
    by_name = {c.name: c for c in prep.columns}
    numeric, categorical = list(inputs.get("numeric", [])), list(inputs.get("categorical", []))
    _missing(frame, numeric + categorical)
    out: Feeds = {"numeric": np.zeros((len(frame), len(numeric)), dtype=np.float32)}
    for j, name in enumerate(numeric):
        column = by_name[name]
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
        out["numeric"][:, j] = np.nan_to_num((values - column.mean) / column.std, nan=0.0)
    if categorical:
        codes = np.zeros((len(frame), len(categorical)), dtype=np.int64)
        for j, name in enumerate(categorical):
            column = by_name[name]
            # pandas gives -1 for missing and unseen values: +1 makes them 0, the reserved index.
            found = pd.Categorical(frame[name].astype("string"), categories=list(column.categories)).codes
            codes[:, j] = found.astype(np.int64) + 1
        out["categorical"] = codes
    return out


def _tensors(frame: pd.DataFrame, tensors: Sequence[Mapping[str, Any]]) -> Feeds:
    out: Feeds = {}
    for tensor in tensors:
        columns = list(tensor["columns"])
        _missing(frame, columns)
        try:
            values = frame[columns].to_numpy(dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise errors.UserError(f"tensor {tensor['name']!r}: its columns must be numbers ({exc})") from exc
        out[tensor["name"]] = np.nan_to_num(values).reshape(len(frame), *tensor["shape"])
    return out
