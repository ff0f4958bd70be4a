"""Fine-tuning: a run that starts from an exported model (spec.model.initFrom) instead of from scratch.

What is kept from the starting model is what its weights mean: its preprocessing (the feature
scaling, the category vocabularies, the class list, the target's scale) and its network shape. So the
run's declared task, target, architecture and features must agree with the model's, and the new data
may not bring a class the model has no output for: each is refused naming the field and the fix,
before anything trains. A resumed run ignores initFrom: its checkpoint already holds the weights.

The starting model is read from its fp32 export (model_fp32.pt: state_dict and shape, loaded with
weights_only), from any artifact store the run can read, and recorded in the new model's card
(training.initFrom: URI and version), so lineage says it was fine-tuned and from what.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pandas as pd
import torch

from flywheel import artifact_cache, errors
from flywheel.api import contract, trainingrun
from flywheel.training import inference, preprocess


def replay_source(uri: str) -> tuple[trainingrun.Data, trainingrun.TrainingRunSpec]:
    """Where the model at `uri` was trained (its card's data lineage, pinned to the commit) and the
    spec it was trained with (to leave its holdout out, split as it was)."""
    folder = artifact_cache.local_dir(uri, artifact_cache.ROOT / "models")
    card = json.loads((folder / contract.MODEL_CARD).read_text())
    data = card.get("data") or {}
    if not (data.get("repo") and data.get("path")):
        raise errors.UserError(
            f"training.replayFraction: the model at {uri} does not record where its data came from "
            "(its card's data lineage has no repo or path); set training.replayFraction to 0"
        )
    spec = trainingrun.TrainingRunSpec.model_validate(card["config"]["spec"])
    rev = str(data.get("commit") or data.get("rev") or "HEAD")
    return spec.data.model_copy(update={"repo": data["repo"], "rev": rev, "path": data["path"]}), spec


def replay_rows(
    frame: pd.DataFrame, spec: trainingrun.TrainingRunSpec, wanted: int, seed: int
) -> pd.DataFrame:
    """`wanted` rows (at most all) of the starting model's training split, drawn seeded."""
    from flywheel.training import dataset

    old_train, _ = dataset.split(frame, spec)
    return old_train.sample(n=min(wanted, len(old_train)), random_state=seed).reset_index(drop=True)


@dataclasses.dataclass(frozen=True)
class Start:
    uri: str
    version: str
    preprocessor: preprocess.Preprocessor
    state_dict: dict[str, torch.Tensor]

    def lineage(self) -> dict[str, str]:
        return {"uri": self.uri, "version": self.version}


def load(uri: str, model: trainingrun.ModelSpec, entry_point: str | None = None) -> Start:
    """The model at `uri`, checked against the run's model spec; `entry_point`: the run's
    spec.trainer.entryPoint (None: the built-in MLP), which must be the one that trained it."""
    folder = artifact_cache.local_dir(uri, artifact_cache.ROOT / "models")
    card_path, weights = folder / contract.MODEL_CARD, folder / contract.FP32_FILE
    if not card_path.is_file() or not weights.is_file():
        raise errors.UserError(
            f"model.initFrom {uri}: no complete export there "
            f"({contract.MODEL_CARD} and {contract.FP32_FILE}); point it at a model folder a "
            "TrainingRun exported (status.model.cardUri without the file name)"
        )
    card = json.loads(card_path.read_text())
    theirs = (card.get("trainer") or {}).get("entryPoint")
    if theirs != entry_point:
        raise errors.UserError(
            f"model.initFrom {uri}: it was trained by {theirs or 'the built-in MLP'}, this run's "
            f"spec.trainer.entryPoint is {entry_point or 'unset (the built-in MLP)'}; a fine-tune "
            "continues the same code's weights: use the same entry point, or train from scratch "
            "(remove model.initFrom)"
        )
    saved: dict[str, Any] = torch.load(weights, map_location="cpu", weights_only=True)
    if entry_point is not None:  # a user module: its weights and preprocessing, no shape to check
        if saved.get("format") != inference.USER_FP32_FORMAT:
            raise errors.UserError(f"model.initFrom {uri}: {contract.FP32_FILE} holds no module weights")
        prep = preprocess.Preprocessor.from_dict(
            json.loads((folder / contract.PREPROCESSOR_FILE).read_text())
        )
        _check(uri, card, None, prep, model)
        return Start(uri, str(card.get("version") or "unknown"), prep, saved["state_dict"])
    if saved.get("format") != inference.FP32_FORMAT:
        raise errors.UserError(f"model.initFrom {uri}: {contract.FP32_FILE} is not a Flywheel MLP export")
    prep = preprocess.Preprocessor.from_dict(json.loads((folder / contract.PREPROCESSOR_FILE).read_text()))
    _check(uri, card, saved["architecture"], prep, model)
    return Start(uri, str(card.get("version") or "unknown"), prep, saved["state_dict"])


def check_classes(start: Start, target: pd.Series) -> None:
    """New data with a class the starting model cannot output cannot fine-tune it."""
    if start.preprocessor.task != "classification":
        return
    new = sorted(set(target.dropna().astype(str)) - set(start.preprocessor.classes))
    if new:
        raise errors.UserError(
            f"model.initFrom {start.uri}: the data has classes the model has no output for "
            f"({', '.join(new[:10])}); train from scratch (remove model.initFrom)"
        )


def _check(
    uri: str,
    card: dict[str, Any],
    shape: dict[str, Any] | None,
    prep: preprocess.Preprocessor,
    model: trainingrun.ModelSpec,
) -> None:
    problems = []
    if prep.task != model.task.value:
        problems.append(f"model.task is {model.task.value}, the model's is {prep.task}")
    if prep.target != model.target:
        problems.append(f"model.target is {model.target!r}, the model's is {prep.target!r}")
    hidden = list(model.architecture.hidden_layers)
    if shape is not None and list(shape.get("hidden") or []) != hidden:
        problems.append(f"model.architecture.hiddenLayers is {hidden}, the model's is {shape.get('hidden')}")
    declared = [f.name for f in model.features]
    theirs = [f["name"] for f in card.get("features") or []]
    if declared and sorted(declared) != sorted(theirs):
        problems.append(f"model.features are {declared}, the model's are {theirs}")
    if problems:
        raise errors.UserError(
            f"model.initFrom {uri} cannot start this run: " + "; ".join(problems) + ". Make them equal, "
            "or train from scratch (remove model.initFrom)"
        )
