"""TEST FIXTURE: tiny real torch MLPs in the model directory layout, with a loader for them.

Used until (and besides) flywheel.training's exporter: each model is a real trained network, saved
as TorchScript in fp32 and dynamic-int8, with model_card.json (feature schema, classes, version)
and preprocessor.json. `load` is what the serving config's `loader` points at in these tests.
The challenger is trained on inverted labels, so champion and challenger answers always differ.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

NUMERIC = [f"x{i}" for i in range(6)]
COLORS = ["red", "green", "blue"]
CLASSES = ["no", "yes"]
LOADER = "tests.integration.serving.model_fixture:load"


def dataset(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(NUMERIC))), columns=NUMERIC)
    frame["color"] = rng.choice(COLORS, size=rows)
    score = frame["x0"] + 0.5 * frame["x1"] - frame["x2"] + (frame["color"] == "red") * 0.8
    frame["label"] = np.where(score > 0, "yes", "no")
    return frame


def sample_records(rows: int, seed: int) -> list[dict[str, Any]]:
    return dataset(rows, seed).drop(columns=["label"]).to_dict(orient="records")


class _Prep:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.mean = np.asarray(raw["mean"], dtype=np.float32)
        self.std = np.asarray(raw["std"], dtype=np.float32)

    def matrix(self, frame: pd.DataFrame) -> torch.Tensor:
        numeric = (frame[NUMERIC].to_numpy(dtype=np.float32) - self.mean) / self.std
        onehot = np.stack([(frame["color"] == c).to_numpy(dtype=np.float32) for c in COLORS], axis=1)
        return torch.from_numpy(np.concatenate([numeric, onehot], axis=1))


class Predictor:
    def __init__(self, module: torch.jit.ScriptModule, prep: _Prep) -> None:
        self.module, self.prep = module, prep

    def predict(self, frame: pd.DataFrame) -> tuple[list[str], np.ndarray]:
        with torch.inference_mode():
            probs = torch.softmax(self.module(self.prep.matrix(frame)), dim=1).numpy()
        return [CLASSES[i] for i in probs.argmax(axis=1)], probs


def load(model_dir: Path, quantized: bool) -> Predictor:
    name = "model_int8.pt" if quantized else "model_fp32.pt"
    module = torch.jit.load(str(Path(model_dir) / name))
    return Predictor(module, _Prep(json.loads((Path(model_dir) / "preprocessor.json").read_text())))


def build(
    target: Path, version: str, invert: bool = False, hidden: tuple[int, ...] = (32, 16), seed: int = 0
) -> Path:
    """Train a small MLP for a few epochs and write the model directory."""
    torch.set_num_threads(1)  # tiny tensors: extra threads only contend on a shared machine
    torch.manual_seed(seed)
    frame = dataset(2000, seed)
    labels = (frame["label"] == "yes").to_numpy()
    labels = ~labels if invert else labels
    mean = frame[NUMERIC].mean().to_numpy(dtype=np.float32)
    std = frame[NUMERIC].std().to_numpy(dtype=np.float32)
    prep = _Prep({"mean": mean.tolist(), "std": std.tolist()})
    x, y = prep.matrix(frame), torch.from_numpy(labels.astype(np.int64))
    layers: list[nn.Module] = []
    width = x.shape[1]
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    net = nn.Sequential(*layers, nn.Linear(width, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    target.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(net), str(target / "model_fp32.pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qnet = torch.ao.quantization.quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8)
        torch.jit.save(torch.jit.script(qnet), str(target / "model_int8.pt"))
    (target / "preprocessor.json").write_text(json.dumps({"mean": mean.tolist(), "std": std.tolist()}))
    features = [
        {"name": n, "type": "numeric", "min": float(frame[n].min()), "max": float(frame[n].max())}
        for n in NUMERIC
    ]
    features.append({"name": "color", "type": "categorical", "categories": COLORS})
    card = {"version": version, "task": "classification", "features": features, "classes": CLASSES}
    (target / "model_card.json").write_text(json.dumps(card))
    return target
