"""The built-in tabular MLP as one implementation of the training contract (flywheel.training.context).

The driver calls `train(ctx)` when spec.trainer is unset: model.architecture arrives as
ctx.hyperparameters (hiddenLayers, dropout), the features as the `matrix` feed, and the loop below
(DDP over a DistributedSampler, exact mid-epoch resume from ctx.checkpoints) trains it.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from flywheel import distributed as dist
from flywheel.training import checkpoint, metrics
from flywheel.training import context as context_mod
from flywheel.training import model as model_mod

ENTRY_POINT = "flywheel.training.builtin:train"
# Seconds to sleep after each step: lets tests and demos interrupt a run midway on fast data.
ENV_THROTTLE = "FLYWHEEL_TRAIN_THROTTLE_S"


def train(ctx: context_mod.TrainContext) -> context_mod.Trained:
    hp = ctx.hyperparameters
    net = model_mod.build_mlp(
        ctx.preprocessor.n_inputs, hp["hiddenLayers"], ctx.preprocessor.n_outputs, hp["dropout"]
    )
    if ctx.start_state is not None:  # fine-tune: the starting model's weights
        net.load_state_dict(ctx.start_state)
    net = net.to(ctx.device)
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=ctx.training.learning_rate, weight_decay=ctx.training.weight_decay
    )
    loop = Loop(ctx, net, optimizer)
    resumed = ctx.checkpoints.latest()
    if resumed is not None:
        loop.restore(resumed)
    x_train, y_train = ctx.encode(ctx.train)["input"], ctx.labels(ctx.train)
    x_hold, y_hold = ctx.encode(ctx.holdout)["input"], ctx.labels(ctx.holdout)
    loop.fit(x_train, y_train, x_hold, y_hold)
    return context_mod.Trained(net, None, summary=loop.summary())  # example: the exporter knows the shape


class Loop:
    """Optimiser steps with the state a checkpoint must capture to resume mid-epoch exactly."""

    def __init__(
        self, ctx: context_mod.TrainContext, net: nn.Module, optimizer: torch.optim.Optimizer
    ) -> None:
        self.ctx, self.world, self.prep, self.net, self.optimizer = (
            ctx,
            ctx.world,
            ctx.preprocessor,
            net,
            optimizer,
        )
        self.ddp: nn.Module = ctx.wrap(net)
        self.step = self.epoch = self.batch = 0
        self.data_seconds = self.step_seconds = 0.0
        self.samples = 0  # across all ranks, counted while this process trained (not before a resume)
        self.throttle = float(os.environ.get(ENV_THROTTLE, "0") or 0)

    def restore(self, payload: dict[str, Any]) -> None:
        self.net.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.step, self.epoch, self.batch = self.ctx.checkpoints.step or 0, payload["epoch"], payload["batch"]
        checkpoint.restore_rng(payload["rng"])
        self.ctx.report.event("resume", step=self.step, epoch=self.epoch, batch=self.batch,
                              uri=self.ctx.checkpoints.uri)  # fmt: skip

    def fit(self, x: torch.Tensor, y: torch.Tensor, x_hold: torch.Tensor, y_hold: torch.Tensor) -> None:
        training = self.ctx.training
        sampler = DistributedSampler(
            range(len(x)),
            num_replicas=self.world.world_size,
            rank=self.world.rank,
            shuffle=True,
            seed=training.seed,
        )
        per_epoch = math.ceil(len(sampler) / training.batch_size)
        step_every = max(1, per_epoch * training.epochs // 20)
        loss_fn = self._loss(y)
        while self.epoch < training.epochs:
            sampler.set_epoch(self.epoch)  # the shuffle is a function of (seed, epoch): replayable
            batches = torch.tensor(list(sampler), dtype=torch.long).split(training.batch_size)
            loss_sum, batches_run = torch.zeros((), device=self.world.device), 0
            for index in range(self.batch, len(batches)):
                started = time.perf_counter()
                xb, yb = x[batches[index]], y[batches[index]]
                loaded = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                out = self.ddp(xb)
                loss = loss_fn(out if self.prep.task == "classification" else out.squeeze(1), yb)
                loss.backward()
                self.optimizer.step()
                loss_sum += loss.detach()  # no .item() per step: that would sync a GPU every step
                batches_run += 1
                self.samples += len(yb) * self.world.world_size
                self.data_seconds += loaded - started
                self.step_seconds += time.perf_counter() - started
                self.step, self.batch = self.step + 1, index + 1
                if self.step % step_every == 0:
                    self.ctx.report.step(self.step, float(loss.detach()), self.epoch)
                if self.step % training.checkpoint_every == 0 and self.batch < len(batches):
                    self.save()
                if self.throttle:
                    time.sleep(self.throttle)
            self.epoch, self.batch = self.epoch + 1, 0
            self._end_epoch(float(loss_sum) / max(1, batches_run), x, y, x_hold, y_hold)

    def _loss(self, y: torch.Tensor) -> nn.Module:
        """Cross-entropy (optionally class-balanced over the whole training split) or MSE."""
        if self.prep.task != "classification":
            return nn.MSELoss()
        if self.ctx.training.class_weighting == "none":
            return nn.CrossEntropyLoss()
        # Every rank holds the whole training split, so the weights agree across ranks.
        return nn.CrossEntropyLoss(weight=balanced_weights(y, self.prep.n_outputs))

    def _end_epoch(
        self,
        mean_loss: float,
        x: torch.Tensor,
        y: torch.Tensor,
        x_hold: torch.Tensor,
        y_hold: torch.Tensor,
    ) -> None:
        loss = dist.all_mean(self.world, mean_loss)
        if self.world.is_main:
            name = metrics.primary(self.prep.task)
            train = self.evaluate(x, y).get(name)
            hold = self.evaluate(x_hold, y_hold).get(name)
            self.ctx.report.epoch(self.epoch, self.step, loss, train=train, holdout=hold, metric=name)
        self.save()

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        self.net.eval()
        with torch.inference_mode():
            out = self.net(x).float().cpu().numpy()
        self.net.train()
        return metrics.evaluate(self.prep, out, y.cpu().numpy())

    def save(self) -> None:
        state = {
            "model": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "rng": checkpoint.rng_state(),
        }
        self.ctx.checkpoints.save(state, self.step)

    def summary(self) -> dict[str, Any]:
        return {
            "steps": self.step,
            "epochs": self.epoch,
            "worldSize": self.world.world_size,
            "backend": dist.backend(self.world.device) if self.world.distributed else "none",
            "samples": self.samples,
            "dataSeconds": round(self.data_seconds, 4),
            "stepSeconds": round(self.step_seconds, 4),
        }


def balanced_weights(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """n / (classes x count) per class, as scikit-learn's "balanced"; an absent class weighs as one row."""
    counts = torch.bincount(y, minlength=n_classes).float().clamp(min=1)
    return len(y) / (n_classes * counts)
