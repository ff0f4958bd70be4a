"""spec.trainer.inputs through the driver: a user module over a named tensor (the 8x8 digits as
`image` [1, 8, 8], filled row-major from px0..px63 by columnPrefix) trains in one process, exports
fp32 ONNX and int8 with the tensor's name as the input, and the card says `tensors`, with the
columns as its numeric features; the predictor scores records by that card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets

from flywheel import distributed as dist
from flywheel.training import config, inference, trainer
from tests.unit.training import fixtures

CODE = """
import torch
from torch import nn
from flywheel.training import Trained

class Net(nn.Module):
    def __init__(self, n_out):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, n_out)

    def forward(self, image):
        return self.head(torch.relu(self.conv(image / 16.0)).flatten(1))

def train(ctx):
    net = Net(ctx.n_outputs)
    model = ctx.wrap(net)
    opt = torch.optim.Adam(net.parameters(), lr=ctx.training.learning_rate)
    feeds, labels = ctx.encode(ctx.train), ctx.labels(ctx.train)
    for epoch in range(ctx.training.epochs):
        for batch in torch.randperm(len(labels)).split(ctx.training.batch_size):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(feeds["image"][batch]), labels[batch])
            loss.backward()
            opt.step()
        ctx.report.epoch(epoch + 1, 0, loss.item())
    return Trained(net, ctx.encode(ctx.train.head(2)))
"""


def test_a_tensor_model_exports_under_its_tensors_name(tmp_path: Path) -> None:
    (tmp_path / "digits_user_mod.py").write_text(CODE)
    digits = datasets.load_digits()
    frame = pd.DataFrame(digits.data, columns=[f"px{i}" for i in range(64)])
    frame["digit"] = digits.target
    data = tmp_path / "digits.csv"
    frame.to_csv(data, index=False)
    spec = fixtures.spec(target="digit", epochs=3, batchSize=64, learningRate=0.01)
    del spec["model"]["architecture"]
    spec["trainer"] = {
        "entryPoint": "digits_user_mod:train",
        "path": str(tmp_path),
        "inputs": [{"name": "image", "shape": [1, 8, 8], "columnPrefix": "px"}],
    }
    cfg = config.load(fixtures.write_config(tmp_path, data, spec, name="digits"))
    outcome = trainer.run(cfg, dist.init({}))
    assert outcome.phase == "Succeeded" and outcome.metrics["accuracy"] > 0.8
    model = fixtures.run_root(tmp_path, "digits") / "model"
    card = json.loads((model / "model_card.json").read_text())
    (tensor,) = card["inputs"]["tensors"]
    assert card["inputs"]["kind"] == "tensors"
    assert tensor == {
        "name": "image",
        "datatype": "FP32",
        "shape": [1, 8, 8],
        "columns": [f"px{i}" for i in range(64)],
    }
    assert [f["name"] for f in card["features"]] == tensor["columns"]
    assert all(f["type"] == "numeric" for f in card["features"])
    records = frame.drop(columns=["digit"]).head(20).to_dict("records")
    for quantized in (False, True):
        if quantized and "quantized" not in card["files"]:
            continue  # the faithfulness check kept fp32; the card says why
        predicted = inference.load(model, quantized=quantized).predict(records).predictions
        assert np.mean(np.array(predicted, dtype=int) == digits.target[:20]) > 0.7
