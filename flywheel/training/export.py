"""Export a trained model as one directory that appears whole or not at all.

Files are written to a staging directory and published with one rename (local) or uploaded with the
card last (s3); the model card is written last, so a directory without a card is never complete.
fp32: state_dict + MLP shape (torch, weights_only). int8: ONNX Runtime dynamic quantisation (QInt8
weights), chosen by bench/quantization.py as the only method >= 2x faster than fp32 at batch 1 and 64.
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
from flywheel.training import inference, preprocess

QUANTIZATION_METHOD = "onnxruntime.quantization.quantize_dynamic (QInt8 weights, per-batch activations)"


def export(
    net: nn.Module,
    prep: preprocess.Preprocessor,
    cfg: config_mod.Config,
    metrics: dict[str, float],
    lineage: trainingrun.DataLineage,
    holdout: np.ndarray,
    training: dict[str, Any],
    holdout_rows: pd.DataFrame | None = None,
) -> tuple[trainingrun.ModelArtifacts, dict[str, Any]]:
    """Write model_fp32.pt, model_int8.onnx, preprocessor.json, holdout.parquet (when `holdout_rows`
    are given: the raw holdout split), then model_card.json; publish."""
    store = artifacts.Store(cfg.artifacts_uri)
    version = f"{cfg.name}-{(lineage.hash or 'nohash')[:8]}"
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
        if cfg.spec.export.quantization == trainingrun.Quantization.DYNAMIC_INT8:
            quant = _quantize(net, prep, staged, holdout)
            files["quantized"] = inference.QUANTIZED_ONNX_FILE
        if holdout_rows is not None:
            _write_holdout(staged / contract.HOLDOUT_FILE, prep, holdout_rows)
            files["holdout"] = contract.HOLDOUT_FILE
        card = {
            "version": version,
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


def _quantize(
    net: nn.Module, prep: preprocess.Preprocessor, staged: Path, holdout: np.ndarray
) -> dict[str, Any]:
    """ONNX export (eval mode: dropout gone), dynamic int8, and its agreement with fp32 on the holdout."""
    import onnxruntime.quantization as ortq

    fp32_onnx = staged.parent / "fp32.onnx"
    net = net.eval().cpu()
    # The TorchScript-based exporter is deprecated upstream (the dynamo one needs onnxscript, not
    # installed); ORT's quantiser logs a pre-processing hint to the root logger on every call.
    with warnings.catch_warnings(), _quiet_root_logger():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(1, prep.n_inputs),),
            str(fp32_onnx),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            dynamo=False,
        )
        ortq.quantize_dynamic(
            str(fp32_onnx), str(staged / inference.QUANTIZED_ONNX_FILE), weight_type=ortq.QuantType.QInt8
        )
    fp32 = inference.torch_runner(staged / contract.FP32_FILE)(holdout)
    int8 = inference.onnx_runner(staged / inference.QUANTIZED_ONNX_FILE)(holdout)
    return {
        "method": QUANTIZATION_METHOD,
        "format": "onnx",
        "measuredOn": "holdout",
        "rows": len(holdout),
        **agreement(prep.task, fp32, int8),
    }


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
