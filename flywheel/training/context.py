"""What a training function gets (TrainContext) and returns (Trained): the user training contract.

The platform resolves and gates the data, splits it, fits the preprocessing and builds a context;
the function trains and returns `Trained(module, example)` (an nn.Module whose forward takes the
feeds as arguments in the card's order, and one example feed dict) or the path of an ONNX file it
wrote (inputs named as the feeds, output `output`). Then the platform exports, quantizes, scores
the holdout and writes the card the same way for every model (see flywheel.training.driver).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from flywheel import artifacts, errors
from flywheel import distributed as dist
from flywheel.api import contract, trainingrun
from flywheel.training import checkpoint, feeds, preprocess

RESERVED_STATE_KEYS = ("step", "preprocessor", "config")
"""Checkpoint payload keys the platform writes beside the user's state."""


def emit(world: dist.World, event: str, **fields: Any) -> None:
    """One JSON progress line on stdout, from rank 0 only: the local backend and `flywheel logs`
    read them for the bars, the status and the curves."""
    if world.is_main:
        print(json.dumps({"event": event, "time": contract.log_time(), **fields}, default=str), flush=True)


@dataclasses.dataclass
class Trained:
    """What a training function returns: the trained module (any device; exported on CPU in eval
    mode) and an example feed dict (a few rows of ctx.encode(...)); None: the platform takes the
    first training row."""

    module: nn.Module
    example: dict[str, torch.Tensor] | None = None
    summary: dict[str, Any] | None = None
    """Optional facts for the card's `training` (steps, epochs, ...)."""


class Reporter:
    """Progress events, the same JSON lines the built-in model emits (rank 0 prints; others no-op)."""

    def __init__(self, world: dist.World, epochs: int, metric: str) -> None:
        self._world, self._epochs, self._metric = world, epochs, metric

    def step(self, step: int, loss: float, epoch: int = 0) -> None:
        emit(self._world, "step", step=step, epoch=epoch, loss=float(loss))

    def epoch(
        self,
        epoch: int,
        step: int,
        loss: float,
        train: float | None = None,
        holdout: float | None = None,
        metric: str | None = None,
    ) -> None:
        """An epoch ended (`epoch` counts finished epochs, from 1); train/holdout: the task's primary
        metric (accuracy or rmse) on each split, when you computed it."""
        emit(self._world, "epoch", epoch=epoch, epochs=self._epochs, step=step, loss=float(loss),
             metric=metric or self._metric, train=train, holdout=holdout)  # fmt: skip

    def event(self, name: str, **fields: Any) -> None:
        emit(self._world, name, **fields)


class Checkpoints:
    """The run's checkpoints in its artifact store (step-<N>.pt, newest wins, last two kept).

    latest(): the newest saved state (what save was given), or None on a fresh run; a run killed
    and started again finds it. save(state, step): rank 0 writes (others return at once); the state
    holds tensors, numbers, strings, lists and dicts (it is loaded with weights_only=True)."""

    def __init__(
        self,
        store: artifacts.Store,
        world: dist.World,
        prep: preprocess.Preprocessor,
        config: dict[str, Any],
        resumed: tuple[str, dict[str, Any]] | None,
    ) -> None:
        self._store, self._world, self._prep, self._config = store, world, prep, config
        self._resumed = resumed
        self.uri: str | None = resumed[0] if resumed else None
        self.step: int | None = resumed[1]["step"] if resumed else None

    def latest(self) -> dict[str, Any] | None:
        if self._resumed is None:
            return None
        return {k: v for k, v in self._resumed[1].items() if k not in RESERVED_STATE_KEYS}

    def save(self, state: dict[str, Any], step: int) -> str | None:
        clash = [k for k in RESERVED_STATE_KEYS if k in state]
        if clash:
            raise errors.UserError(f"ctx.checkpoints.save: rename the state key(s) {clash}: the platform's")
        self.step = step
        if not self._world.is_main:
            return None
        payload = {**state, "step": step, "preprocessor": self._prep.to_dict(), "config": self._config}
        self.uri = checkpoint.save(self._store, payload)
        emit(self._world, "checkpoint", step=step, epoch=state.get("epoch"), uri=self.uri)
        return self.uri


@dataclasses.dataclass
class TrainContext:
    """Everything a training function needs; built by the platform on every rank."""

    name: str
    """The TrainingRun's name."""
    train: pd.DataFrame
    """The gated training split (rows as read: features and target, before preprocessing)."""
    holdout: pd.DataFrame
    """The holdout split: report on it if you like; the platform scores the final model on it."""
    features: list[str]
    """The model's input columns."""
    target: str
    task: str
    """classification or regression."""
    classes: list[str]
    """Classification: the class labels, in the order of the model's outputs."""
    inputs: dict[str, Any]
    """The card's `inputs` (kind tabular or tensors) that encode() produces."""
    preprocessor: preprocess.Preprocessor
    training: trainingrun.Training
    """spec.training: epochs, batchSize, learningRate, weightDecay, seed, checkpointEvery, ..."""
    hyperparameters: dict[str, Any]
    args: list[str]
    world: dist.World
    checkpoints: Checkpoints
    report: Reporter
    start_state: dict[str, torch.Tensor] | None = None
    """Fine-tune (model.initFrom): the starting model's state dict; None from scratch."""
    artifacts_uri: str = ""
    """The run's own artifact root (a file written under it survives the run)."""

    @property
    def rank(self) -> int:
        return self.world.rank

    @property
    def world_size(self) -> int:
        return self.world.world_size

    @property
    def device(self) -> torch.device:
        return self.world.device

    @property
    def is_main(self) -> bool:
        return self.world.is_main

    @property
    def n_outputs(self) -> int:
        """Logits per row (classification) or 1 (regression)."""
        return self.preprocessor.n_outputs

    def categories(self, column: str) -> list[str]:
        """A categorical feature's categories (index i is encoded as i + 1; 0 is missing/unseen)."""
        for c in self.preprocessor.columns:
            if c.name == column:
                return list(c.categories)
        raise errors.UserError(f"ctx.categories: {column!r} is not a feature ({self.features[:8]})")

    def encode(self, frame: pd.DataFrame) -> dict[str, torch.Tensor]:
        """The model's feeds for these rows, on ctx.device: what serving will give the exported model."""
        return {
            k: torch.from_numpy(v).to(self.device)
            for k, v in feeds.encode(self.preprocessor, self.inputs, frame).items()
        }

    def labels(self, frame: pd.DataFrame) -> torch.Tensor:
        """Class indices (int64) or standardised targets (float32) of these rows, on ctx.device."""
        return torch.from_numpy(self.preprocessor.labels(frame[self.target])).to(self.device)

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module on ctx.device, inside DistributedDataParallel when there are several processes
        (gradients are averaged across them). Return the unwrapped module in Trained."""
        module = module.to(self.device)
        return DistributedDataParallel(module) if self.world.distributed else module

    def all_mean(self, value: float) -> float:
        """The mean of a number across processes (e.g. a loss), the same on every rank."""
        return dist.all_mean(self.world, value)


def onnx_path(returned: object) -> Path | None:
    """The returned value as an ONNX file path, or None when it is not a path."""
    if isinstance(returned, str | Path) and str(returned).endswith(".onnx"):
        return Path(returned)
    return None
