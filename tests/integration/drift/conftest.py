"""Session fixtures: a real git + DVC repository of the Shuttle periods (flywheel.data.examples) and two
tiny real exports trained in-process by flywheel.training: the champion on period 1 (its card's
lineage points at the repository's period-1 commit) and the challenger on period 2."""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path

import pytest

from flywheel import distributed as dist
from flywheel.api import contract, trainingrun
from flywheel.data import examples
from flywheel.training import config, trainer


@dataclasses.dataclass(frozen=True)
class Exports:
    repo: examples.ExampleRepo
    champion: Path
    challenger: Path


def train(root: Path, name: str, period: int, repo: examples.ExampleRepo) -> Path:
    """Train on one period's committed rows; returns the model directory."""
    spec = trainingrun.TrainingRunSpec(
        data=repo.data_spec(period),
        model=examples.model_spec().model_copy(
            update={"architecture": trainingrun.Architecture(hidden_layers=[16])}
        ),
        training=trainingrun.Training(
            epochs=3, batch_size=128, learning_rate=0.01, class_weighting="balanced"
        ),
    )
    run_root = root / "artifacts" / "default" / "trainingruns" / name
    # The trainer resolves the period from the repository with DVC (and gates it), as in a pod, so
    # the card's lineage is the repository's period commit.
    cfg = config.Config(name=name, spec=spec, artifacts_uri=run_root.as_uri())
    with contextlib.redirect_stdout(io.StringIO()):  # the trainer's JSON progress lines
        trainer.run(cfg, dist.init({}))
    return run_root / contract.MODEL_DIR


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    root = tmp_path_factory.mktemp("drift-exports")
    repo = examples.make_repo(root / "repo")
    return Exports(repo, train(root, "champion", 1, repo), train(root, "challenger", 2, repo))
