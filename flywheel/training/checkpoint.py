"""Checkpoints that carry everything needed to resume exactly: weights, optimiser, step, epoch,
position inside the epoch, RNG states (torch, numpy, python), preprocessing and the resolved config.

Files are <root>/checkpoints/step-<NNNNNNNN>.pt, each written atomically by rank 0; the newest
complete one wins, and only the last KEEP are kept. Loading uses weights_only=True: no pickled code.
"""

from __future__ import annotations

import io
import json
import random
import re
from typing import Any

import numpy as np
import torch

from flywheel import artifacts
from flywheel.api import contract

KEEP = 2
_NAME = re.compile(r"^step-(\d{8})\.pt$")


def name(step: int) -> str:
    return f"step-{step:08d}.pt"


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": [version, list(internal), gauss],
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save(store: artifacts.Store, payload: dict[str, Any]) -> str:
    """Write one checkpoint atomically and prune old ones; return its URI."""
    buf = io.BytesIO()
    torch.save(
        {
            **payload,
            "preprocessor": json.dumps(payload["preprocessor"]),
            "config": json.dumps(payload["config"]),
        },
        buf,
    )
    ckpts = store.child(contract.CHECKPOINTS_DIR)
    uri = ckpts.write_bytes(name(payload["step"]), buf.getvalue())
    for old in _steps(ckpts)[:-KEEP]:
        _remove(ckpts, name(old))
    return uri


def latest(store: artifacts.Store) -> tuple[str, dict[str, Any]] | None:
    """The newest checkpoint (URI, payload), or None for a fresh run."""
    ckpts = store.child(contract.CHECKPOINTS_DIR)
    steps = _steps(ckpts)
    if not steps:
        return None
    file = name(steps[-1])
    payload = torch.load(io.BytesIO(ckpts.read_bytes(file)), weights_only=True)
    payload["preprocessor"] = json.loads(payload["preprocessor"])
    payload["config"] = json.loads(payload["config"])
    return ckpts.join(file), payload


def _steps(ckpts: artifacts.Store) -> list[int]:
    return sorted(int(m.group(1)) for n in ckpts.list() if (m := _NAME.match(n)))


def _remove(ckpts: artifacts.Store, file: str) -> None:
    ckpts.remove(file)
