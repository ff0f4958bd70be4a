"""Export a trained model as one directory that appears whole or not at all.

Files are written to a staging directory and published with one rename (local) or uploaded with the
card last (s3); the model card is written last, so a directory without a card is never complete.
fp32: state_dict + MLP shape (torch, weights_only). int8: ONNX Runtime static quantisation (QDQ,
QInt8 weights, QUInt8 activations) with activation scales calibrated on the training split here and
recorded in the card: fixed scales make a row's answer independent of the rows batched with it,
which dynamic quantisation (scales over the whole batch) is not; bench/quantization.py measured it
as fast as dynamic int8 and as accurate. Dynamic int8 stays available (export.quantization).
holdout.parquet: the holdout rows as read (features + target, before preprocessing), so a later
champion/challenger comparison (flywheel.drift.evaluate) scores both models on rows neither trained on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import io
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

import flywheel
from flywheel import artifacts
from flywheel.api import contract, trainingrun
from flywheel.training import config as config_mod
from flywheel.training import feeds, identity, inference, preprocess

DYNAMIC_METHOD = "onnxruntime.quantization.quantize_dynamic (QInt8 weights, per-batch activations)"
STATIC_METHOD = "onnxruntime.quantization.quantize_static (QDQ, QInt8 weights, QUInt8 activations, MinMax)"
# Calibration rows: MinMax needs the range, not every row; a bounded sample keeps export time flat.
CALIBRATION_ROWS = 4096


@dataclasses.dataclass
class Exportable:
    """What a training function produced, as the exporter takes it."""

    inputs: dict[str, Any]
    """The card's `inputs` (matrix, tabular or tensors): the ONNX input names and kinds."""
    module: nn.Module | None = None
    """The trained network; None when the function wrote an ONNX file itself."""
    example: dict[str, torch.Tensor] | None = None
    """One feed dict the module is traced with (matrix: built from the shape when None)."""
    onnx: Path | None = None
    """The function's own fp32 ONNX file (instead of a module)."""
    entry_point: str | None = None
    """spec.trainer.entryPoint; None for the built-in MLP."""

    @property
    def builtin(self) -> bool:
        return self.entry_point is None


def export(
    model: Exportable,
    prep: preprocess.Preprocessor,
    cfg: config_mod.Config,
    metrics: dict[str, float],
    lineage: trainingrun.DataLineage,
    holdout: feeds.Feeds,
    training: dict[str, Any],
    holdout_rows: pd.DataFrame | None = None,
    calibration: feeds.Feeds | None = None,
) -> tuple[trainingrun.ModelArtifacts, dict[str, Any]]:
    """Write model_fp32.pt (a module's state dict), model_fp32.onnx, model_int8.onnx,
    preprocessor.json, holdout.parquet (when `holdout_rows` are given: the raw holdout split), then
    model_card.json; publish. `holdout` and `calibration` are feeds (feeds.encode) of the holdout
    and of the training split, which static int8 takes its activation scales from."""
    store = artifacts.Store(cfg.artifacts_uri)
    arch = cfg.spec.model.architecture
    shape = {"n_inputs": prep.n_inputs, "hidden": list(arch.hidden_layers), "n_outputs": prep.n_outputs}
    with tempfile.TemporaryDirectory(prefix="flywheel-export-") as tmp:
        staged = Path(tmp)
        files: dict[str, str] = {}
        state: dict[str, torch.Tensor] | None = None
        if model.module is not None:
            net = model.module.eval().cpu()
            state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            saved: dict[str, Any] = (
                {"format": inference.FP32_FORMAT, "architecture": shape, "state_dict": state}
                if model.builtin
                else {
                    "format": inference.USER_FP32_FORMAT,
                    "entryPoint": model.entry_point,
                    "state_dict": state,
                }
            )
            torch.save(saved, staged / contract.FP32_FILE)
            files["fp32"] = contract.FP32_FILE
            _onnx_fp32(net, prep, model, staged / inference.FP32_ONNX_FILE)
        else:
            assert model.onnx is not None
            shutil.copyfile(model.onnx, staged / inference.FP32_ONNX_FILE)
        artifacts.atomic_write_text(staged / contract.PREPROCESSOR_FILE, _json(prep.to_dict()))
        files["preprocessor"] = contract.PREPROCESSOR_FILE
        quant: dict[str, Any] = {"method": "none"}
        files["fp32Onnx"] = inference.FP32_ONNX_FILE
        method = cfg.spec.export.quantization
        if method != trainingrun.Quantization.NONE:
            quant = _quantize(prep, staged, holdout, method, calibration, model.builtin)
            unfaithful = _unfaithful(quant)
            if unfaithful:  # serve fp32 rather than an int8 model that answers differently
                (staged / inference.QUANTIZED_ONNX_FILE).unlink()
                quant = {**quant, "served": False, "notServedBecause": unfaithful}
            else:
                files["quantized"] = inference.QUANTIZED_ONNX_FILE
        if holdout_rows is not None:
            _write_holdout(staged / contract.HOLDOUT_FILE, prep, holdout_rows)
            files["holdout"] = contract.HOLDOUT_FILE
        architecture: dict[str, Any] = (
            {**shape, "type": arch.type, "dropout": arch.dropout}
            if model.builtin
            else {"type": "custom", "entryPoint": model.entry_point, "parameters": _parameters(state)}
        )
        card: dict[str, Any] = {
            "name": cfg.name,
            "namespace": cfg.namespace,
            "createdAt": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "package": {"name": "flywheel", "version": flywheel.__version__, "torch": torch.__version__},
            "task": prep.task,
            "target": prep.target,
            "classes": list(prep.classes),
            "features": prep.schema(),
            "inputs": model.inputs,
            "architecture": architecture,
            "metrics": metrics,
            "data": lineage.to_dict(),
            "config": cfg.to_dict(),
            "training": training,
            "quantization": quant,
            "files": files,
        }
        if not model.builtin:
            card["trainer"] = {"entryPoint": model.entry_point, "returned": "module" if state else "onnx"}
        # The version identifies the model: its content plus the card's identifying fields.
        digests = _digests(staged, files, state)
        version = identity.version(cfg.name, card, digests)
        card = {"version": version, **card, "digests": digests}
        artifacts.atomic_write_text(staged / contract.MODEL_CARD, _json(card))  # last: marks it complete
        _publish(store, staged)
    model_dir = store.child(contract.MODEL_DIR)
    refs = trainingrun.ModelArtifacts(
        version=version,
        fp32_uri=model_dir.join(files.get("fp32") or files["fp32Onnx"]),
        quantized_uri=model_dir.join(files["quantized"]) if "quantized" in files else None,
        card_uri=model_dir.join(contract.MODEL_CARD),
    )
    return refs, card


