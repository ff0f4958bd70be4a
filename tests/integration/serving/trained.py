"""Real trainer exports for the serving tests: tiny models trained once per session by flywheel.training.

Each model is trained by the trainer's own entry point (flywheel.training.__main__.main, in this
process, no torchrun) on scikit-learn's wine data (13 numeric features plus a categorical `hue_band`, three
classes), and exported exactly as a TrainingRun exports it: model_card.json (feature schema,
classes, version, data lineage), fp32 TorchScript, int8 ONNX, preprocessor.json, holdout rows. The
two differ in architecture and seed, so their probabilities differ on every row. They are laid
out as a local home's artifact store: <root>/artifacts/default/trainingruns/<name>/model.

`ensure(base)` trains them the first time and reuses them after,
so the serving tests and the local Deployment runner tests share one training per session.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pandas as pd
import torch

from flywheel.api import contract
from flywheel.training import __main__ as entry
from tests.unit.training import fixtures

# name -> (hidden layers, seed, epochs)
MODELS = {
    "wine-a": ([16], 0, 4),
    "wine-b": ([8, 8], 1, 3),
}


def ensure(base: Path) -> Path:
    """The artifact home holding the models under base/trained (trained when missing)."""
    root = base / "trained"
    if (root / "done").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    data = fixtures.wine_csv(root / "wine.csv")
    for name, (hidden, seed, epochs) in MODELS.items():
        spec = fixtures.spec(epochs=epochs, learningRate=0.02, seed=seed)
        spec["model"]["architecture"]["hiddenLayers"] = hidden
        _train(root, name, fixtures.write_config(root, data, spec, name=name))
    (root / "done").write_text("ok")
    return root


def _train(root: Path, name: str, config: Path) -> None:
    """The trainer's entry point in this process (torch is imported already; a subprocess would
    pay for it again): a world of one, as `python -m flywheel.training` without torchrun."""
    env = {
        contract.ENV_CONFIG: str(config),
        contract.ENV_TERMINATION_LOG: str(root / f"{name}.termination"),
        **dict.fromkeys(("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")),
    }
    saved = {k: os.environ.get(k) for k in env}
    threads = torch.get_num_threads()
    out = io.StringIO()
    try:
        for key, value in env.items():
            _set(key, value)
        with contextlib.redirect_stdout(out):
            code = entry.main()
    finally:
        for key, value in saved.items():
            _set(key, value)
        torch.set_num_threads(threads)
    if code != 0:
        raise RuntimeError(f"training {name} failed ({code}):\n{out.getvalue()[-3000:]}")


def _set(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def model_dir(root: Path, name: str) -> Path:
    return fixtures.run_root(root, name) / contract.MODEL_DIR


def uri(root: Path, name: str) -> str:
    return model_dir(root, name).as_uri()


def card(root: Path, name: str) -> dict:
    return json.loads((model_dir(root, name) / contract.MODEL_CARD).read_text())


def records(root: Path, rows: int, seed: int = 0) -> list[dict]:
    """Feature rows (no target) from the wine data the models learned, as requests send them."""
    frame = pd.read_csv(root / "wine.csv").drop(columns=["target"])
    return frame.sample(rows, random_state=seed, replace=rows > len(frame)).to_dict("records")
