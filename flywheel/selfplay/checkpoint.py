"""Checkpoints of a self-play run: weights, optimizer, buffers, step and RNG, written atomically.

Rank 0 writes <run>/checkpoints/step-NNNNNN.pt through flywheel.artifacts (temp file + rename, so
a reader never sees half a checkpoint) and keeps the newest KEEP on local stores. A restarted run
resumes from the highest step found.
"""

from __future__ import annotations

import io
import random
import re
from typing import Any

import torch

from flywheel import artifacts
from flywheel.api import contract
from flywheel.selfplay import buffers

KEEP = 2
NAME = re.compile(r"^step-(\d{6,})\.pt$")


def name(step: int) -> str:
    return f"step-{step:06d}.pt"


def steps(store: artifacts.Store) -> list[int]:
    """Steps with a finished checkpoint, ascending."""
    found = (NAME.match(n) for n in store.list(contract.CHECKPOINTS_DIR))
    return sorted(int(m.group(1)) for m in found if m)


def save(
    store: artifacts.Store,
    step: int,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    store_buffers: buffers.Buffers,
    extra: dict[str, Any],
) -> str:
    """Write the checkpoint of `step`; return its URI."""
    state = {
        "step": step,
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "buffers": store_buffers.to_dict(),
        "rng": {"python": random.getstate(), "torch": torch.get_rng_state()},
        "extra": extra,
    }
    data = io.BytesIO()
    torch.save(state, data)
    uri = store.write_bytes(f"{contract.CHECKPOINTS_DIR}/{name(step)}", data.getvalue())
    _prune(store)
    return uri


def load_latest(store: artifacts.Store) -> dict[str, Any] | None:
    """The newest checkpoint's state, or None when the run has none."""
    found = steps(store)
    if not found:
        return None
    data = store.read_bytes(f"{contract.CHECKPOINTS_DIR}/{name(found[-1])}")
    state: dict[str, Any] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    state["uri"] = store.join(contract.CHECKPOINTS_DIR, name(found[-1]))
    return state


def restore(
    state: dict[str, Any], module: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, buffers.Buffers]:
    """Load weights, optimizer and RNG from `state`; return (step, buffers)."""
    module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    random.setstate(state["rng"]["python"])
    torch.set_rng_state(state["rng"]["torch"])
    return int(state["step"]), buffers.Buffers.from_dict(state["buffers"])


def _prune(store: artifacts.Store) -> None:
    if store.local_root is None:
        return
    for old in steps(store)[:-KEEP]:
        store.local_path(contract.CHECKPOINTS_DIR, name(old)).unlink(missing_ok=True)
