"""Loading a served model: its card (feature schema, classes, version) and a predictor.

A model is a directory holding model_card.json, the fp32 and int8 weights and preprocessor.json
(written by flywheel.training). The predictor comes from the loader named in the serving config,
flywheel.training.inference.load by default, so serving never re-implements preprocessing.

Predictors take a DataFrame. Flywheel's own (flywheel.training.inference.Predictor) also takes the
validated records as they are, and reads an all-numeric model's rows straight into its float matrix;
for those models `LoadedModel.takes_records` skips building a DataFrame per model call (~50 us, most
of a one-record call's preprocessing; measured in bench/serving.py's profile).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from flywheel import artifact_cache, errors
from flywheel.api import contract
from flywheel.training import inference


class Predictor(Protocol):
    def predict(self, frame: pd.DataFrame) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Feature:
    name: str
    type: str  # numeric | categorical
    categories: tuple[str, ...] | None = None
    nullable: bool = False
    min: float | None = None
    max: float | None = None


@dataclasses.dataclass(frozen=True)
class Tensor:
    """A named input tensor of a `tensors` card: one row fills it row-major from `columns`."""

    name: str
    datatype: str  # FP32
    shape: tuple[int, ...]  # per row, without the batch dimension
    columns: tuple[str, ...]  # len == prod(shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class Card:
    """The parts of model_card.json serving needs."""

    version: str
    task: str  # classification | regression
    features: tuple[Feature, ...]
    classes: tuple[str, ...]
    raw: dict[str, Any]
    tensors: tuple[Tensor, ...] = ()
    """The named tensors of a card with `inputs.kind: tensors`; empty for the other kinds, whose
    requests carry the features (the Open Inference Protocol's `input` matrix)."""

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def schema_key(self) -> tuple[Any, ...]:
        """What must not change on a hot swap: the request schema (records and tensors)."""
        return (tuple((f.name, f.type, f.categories) for f in self.features), self.tensors)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    uri: str
    quantized: bool
    card: Card
    predictor: Predictor
    takes_records: bool = False
    """The predictor scores a list of validated records directly (see the module docstring)."""
    row_independent: bool = True
    """A row's answer does not depend on the rows scored beside it. False for int8 models with
    per-batch activation scales (dynamic quantisation): the scorer then calls them one row at a
    time, so one caller's extreme row cannot change another caller's answer."""

    @property
    def version(self) -> str:
        return self.card.version


def parse_card(raw: dict[str, Any]) -> Card:
    """Read the feature schema, classes and version from a model card."""
    spec = raw.get("schema") or raw
    features = spec.get("features") or raw.get("model", {}).get("features")
    if not features:
        raise errors.UserError("model_card.json has no feature schema (features: [...])")
    target = raw.get("target")
    classes = raw.get("classes") or (target.get("classes") if isinstance(target, dict) else None) or []
    parsed = Card(
        version=str(raw.get("version") or "unknown"),
        task=str(raw.get("task") or ("classification" if classes else "regression")),
        features=tuple(
            Feature(
                name=f["name"],
                type=f.get("type", "numeric"),
                categories=tuple(str(c) for c in f["categories"]) if f.get("categories") else None,
                nullable=bool(f.get("nullable", False)),
                min=f.get("min"),
                max=f.get("max"),
            )
            for f in features
        ),
        classes=tuple(str(c) for c in classes),
        raw=raw,
    )
    return dataclasses.replace(parsed, tensors=_tensors(raw.get("inputs"), parsed.features))


INPUT_KINDS = ("matrix", "tabular", "tensors")
TENSOR_DATATYPES = ("FP32",)


def _tensors(inputs: Any, features: tuple[Feature, ...]) -> tuple[Tensor, ...]:
    """The named tensors of `inputs` (the model-input contract), checked against the features: a
    `tensors` card whose tensors do not cover its features exactly once could not be served."""
    if inputs is None:
        return ()  # older exports: the built-in matrix
    kind = inputs.get("kind") if isinstance(inputs, dict) else None
    if kind not in INPUT_KINDS:
        raise errors.UserError(
            f"model_card.json inputs.kind: {str(kind)[:40]!r}; expected one of {INPUT_KINDS}"
        )
    if kind != "tensors":
        return ()
    declared = inputs.get("tensors")
    if not isinstance(declared, list) or not declared:
        raise errors.UserError("model_card.json inputs.tensors: a non-empty list for inputs.kind tensors")
    numeric = [f.name for f in features if f.type == "numeric"]
    out: list[Tensor] = []
    for i, t in enumerate(declared):
        out.append(_tensor(f"model_card.json inputs.tensors[{i}]", t, numeric))
    names = [t.name for t in out]
    covered = [c for t in out for c in t.columns]
    if len(set(names)) != len(names) or len(set(covered)) != len(covered) or set(covered) != set(numeric):
        raise errors.UserError(
            "model_card.json inputs.tensors: each tensor named once, and their columns together the "
            f"card's numeric features once each (features {numeric[:10]}..., columns {covered[:10]}...)"
        )
    if len(numeric) != len(features):
        raise errors.UserError("model_card.json inputs.kind tensors: every feature must be numeric")
    return tuple(out)


def _tensor(where: str, raw: Any, numeric: list[str]) -> Tensor:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise errors.UserError(f"{where}: an object with name, datatype, shape and columns")
    name = raw["name"]
    datatype = raw.get("datatype", "FP32")
    if datatype not in TENSOR_DATATYPES:
        raise errors.UserError(
            f"{where} ({name}): datatype {str(datatype)[:20]!r}; expected {TENSOR_DATATYPES}"
        )
    shape = raw.get("shape")
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d > 0 for d in shape):
        raise errors.UserError(f"{where} ({name}): shape must be a list of positive integers, e.g. [1, 8, 8]")
    columns = raw.get("columns")
    if columns is None and isinstance(raw.get("columnPrefix"), str):  # as spec.trainer.inputs reads it
        columns = [f"{raw['columnPrefix']}{i}" for i in range(math.prod(shape))]
    if not isinstance(columns, list) or len(columns) != math.prod(shape):
        got = len(columns) if isinstance(columns, list) else "no"
        raise errors.UserError(
            f"{where} ({name}): {got} columns where shape {shape} needs {math.prod(shape)}"
        )
    return Tensor(name, datatype, tuple(shape), tuple(str(c) for c in columns))


