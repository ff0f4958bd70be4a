"""`flywheel validate`: the API checks (flywheel.api.validation), then spec.trainer.entryPoint.

Local target: the entry point is imported as the trainer would import it (spec.trainer.path
against the manifest's folder) and must be a function taking one argument, the TrainContext.
Kubernetes target: nothing is imported here (the code lives in the trainer image); a note says
which image must hold it. Here, not in flywheel.api, because importing user code imports torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flywheel import errors
from flywheel.api import loading, trainingrun, validation
from flywheel.training import loader


def cli(args: argparse.Namespace) -> int:
    code = validation.cli(args)
    target = getattr(args, "target", validation.LOCAL) or validation.LOCAL
    for path in args.filename:
        for where, trainer, image in _trainers(path):
            if target == validation.KUBERNETES:
                print(f"{where}: note: spec.trainer.entryPoint {trainer.entry_point} is imported in the "
                      f"trainer pod: it must be importable in {image}")  # fmt: skip
                continue
            folder = Path(path) if Path(path).is_dir() else Path(path).parent
            for line in check(trainer, folder):
                print(f"{where}: {line}")
                code = 1
    return code


def check(trainer: trainingrun.Trainer, folder: Path) -> list[str]:
    """Problems of importing the entry point with spec.trainer.path against `folder`."""
    try:
        loader.load(trainer, folder)
    except errors.UserError as exc:
        return [str(exc)]
    return []


def _trainers(path: str) -> list[tuple[str, trainingrun.Trainer, str]]:
    """(where, trainer, image) of every valid resource of the file that names user code."""
    out = []
    try:
        docs = loading.read_documents(path)
    except errors.UserError:
        return []  # validation.cli has reported it
    for doc in docs:
        where = f"{path}: {loading.describe(doc)}"
        try:
            resource = loading.parse(doc, where)
        except errors.UserError:
            continue  # reported above
        spec = getattr(resource, "spec", None)
        retrain = getattr(spec, "retrain", None)
        for owner in (spec, getattr(retrain, "template", None)):
            trainer = getattr(owner, "trainer", None)
            if isinstance(owner, trainingrun.TrainingRunSpec) and trainer is not None:
                image = trainer.image or owner.resources.image or "the operator's trainer image"
                out.append((where, trainer, image))
    return out
