"""TEST FIXTURE: a tiny real CNN on scikit-learn's 8x8 digits in the model directory layout of a
`tensors` card (the model-input contract), with a loader for it.

Used until flywheel.training's Predictor builds feeds from a card's `inputs` (custom-train's
part); the examples/custom-digits tests then train through the real driver. The network is
trained here for real (a few seconds), exported with torch.onnx (input `image` [N, 1, 8, 8],
output `output` [N, 10] logits) and quantized to static int8 with ONNX Runtime as
flywheel.training.export does. The card declares the tensor and the px0..px63 features.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn import datasets
from torch import nn

from flywheel.api import contract, trainingrun
from flywheel.training import preprocess

PIXELS = [f"px{i}" for i in range(64)]
HOLDOUT = 300  # the last rows of load_digits, never trained on


def digits() -> tuple[np.ndarray, np.ndarray]:
    data = datasets.load_digits()
    return data.data.astype(np.float32), data.target.astype(np.int64)


def holdout() -> tuple[np.ndarray, np.ndarray]:
    images, labels = digits()
    return images[-HOLDOUT:], labels[-HOLDOUT:]


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(image / 16.0).flatten(1))  # its own scaling: pixels are 0..16


def build(path: Path, version: str, seed: int = 0) -> dict[str, Any]:
    """Train, export and write the model directory; returns the card."""
    import onnxruntime.quantization as ortq

    torch.manual_seed(seed)
    images, labels = digits()
    x = torch.from_numpy(images[:-HOLDOUT]).reshape(-1, 1, 8, 8)
    y = torch.from_numpy(labels[:-HOLDOUT])
    net = _Net()
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(15):
        for batch in torch.randperm(len(x)).split(64):
            optimiser.zero_grad()
            nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            optimiser.step()
    path.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval(),
            (x[:1],),
            str(path / "model_fp32.onnx"),
            input_names=["image"],
            output_names=["output"],
            dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}},
            dynamo=False,
        )

        class Calibration(ortq.CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = iter([{"image": x[i : i + 256].numpy()} for i in range(0, len(x), 256)])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.batches, None)

        ortq.quantize_static(
            str(path / "model_fp32.onnx"),
            str(path / "model_int8.onnx"),
            Calibration(),
            quant_format=ortq.QuantFormat.QDQ,
            activation_type=ortq.QuantType.QUInt8,
            weight_type=ortq.QuantType.QInt8,
        )
    frame = pd.DataFrame(images[:-HOLDOUT], columns=PIXELS).assign(digit=labels[:-HOLDOUT])
    spec = trainingrun.ModelSpec(task=trainingrun.Task.CLASSIFICATION, target="digit")
    prep = preprocess.fit(frame, frame["digit"], spec)
    (path / contract.PREPROCESSOR_FILE).write_text(json.dumps(prep.to_dict()))
    card = {
        "version": version,
        "task": "classification",
        "classes": list(prep.classes),
        "features": [{"name": c, "type": "numeric", "min": 0.0, "max": 16.0} for c in PIXELS],
        "inputs": {
            "kind": "tensors",
            "tensors": [{"name": "image", "datatype": "FP32", "shape": [1, 8, 8], "columns": PIXELS}],
        },
        "files": {"fp32Onnx": "model_fp32.onnx", "quantized": "model_int8.onnx"},
        "quantization": {"activationScales": "static"},
    }
    (path / contract.MODEL_CARD).write_text(json.dumps(card))
    return card
