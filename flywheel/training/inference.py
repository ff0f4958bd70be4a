"""Load an exported model for prediction, without the trainer: what serving and drift call.

A model directory (see export.py) holds model_fp32.pt (a state_dict plus the MLP's shape; rebuilt with
plain torch.nn and loaded with weights_only=True, so no pickled code runs), model_fp32.onnx (the same
network for ONNX Runtime: fp32 predictions run it when present), model_int8.onnx (ONNX Runtime
static int8, chosen by bench/quantization.py), preprocessor.json and model_card.json. A directory
without its card is incomplete and refused.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from flywheel import errors
from flywheel.api import contract
from flywheel.training import feeds as feeds_mod
from flywheel.training import preprocess

FP32_FORMAT = "flywheel-mlp-state-dict-v1"
USER_FP32_FORMAT = "flywheel-state-dict-v1"
"""A user module's model_fp32.pt: its state dict and entry point (rebuilt only by the user's code:
serving and drift run the ONNX files)."""
QUANTIZED_ONNX_FILE = "model_int8.onnx"  # contract.QUANTIZED_FILE says .pt; see the export report
FP32_ONNX_FILE = "model_fp32.onnx"  # exported beside model_fp32.pt (see export._onnx_fp32)


class Runner(Protocol):
    """Feeds (ONNX input name -> array, see flywheel.training.feeds) -> outputs [N, n_outputs]."""

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class Prediction:
    predictions: list[Any]
    """Class labels (classification) or values in target units (regression)."""
    probabilities: list[list[float]] | None
    """Per-class probabilities in `classes` order (classification only)."""
    classes: list[str]


@dataclasses.dataclass
class Predictor:
    card: dict[str, Any]
    preprocessor: preprocess.Preprocessor
    quantized: bool
    runner: Runner

    @property
    def version(self) -> str:
        return str(self.card["version"])

    @property
    def inputs(self) -> dict[str, Any] | None:
        """The card's `inputs` (None: an older card, i.e. matrix)."""
        value = self.card.get("inputs")
        return value if isinstance(value, dict) else None

    def predict(self, data: pd.DataFrame | Sequence[Mapping[str, Any]]) -> Prediction:
        outputs = self.runner(feeds_mod.encode(self.preprocessor, self.inputs, data))
        prep = self.preprocessor
        probabilities = _softmax(outputs).tolist() if prep.task == "classification" else None
        return Prediction(prep.decode(outputs), probabilities, list(prep.classes))


def load(model_dir: Path, quantized: bool = True) -> Predictor:
    """The int8 model (quantized=True) or the fp32 one, with its preprocessor and card."""
    model_dir = Path(model_dir)
    card_file = model_dir / contract.MODEL_CARD
    if not card_file.exists():
        raise errors.UserError(f"{model_dir}: no {contract.MODEL_CARD}, so the export is incomplete")
    card = json.loads(card_file.read_text())
    prep = preprocess.Preprocessor.from_dict(json.loads((model_dir / contract.PREPROCESSOR_FILE).read_text()))
    if quantized:
        file = card.get("files", {}).get("quantized")
        if not file:
            raise errors.UserError(
                f"{model_dir}: exported without a quantized model (export.quantization: none)"
            )
        runner: Runner = onnx_runner(model_dir / file)
    elif fp32_onnx := card.get("files", {}).get("fp32Onnx"):
        runner = onnx_runner(model_dir / fp32_onnx)
    else:  # exports from before the fp32 ONNX file
        runner = torch_runner(model_dir / contract.FP32_FILE)
    return Predictor(card=card, preprocessor=prep, quantized=quantized, runner=runner)


def torch_runner(path: Path, threads: int | None = None) -> Runner:
    import torch
    from torch import nn

    saved = torch.load(path, weights_only=True, map_location="cpu")
    if saved.get("format") != FP32_FORMAT:
        raise errors.UserError(f"{path}: not a {FP32_FORMAT} file")
    arch = saved["architecture"]
    layers: list[nn.Module] = []
    width = arch["n_inputs"]
    for size in arch["hidden"]:  # the same layout as flywheel.training.model.build_mlp
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(0.0)]
        width = size
    layers.append(nn.Linear(width, arch["n_outputs"]))
    net = nn.Sequential(*layers)
    net.load_state_dict(saved["state_dict"])
    net.eval()

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        features = feeds["input"]  # the built-in MLP: one matrix
        with torch.inference_mode():
            out: np.ndarray = net(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).numpy()
            return out

    return run


def onnx_runner(path: Path, threads: int = 1) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # one serving worker = one core; scale with workers
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    # The model's own input types: INT64 category indices stay integers, the rest is FP32.
    dtypes = {i.name: np.int64 if i.type == "tensor(int64)" else np.float32 for i in session.get_inputs()}

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        given = {name: np.ascontiguousarray(feeds[name], dtype=dtype) for name, dtype in dtypes.items()}
        out: np.ndarray = session.run(["output"], given)[0]
        return out

    return run


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return out
