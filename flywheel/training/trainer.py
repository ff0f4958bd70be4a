"""The training loop: DDP over a DistributedSampler, exact resume from checkpoints, export, report.

Progress goes to stdout as JSON lines ({"event": "epoch"|"step"|"checkpoint"|"resume"|"export"|
"done"|"failed", ...}) from rank 0 only; the local backend parses them for progress bars.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import random
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from flywheel import artifact_cache, artifacts
from flywheel import distributed as dist
from flywheel.api import contract, trainingrun
from flywheel.training import checkpoint, dataset, export, finetune, metrics, preprocess
from flywheel.training import config as config_mod
from flywheel.training import model as model_mod
from flywheel.training import result as result_mod

# Seconds to sleep after each step: lets tests and demos interrupt a run midway on fast data.
ENV_THROTTLE = "FLYWHEEL_TRAIN_THROTTLE_S"


class GateFailed(Exception):
    """The data did not pass validation; nothing was trained."""

    def __init__(self, source: dataset.Source) -> None:
        super().__init__("data validation failed: nothing was trained")
        self.source = source


def emit(world: dist.World, event: str, **fields: Any) -> None:
    if world.is_main:
        # "time" lets `flywheel logs` print `time level message key=value` lines
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        print(json.dumps({"event": event, "time": stamp, **fields}, default=str), flush=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(cfg: config_mod.Config, world: dist.World) -> result_mod.Result:
    """Train, evaluate, export; the Result rank 0 reports (other ranks get the same shape)."""
    source = _locate(cfg, world)
    if not source.passed:
        raise GateFailed(source)
    spec = cfg.spec
    frame = dataset.read(source.path)
    lineage = source.lineage.model_copy(update={"rows": source.lineage.rows or len(frame)})
    train_df, hold_df = dataset.split(frame, spec)
    replayed = _replay(cfg, world, len(train_df))
    if replayed is not None:  # rehearsal: the starting model's own rows beside the new ones
        train_df = pd.concat([train_df, replayed[0]], ignore_index=True)
    store = artifacts.Store(cfg.artifacts_uri)
    resumed = checkpoint.latest(store)
    start = None
    if resumed is not None:
        prep = preprocess.Preprocessor.from_dict(resumed[1]["preprocessor"])
    elif spec.model.init_from:  # fine-tune: the starting model's preprocessing, then its weights
        start = finetune.load(spec.model.init_from, spec.model)
        finetune.check_classes(start, frame[spec.model.target])
        prep = start.preprocessor
    else:
        prep = preprocess.fit(train_df, frame[spec.model.target], spec.model)
    seed_everything(spec.training.seed)
    arch = spec.model.architecture
    net = model_mod.build_mlp(prep.n_inputs, arch.hidden_layers, prep.n_outputs, arch.dropout)
    if start is not None:
        net.load_state_dict(start.state_dict)
    net = net.to(world.device)
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=spec.training.learning_rate, weight_decay=spec.training.weight_decay
    )
    loop = Loop(cfg, world, prep, net, optimizer, store)
    if resumed is not None:
        loop.restore(*resumed)
    x_train, y_train = _tensors(prep, train_df, world.device)
    x_hold, y_hold = _tensors(prep, hold_df, world.device)
    loop.fit(x_train, y_train, x_hold, y_hold)
    final = loop.evaluate(x_hold, y_hold)
    emit(world, "evaluate", split="holdout", metrics=final, rows=len(hold_df))
    model_refs = None
    if world.is_main:
        model_refs, card = export.export(
            net,
            prep,
            cfg,
            final,
            lineage,
            x_hold.cpu().numpy(),
            {**loop.summary(), **_start_lineage(spec, replayed)},
            holdout_rows=hold_df,
            calibration=x_train.cpu().numpy(),
        )
        emit(
            world,
            "export",
            version=model_refs.version,
            uri=store.join("model"),
            quantization=card["quantization"],
        )
    dist.barrier(world)
    return result_mod.Result(
        phase="Succeeded",
        message=f"trained {loop.step} steps on {len(train_df)} rows; holdout {_fmt(final)}",
        metrics=final,
        model=model_refs,
        data=lineage,
        checkpoint=trainingrun.Checkpoint(uri=loop.checkpoint_uri, step=loop.checkpoint_step),
        validation=source.validation,
    )


def _replay(
    cfg: config_mod.Config, world: dist.World, n_new: int
) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """(rows, lineage) replayed from the starting model's training data (training.replayFraction),
    or None. Resolved on each node's local rank 0, as the run's own data; every rank draws the same
    rows (seeded), so a resumed run replays what it started with."""
    spec = cfg.spec
    if not spec.model.init_from or spec.training.replay_fraction <= 0:
        return None
    data, old_spec = finetune.replay_source(spec.model.init_from)
    if world.local_rank == 0:
        from flywheel.data import resolve  # lazy: DVC is heavy

        mine: str | None = str(resolve.resolve(data, dataset.cache_dir()).local_path)
    else:
        mine = None
    path: str = dist.broadcast(world, mine)
    wanted = round(spec.training.replay_fraction * n_new)
    rows = finetune.replay_rows(dataset.read(path), old_spec, wanted, spec.training.seed)
    return rows, {"rows": len(rows), "fraction": spec.training.replay_fraction, "repo": data.repo,
                  "commit": data.rev, "path": data.path}  # fmt: skip


def _start_lineage(
    spec: trainingrun.TrainingRunSpec, replayed: tuple[pd.DataFrame, dict[str, Any]] | None
) -> dict[str, Any]:
    """training.initFrom of the card: the model a fine-tune started from, and what it replayed."""
    if not spec.model.init_from:
        return {}
    folder = artifact_cache.local_dir(spec.model.init_from, artifact_cache.ROOT / "models")
    card = json.loads((folder / contract.MODEL_CARD).read_text())
    out: dict[str, Any] = {"uri": spec.model.init_from, "version": str(card.get("version") or "unknown")}
    if replayed is not None:
        out["replay"] = replayed[1]
    return {"initFrom": out}


def _locate(cfg: config_mod.Config, world: dist.World) -> dataset.Source:
    """Resolve and gate on each node's local rank 0 (one download per node); every rank then takes
    rank 0's verdict, and ranks that did not resolve take rank 0's path (the cache layout is the same
    on every node, and the local rank 0 beside them has just filled it)."""
    mine = dataset.locate(cfg) if world.local_rank == 0 else None
    shared: dataset.Source = dist.broadcast(world, mine)
    if mine is None:
        return shared
    return dataset.Source(mine.path, shared.lineage, shared.passed, shared.validation)


def _tensors(
    prep: preprocess.Preprocessor, frame: Any, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(prep.features(frame)).to(device),
        torch.from_numpy(prep.labels(frame[prep.target])).to(device),
    )


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in values.items())


class Loop:
    """Optimiser steps with the state a checkpoint must capture to resume mid-epoch exactly."""

    def __init__(
        self,
        cfg: config_mod.Config,
        world: dist.World,
        prep: preprocess.Preprocessor,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        store: artifacts.Store,
    ) -> None:
        self.cfg, self.world, self.prep, self.net, self.optimizer = cfg, world, prep, net, optimizer
        self.store = store
        self.ddp: nn.Module = DistributedDataParallel(net) if world.distributed else net
        self.step = self.epoch = self.batch = 0
        self.checkpoint_uri: str | None = None
        self.checkpoint_step: int | None = None
        self.data_seconds = self.step_seconds = 0.0
        self.samples = 0  # across all ranks, counted while this process trained (not before a resume)
        self.throttle = float(os.environ.get(ENV_THROTTLE, "0") or 0)

    def restore(self, uri: str, payload: dict[str, Any]) -> None:
        self.net.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.step, self.epoch, self.batch = payload["step"], payload["epoch"], payload["batch"]
        checkpoint.restore_rng(payload["rng"])
        self.checkpoint_uri, self.checkpoint_step = uri, self.step
        emit(self.world, "resume", step=self.step, epoch=self.epoch, batch=self.batch, uri=uri)

    def fit(self, x: torch.Tensor, y: torch.Tensor, x_hold: torch.Tensor, y_hold: torch.Tensor) -> None:
        training = self.cfg.spec.training
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
                    emit(self.world, "step", step=self.step, epoch=self.epoch, loss=float(loss.detach()))
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
        if self.cfg.spec.training.class_weighting == "none":
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
            emit(
                self.world,
                "epoch",
                epoch=self.epoch,
                epochs=self.cfg.spec.training.epochs,
                step=self.step,
                loss=loss,
                metric=name,
                train=train,
                holdout=hold,
            )
        self.save()

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        self.net.eval()
        with torch.inference_mode():
            out = self.net(x).float().cpu().numpy()
        self.net.train()
        return metrics.evaluate(self.prep, out, y.cpu().numpy())

    def save(self) -> None:
        if self.world.is_main:
            payload = {
                "model": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "step": self.step,
                "epoch": self.epoch,
                "batch": self.batch,
                "rng": checkpoint.rng_state(),
                "preprocessor": self.prep.to_dict(),
                "config": self.cfg.to_dict(),
            }
            self.checkpoint_uri = checkpoint.save(self.store, payload)
            emit(self.world, "checkpoint", step=self.step, epoch=self.epoch, uri=self.checkpoint_uri)
        self.checkpoint_step = self.step

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
