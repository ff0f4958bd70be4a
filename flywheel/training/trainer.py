"""The training driver: data, gate, split, preprocessing, context, the training function, export.

One path for every model: the built-in MLP (flywheel.training.builtin, when spec.trainer is unset)
and a user's entry point (spec.trainer.entryPoint) both get a TrainContext and return a Trained
module (or an ONNX file); the platform then scores the holdout with the fp32 model, exports fp32
ONNX and int8 (calibrated on the training split), writes the card and reports.

Progress goes to stdout as JSON lines ({"event": "epoch"|"step"|"checkpoint"|"resume"|"export"|
"done"|"failed", ...}) from rank 0 only; the local backend parses them for progress bars.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from flywheel import artifact_cache, artifacts, errors
from flywheel import distributed as dist
from flywheel.api import contract, trainingrun
from flywheel.training import (
    builtin,
    checkpoint,
    dataset,
    export,
    feeds,
    finetune,
    loader,
    metrics,
    preprocess,
)
from flywheel.training import config as config_mod
from flywheel.training import context as context_mod
from flywheel.training import result as result_mod

ENV_THROTTLE = builtin.ENV_THROTTLE
emit = context_mod.emit
balanced_weights = builtin.balanced_weights


class GateFailed(Exception):
    """The data did not pass validation; nothing was trained."""

    def __init__(self, source: dataset.Source) -> None:
        super().__init__("data validation failed: nothing was trained")
        self.source = source


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(cfg: config_mod.Config, world: dist.World) -> result_mod.Result:
    """Train, evaluate, export; the Result rank 0 reports (other ranks get the same shape)."""
    spec = cfg.spec
    user = spec.trainer
    # The entry point first: a broken one fails in a second, not after the data is resolved.
    function = loader.load(user) if user is not None else builtin.train
    entry = user.entry_point if user is not None else None
    source = _locate(cfg, world)
    if not source.passed:
        raise GateFailed(source)
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
        start = finetune.load(spec.model.init_from, spec.model, entry)
        finetune.check_classes(start, frame[spec.model.target])
        prep = start.preprocessor
    else:
        prep = preprocess.fit(train_df, frame[spec.model.target], _model_spec(spec))
    inputs = _inputs(spec, prep)
    ctx = context_mod.TrainContext(
        name=cfg.name,
        train=train_df,
        holdout=hold_df,
        features=[c.name for c in prep.columns],
        target=prep.target,
        task=prep.task,
        classes=list(prep.classes),
        inputs=inputs,
        preprocessor=prep,
        training=spec.training,
        hyperparameters=_hyperparameters(spec),
        args=list(user.args) if user is not None else [],
        world=world,
        checkpoints=context_mod.Checkpoints(store, world, prep, cfg.to_dict(), resumed),
        report=context_mod.Reporter(world, spec.training.epochs, metrics.primary(prep.task)),
        start_state=start.state_dict if start is not None else None,
        artifacts_uri=cfg.artifacts_uri,
    )
    seed_everything(spec.training.seed)
    returned = loader.call(function, ctx, entry or builtin.ENTRY_POINT) if user is not None else function(ctx)
    model, summary = _exportable(returned, inputs, entry)
    hold_feeds = feeds.encode(prep, inputs, hold_df)
    final = metrics.evaluate(
        prep, _fp32_outputs(model, hold_feeds, world.device), prep.labels(hold_df[prep.target])
    )
    emit(world, "evaluate", split="holdout", metrics=final, rows=len(hold_df))
    steps = ctx.checkpoints.step
    training = {**summary} if summary else {"worldSize": world.world_size, "steps": steps}
    model_refs = None
    if world.is_main:
        model_refs, card = export.export(
            model,
            prep,
            cfg,
            final,
            lineage,
            hold_feeds,
            {**training, **_start_lineage(spec, replayed)},
            holdout_rows=hold_df,
            calibration=feeds.encode(prep, inputs, train_df),
        )
        emit(
            world,
            "export",
            version=model_refs.version,
            uri=store.join("model"),
            quantization=card["quantization"],
        )
    dist.barrier(world)
    done = f"trained {training.get('steps')} steps" if training.get("steps") is not None else "trained"
    return result_mod.Result(
        phase="Succeeded",
        message=f"{done} on {len(train_df)} rows; holdout {_fmt(final)}",
        metrics=final,
        model=model_refs,
        data=lineage,
        checkpoint=trainingrun.Checkpoint(uri=ctx.checkpoints.uri, step=ctx.checkpoints.step),
        validation=source.validation,
    )


def _model_spec(spec: trainingrun.TrainingRunSpec) -> trainingrun.ModelSpec:
    """The features the preprocessing is fitted on: a tensor model's are its tensors' columns
    (numeric; with any bounds model.features declares for them)."""
    columns = spec.trainer.tensor_columns() if spec.trainer is not None else []
    if not columns:
        return spec.model
    declared = {f.name: f for f in spec.model.features}
    features = [declared.get(c) or trainingrun.Feature(name=c, type="numeric") for c in columns]
    return spec.model.model_copy(update={"features": features})


def _inputs(spec: trainingrun.TrainingRunSpec, prep: preprocess.Preprocessor) -> dict[str, Any]:
    """The card's `inputs` for this run: matrix (built-in), tensors (declared) or tabular."""
    if spec.trainer is None:
        return feeds.describe(prep, feeds.MATRIX)
    if spec.trainer.inputs:
        tensors = [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.shape), "columns": t.column_names()}
            for t in spec.trainer.inputs
        ]
        return feeds.describe(prep, feeds.TENSORS, tensors)
    return feeds.describe(prep, feeds.TABULAR)


