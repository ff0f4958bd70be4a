"""Checkpoints are atomic, pruned, and restore the RNG streams exactly (the basis of exact resume)."""

from __future__ import annotations

import random

import numpy as np
import torch

from flywheel import artifacts
from flywheel.api import contract
from flywheel.training import checkpoint


def _payload(step: int) -> dict:
    return {
        "model": {"w": torch.full((2,), float(step))},
        "optimizer": {"state": {}, "param_groups": []},
        "step": step,
        "epoch": 1,
        "batch": 3,
        "rng": checkpoint.rng_state(),
        "preprocessor": {"format": "x"},
        "config": {"name": "n"},
    }


def test_latest_wins_old_ones_pruned_and_temp_files_ignored(tmp_path):
    store = artifacts.Store(tmp_path.as_uri())
    assert checkpoint.latest(store) is None
    for step in (5, 10, 15):
        checkpoint.save(store, _payload(step))
    ckpts = tmp_path / contract.CHECKPOINTS_DIR
    (ckpts / ".step-00000099.pt.abc").write_bytes(b"half written")  # a writer killed mid-write
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-00000010.pt", "step-00000015.pt"]
    uri, payload = checkpoint.latest(store)
    assert uri.endswith("step-00000015.pt") and payload["step"] == 15
    assert payload["model"]["w"].tolist() == [15.0, 15.0]
    assert payload["preprocessor"] == {"format": "x"} and payload["config"] == {"name": "n"}


def test_restored_rng_replays_torch_numpy_and_python_streams(tmp_path):
    store = artifacts.Store(tmp_path.as_uri())
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    checkpoint.save(store, _payload(1))
    expected = (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)])
    _, payload = checkpoint.latest(store)
    checkpoint.restore_rng(payload["rng"])
    assert (
        torch.rand(3).tolist(),
        np.random.rand(3).tolist(),
        [random.random() for _ in range(3)],
    ) == expected