def _parameters(state: dict[str, torch.Tensor] | None) -> int | None:
    return sum(int(t.numel()) for t in state.values()) if state is not None else None


def _digests(staged: Path, files: dict[str, str], state: dict[str, torch.Tensor] | None) -> dict[str, str]:
    """sha256 of what serving loads: the fp32 weights (as tensors), the ONNX files, the preprocessor.
    The holdout is evaluation data (the spec and the data hash already identify it)."""
    out = {contract.FP32_FILE: identity.tensors_digest(state)} if state is not None else {}
    for key, name in sorted(files.items()):
        if key not in ("fp32", "holdout"):
            out[name] = identity.file_digest(staged / name)
    return out


def _onnx_fp32(net: nn.Module, prep: preprocess.Preprocessor, model: Exportable, target: Path) -> None:
    """The fp32 model as ONNX (eval mode: dropout gone): what fp32 serving runs, because ONNX
    Runtime scores a row the same in any batch, where torch's GEMM kernels change with the batch
    size and so move the last bits of a row's answer; and the input of quantisation."""
    # The module takes the feeds as arguments in the card's order (feeds.names).
    names = feeds.names(model.inputs)
    if model.example is not None:
        example = tuple(model.example[n].detach().cpu() for n in names)
    else:  # the built-in: its one matrix input
        example = (torch.zeros(1, prep.n_inputs),)
    axes = {n: {0: "batch"} for n in [*names, "output"]}
    # The TorchScript-based exporter is deprecated upstream (the dynamo one needs onnxscript, not
    # installed).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval().cpu(),
            example,
            str(target),
            input_names=names,
            output_names=["output"],
            dynamic_axes=axes,
            dynamo=False,
        )


