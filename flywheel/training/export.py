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
import datetime
import io
import logging
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
from flywheel.training import identity, inference, preprocess

DYNAMIC_METHOD = "onnxruntime.quantization.quantize_dynamic (QInt8 weights, per-batch activations)"
STATIC_METHOD = "onnxruntime.quantization.quantize_static (QDQ, QInt8 weights, QUInt8 activations, MinMax)"
# Calibration rows: MinMax needs the range, not every row; a bounded sample keeps export time flat.
CALIBRATION_ROWS = 4096


def export(
    net: nn.Module,
    prep: preprocess.Preprocessor,
    cfg: config_mod.Config,
    metrics: dict[str, float],
    lineage: trainingrun.DataLineage,
    holdout: np.ndarray,
    training: dict[str, Any],
    holdout_rows: pd.DataFrame | None = None,
    calibration: np.ndarray | None = None,
) -> tuple[trainingrun.ModelArtifacts, dict[str, Any]]:
    """Write model_fp32.pt, model_int8.onnx, preprocessor.json, holdout.parquet (when `holdout_rows`
    are given: the raw holdout split), then model_card.json; publish. `calibration`: the training
    split's preprocessed features, which static int8 takes its activation scales from."""
    store = artifacts.Store(cfg.artifacts_uri)
    arch = cfg.spec.model.architecture
    shape = {"n_inputs": prep.n_inputs, "hidden": list(arch.hidden_layers), "n_outputs": prep.n_outputs}
    with tempfile.TemporaryDirectory(prefix="flywheel-export-") as tmp:
        staged = Path(tmp)
        state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        torch.save(
            {"format": inference.FP32_FORMAT, "architecture": shape, "state_dict": state},
            staged / contract.FP32_FILE,
        )
        artifacts.atomic_write_text(staged / contract.PREPROCESSOR_FILE, _json(prep.to_dict()))
        quant: dict[str, Any] = {"method": "none"}
        files = {"fp32": contract.FP32_FILE, "preprocessor": contract.PREPROCESSOR_FILE}
        _onnx_fp32(net, prep, staged / inference.FP32_ONNX_FILE)
        files["fp32Onnx"] = inference.FP32_ONNX_FILE
        method = cfg.spec.export.quantization
        if method != trainingrun.Quantization.NONE:
            quant = _quantize(prep, staged, holdout, method, calibration)
            unfaithful = _unfaithful(quant)
            if unfaithful:  # serve fp32 rather than an int8 model that answers differently
                (staged / inference.QUANTIZED_ONNX_FILE).unlink()
                quant = {**quant, "served": False, "notServedBecause": unfaithful}
            else:
                files["quantized"] = inference.QUANTIZED_ONNX_FILE
        if holdout_rows is not None:
            _write_holdout(staged / contract.HOLDOUT_FILE, prep, holdout_rows)
            files["holdout"] = contract.HOLDOUT_FILE
        card: dict[str, Any] = {
            "name": cfg.name,
            "namespace": cfg.namespace,
            "createdAt": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "package": {"name": "flywheel", "version": flywheel.__version__, "torch": torch.__version__},
            "task": prep.task,
            "target": prep.target,
            "classes": list(prep.classes),
            "features": prep.schema(),
            "architecture": {**shape, "type": arch.type, "dropout": arch.dropout},
            "metrics": metrics,
            "data": lineage.to_dict(),
            "config": cfg.to_dict(),
            "training": training,
            "quantization": quant,
            "files": files,
        }
        # The version identifies the model: its content plus the card's identifying fields.
        digests = _digests(staged, files, state)
        version = identity.version(cfg.name, card, digests)
        card = {"version": version, **card, "digests": digests}
        artifacts.atomic_write_text(staged / contract.MODEL_CARD, _json(card))  # last: marks it complete
        _publish(store, staged)
    model = store.child(contract.MODEL_DIR)
    refs = trainingrun.ModelArtifacts(
        version=version,
        fp32_uri=model.join(contract.FP32_FILE),
        quantized_uri=model.join(files["quantized"]) if "quantized" in files else None,
        card_uri=model.join(contract.MODEL_CARD),
    )
    return refs, card


def _digests(staged: Path, files: dict[str, str], state: dict[str, torch.Tensor]) -> dict[str, str]:
    """sha256 of what serving loads: the fp32 weights (as tensors), the ONNX files, the preprocessor.
    The holdout is evaluation data (the spec and the data hash already identify it)."""
    out = {contract.FP32_FILE: identity.tensors_digest(state)}
    for key, name in sorted(files.items()):
        if key not in ("fp32", "holdout"):
            out[name] = identity.file_digest(staged / name)
    return out


def _onnx_fp32(net: nn.Module, prep: preprocess.Preprocessor, target: Path) -> None:
    """The fp32 model as ONNX (eval mode: dropout gone): what fp32 serving runs, because ONNX
    Runtime scores a row the same in any batch, where torch's GEMM kernels change with the batch
    size and so move the last bits of a row's answer; and the input of quantisation."""
    # The TorchScript-based exporter is deprecated upstream (the dynamo one needs onnxscript, not
    # installed).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval().cpu(),
            (torch.zeros(1, prep.n_inputs),),
            str(target),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            dynamo=False,
        )


def _quantize(
    prep: preprocess.Preprocessor,
    staged: Path,
    holdout: np.ndarray,
    method: trainingrun.Quantization,
    calibration: np.ndarray | None,
) -> dict[str, Any]:
    """int8 from the fp32 ONNX model, and its agreement with fp32 on the holdout."""
    import onnxruntime.quantization as ortq

    fp32_onnx = staged / inference.FP32_ONNX_FILE
    target = staged / inference.QUANTIZED_ONNX_FILE
    static = method == trainingrun.Quantization.STATIC_INT8
    # A caller without the training split (tests) calibrates on the holdout: better than no scales.
    split = "train" if calibration is not None and len(calibration) else "holdout"
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
    fp32 = inference.torch_runner(staged / contract.FP32_FILE)(holdout)
    int8 = inference.onnx_runner(target)(holdout)
    card: dict[str, Any] = {
        "method": STATIC_METHOD if static else DYNAMIC_METHOD,
        "format": "onnx",
        # What serving reads: static scales score rows independently of their batch; dynamic
        # ones do not, so serving calls a dynamic model one row at a time.
        "activationScales": "static" if static else "per-batch",
        "measuredOn": "holdout",
        "rows": len(holdout),
        **agreement(prep.task, fp32, int8),
    }
    if static:
        card["calibration"] = {"split": split, "rows": len(rows)}
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


def _calibration_rows(features: np.ndarray) -> np.ndarray:
    """At most CALIBRATION_ROWS rows, evenly spaced (deterministic: the same export, the same scales)."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    if len(features) <= CALIBRATION_ROWS:
        return features
    return features[np.linspace(0, len(features) - 1, CALIBRATION_ROWS).astype(np.int64)]


class _Calibration:
    """onnxruntime.quantization's CalibrationDataReader protocol: feeds the rows in batches."""

    def __init__(self, rows: np.ndarray, batch: int = 256) -> None:
        self._batches = iter([{"input": rows[i : i + batch]} for i in range(0, len(rows), batch)])

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