def _hyperparameters(spec: trainingrun.TrainingRunSpec) -> dict[str, Any]:
    """The user's, or the built-in's architecture (its only hyperparameters besides spec.training)."""
    if spec.trainer is not None:
        return dict(spec.trainer.hyperparameters)
    arch = spec.model.architecture
    return {"hiddenLayers": list(arch.hidden_layers), "dropout": arch.dropout}


def _exportable(
    returned: object, inputs: dict[str, Any], entry: str | None
) -> tuple[export.Exportable, dict[str, Any] | None]:
    """What the function returned, checked: Trained (module + example feeds) or an ONNX path."""
    where = f"{loader.FIELD} {entry}"
    names = feeds.names(inputs)
    onnx = context_mod.onnx_path(returned)
    if onnx is not None:
        if not onnx.is_file():
            raise errors.UserError(f"{where}: returned {onnx}, which is not a file; return the path it wrote")
        _check_onnx(onnx, names, where)
        return export.Exportable(inputs, onnx=onnx, entry_point=entry), None
    if not isinstance(returned, context_mod.Trained) or not isinstance(returned.module, nn.Module):
        raise errors.UserError(
            f"{where}: returned {type(returned).__name__}; return flywheel.training.Trained(module, example) "
            "(a torch.nn.Module and a feed dict such as ctx.encode(ctx.train.head(2))) or the path of "
            "an ONNX file it wrote"
        )
    module = returned.module
    if isinstance(module, nn.parallel.DistributedDataParallel):
        module = module.module  # ctx.wrap's: export the model inside
    example = returned.example
    if example is not None and sorted(example) != sorted(names):
        raise errors.UserError(
            f"{where}: Trained.example has inputs {sorted(example)}, the model takes {names}; "
            "pass ctx.encode(rows)"
        )
    if example is None and entry is not None:
        raise errors.UserError(f"{where}: Trained.example is missing; pass ctx.encode(ctx.train.head(2))")
    return export.Exportable(inputs, module=module, example=example, entry_point=entry), returned.summary


def _check_onnx(path: Path, names: list[str], where: str) -> None:
    import onnx as onnx_lib

    graph = onnx_lib.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    given = [i.name for i in graph.input if i.name not in initializers]
    outputs = [o.name for o in graph.output]
    if sorted(given) != sorted(names) or "output" not in outputs:
        raise errors.UserError(
            f"{where}: the ONNX file takes {given} and gives {outputs}; "
            f"it must take {names} and give 'output'"
        )


def _fp32_outputs(model: export.Exportable, fed: feeds.Feeds, device: torch.device) -> np.ndarray:
    """The fp32 model's outputs on these feeds: the module in eval mode, or the user's ONNX file."""
    if model.module is None:
        from flywheel.training import inference

        assert model.onnx is not None
        return inference.onnx_runner(model.onnx)(fed)
    net = model.module
    names = feeds.names(model.inputs)
    was_training = net.training
    net.eval()
    with torch.inference_mode():
        out: np.ndarray = net(*(torch.from_numpy(fed[n]).to(device) for n in names)).float().cpu().numpy()
    net.train(was_training)
    return out


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


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in values.items())