# s3:// models are downloaded here, one folder per URI, refreshed when the remote card changes and
# pruned (artifact_cache.local_dir).
CACHE_ROOT = artifact_cache.ROOT / "models"


def local_dir(uri: str) -> Path:
    """A local directory holding the complete model at `uri`: the folder itself for file:// and
    pvc://; for s3:// a cached copy, fetched only when the remote card changed, and never a model
    caught half-written (its card is uploaded last and checked again after the download)."""
    return artifact_cache.local_dir(uri, CACHE_ROOT)


def read_card(uri: str) -> Card:
    return _card_at(local_dir(uri), uri)


def _card_at(path: Path, uri: str) -> Card:
    try:
        return parse_card(json.loads((path / contract.MODEL_CARD).read_text()))
    except FileNotFoundError as exc:
        raise errors.UserError(f"model {uri}: no {contract.MODEL_CARD} there") from exc


def resolve_loader(spec: str) -> Callable[[Path, bool], Predictor]:
    module, _, func = spec.partition(":")
    loader: Callable[[Path, bool], Predictor] = getattr(importlib.import_module(module), func)
    return loader


def load(uri: str, quantized: bool, loader: str) -> LoadedModel:
    """Load a model directory once: its card and a predictor (int8 when asked and present)."""
    path = local_dir(uri)
    card = _card_at(path, uri)
    # The exporter names its int8 file in the card (ONNX today); older layouts use QUANTIZED_FILE.
    int8_file = card.raw.get("files", {}).get("quantized") or contract.QUANTIZED_FILE
    use_int8 = quantized and (path / int8_file).exists()
    predictor = resolve_loader(loader)(path, use_int8)
    takes_records = _takes_records(predictor, card)
    return LoadedModel(uri, use_int8, card, predictor, takes_records, row_independent(card, use_int8))


def row_independent(card: Card, quantized: bool) -> bool:
    """Whether the model's files score a row the same in any batch, by its card: int8 with static
    activation scales (calibrated at export), or fp32 with an ONNX file (ONNX Runtime's kernels do
    not depend on the batch size; torch's move the last bits). Anything else (older exports, other
    loaders) is scored one row at a time: the safe reading."""
    if not quantized:
        files = card.raw.get("files")
        return isinstance(files, dict) and bool(files.get("fp32Onnx"))
    quantization = card.raw.get("quantization")
    return isinstance(quantization, dict) and quantization.get("activationScales") == "static"


def _takes_records(predictor: Predictor, card: Card) -> bool:
    """Flywheel's predictor on an all-numeric, non-nullable schema: every validated record carries
    every feature, which its numeric fast path reads without pandas. (A nullable feature may be left
    out of a record, and categoricals go through pandas anyway: those keep the DataFrame.)"""
    return isinstance(predictor, inference.Predictor) and all(
        f.type == "numeric" and not f.nullable for f in card.features
    )


def outputs(
    model: LoadedModel, frame: pd.DataFrame | list[dict[str, Any]]
) -> tuple[list[Any], list[float | None]]:
    """Predictions and the probability of each predicted class, one per row (`frame` is a list of
    records only when model.takes_records).

    Accepts what predictors return: a (predictions, probabilities) pair, an object or mapping with
    `predictions`/`probabilities`, where probabilities may be per-class rows or one per row.
    """
    result = model.predictor.predict(frame)
    if isinstance(result, tuple):
        preds, probs = result
    elif isinstance(result, dict):
        preds, probs = result["predictions"], result.get("probabilities")
    else:
        preds, probs = result.predictions, getattr(result, "probabilities", None)
    preds = list(preds.tolist() if hasattr(preds, "tolist") else preds)
    if probs is None:
        return preds, [None] * len(preds)
    probs = probs.tolist() if hasattr(probs, "tolist") else list(probs)
    top: list[float | None] = [float(max(p)) if isinstance(p, list | tuple) else float(p) for p in probs]
    return preds, top