def _quantize(
    prep: preprocess.Preprocessor,
    staged: Path,
    holdout: feeds.Feeds,
    method: trainingrun.Quantization,
    calibration: feeds.Feeds | None,
    builtin: bool = True,
) -> dict[str, Any]:
    """int8 from the fp32 ONNX model, and its agreement with fp32 on the holdout (the built-in's
    fp32 reference is its torch weights, as always; a user model's is its fp32 ONNX file, since
    the platform cannot rebuild the user's module from weights). Only FP32 inputs get activation
    scales: INT64 ones (category indices) are indices, not values, and stay as they are."""
    import onnxruntime.quantization as ortq

    fp32_onnx = staged / inference.FP32_ONNX_FILE
    target = staged / inference.QUANTIZED_ONNX_FILE
    static = method == trainingrun.Quantization.STATIC_INT8
    # A caller without the training split (tests) calibrates on the holdout: better than no scales.
    split = "train" if calibration is not None and _rows(calibration) else "holdout"
    rows = _calibration_rows(calibration if split == "train" and calibration is not None else holdout)
    # ORT's quantiser logs a pre-processing hint to the root logger on every call.
    with warnings.catch_warnings(), _quiet_root_logger():
        warnings.simplefilter("ignore")
        if static:
            ortq.quantize_static(
                str(fp32_onnx),
                str(target),
                _Calibration(rows),
                quant_format=ortq.QuantFormat.QDQ,
                activation_type=ortq.QuantType.QUInt8,
                weight_type=ortq.QuantType.QInt8,
                calibrate_method=ortq.CalibrationMethod.MinMax,
            )
        else:
            ortq.quantize_dynamic(str(fp32_onnx), str(target), weight_type=ortq.QuantType.QInt8)
    reference = staged / (contract.FP32_FILE if builtin else inference.FP32_ONNX_FILE)
    fp32 = (inference.torch_runner if builtin else inference.onnx_runner)(reference)(holdout)
    int8 = inference.onnx_runner(target)(holdout)
    card: dict[str, Any] = {
        "method": STATIC_METHOD if static else DYNAMIC_METHOD,
        "format": "onnx",
        # What serving reads: static scales score rows independently of their batch; dynamic
        # ones do not, so serving calls a dynamic model one row at a time.
        "activationScales": "static" if static else "per-batch",
        "measuredOn": "holdout",
        "rows": _rows(holdout),
        **agreement(prep.task, fp32, int8),
    }
    if static:
        card["calibration"] = {"split": split, "rows": _rows(rows)}
    return card


# How closely int8 must follow fp32 on the holdout to be served in its place.
MIN_CLASS_AGREEMENT = 0.95  # about the accuracy a tiny tabular model loses to int8 at worst
MAX_MEAN_ABS_ERROR_STD = 0.05


def _unfaithful(quant: dict[str, Any]) -> str | None:
    """Why the int8 model must not be served, or None. A barely trained model whose logits sit near
    the decision boundary can flip most answers under int8 (static scales especially)."""
    agree = quant.get("classAgreement")
    if agree is not None and agree < MIN_CLASS_AGREEMENT:
        return (
            f"int8 agrees with fp32 on {agree:.1%} of the holdout's classes, below {MIN_CLASS_AGREEMENT:.0%}"
        )
    error = quant.get("meanAbsErrorStd")
    if error is not None and error > MAX_MEAN_ABS_ERROR_STD:
        return f"int8 is {error:.3f} standard deviations from fp32 on average, above {MAX_MEAN_ABS_ERROR_STD}"
    return None


def _rows(fed: feeds.Feeds) -> int:
    return len(next(iter(fed.values()))) if fed else 0


def _calibration_rows(fed: feeds.Feeds) -> feeds.Feeds:
    """At most CALIBRATION_ROWS rows of every feed, evenly spaced (deterministic: the same export,
    the same scales)."""
    out = {
        k: np.ascontiguousarray(v, dtype=v.dtype if v.dtype == np.int64 else np.float32)
        for k, v in fed.items()
    }
    if _rows(out) <= CALIBRATION_ROWS:
        return out
    pick = np.linspace(0, _rows(out) - 1, CALIBRATION_ROWS).astype(np.int64)
    return {k: v[pick] for k, v in out.items()}


class _Calibration:
    """onnxruntime.quantization's CalibrationDataReader protocol: feeds the rows in batches."""

    def __init__(self, rows: feeds.Feeds, batch: int = 256) -> None:
        n = _rows(rows)
        self._batches = iter([{k: v[i : i + batch] for k, v in rows.items()} for i in range(0, n, batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # ORT calls it only when calibrating in several passes (not MinMax)
        raise NotImplementedError


def _write_holdout(path: Path, prep: preprocess.Preprocessor, rows: pd.DataFrame) -> None:
    """The model's features and target only (other columns of the data are not the model's)."""
    frame = rows[[*(c.name for c in prep.columns), prep.target]].reset_index(drop=True)
    for name in frame.columns:  # object columns may mix str and numbers, which Parquet refuses
        if frame[name].dtype == object:
            frame[name] = frame[name].astype("string")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    artifacts.atomic_write_bytes(path, buffer.getvalue())


def agreement(task: str, fp32: np.ndarray, int8: np.ndarray) -> dict[str, float]:
    """How closely int8 follows fp32: same-class fraction, or abs error in target units."""
    if len(fp32) == 0:
        return {}
    if task == "classification":
        return {
            "classAgreement": float((fp32.argmax(1) == int8.argmax(1)).mean()),
            "maxLogitAbsError": float(np.abs(fp32 - int8).max()),
        }
    return {
        "maxAbsErrorStd": float(np.abs(fp32 - int8).max()),
        "meanAbsErrorStd": float(np.abs(fp32 - int8).mean()),
    }


def _publish(store: artifacts.Store, staged: Path) -> None:
    """Local: copied beside the target, then one rename. S3: the card is replaced last (put_dir)."""
    store.put_dir(contract.MODEL_DIR, staged)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2, sort_keys=False)
