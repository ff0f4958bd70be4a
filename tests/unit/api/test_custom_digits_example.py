"""examples/custom-digits: each manifest renders for Kubernetes, and its TrainingRun's trainer is
importable with the tensor the serving side expects (image [1, 8, 8] from px0..px63, the digits
repository's columns). Schema validation of every example, this folder's included, is in
test_examples.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel import cli
from flywheel.api import loading, trainingrun
from flywheel.data import digits
from flywheel.training import loader

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "custom-digits"
FILES = sorted(EXAMPLE.glob("*.yaml"))


def test_the_folder_holds_the_three_kinds() -> None:
    kinds = [doc["kind"] for path in FILES for doc in loading.read_documents(path)]
    assert sorted(kinds) == ["Deployment", "DriftMonitor", "TrainingRun"]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_manifest_renders(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", "-f", str(path)]) == 0
    out = capsys.readouterr().out
    # A DriftMonitor has no children until it runs: the stream says so instead.
    assert "kind:" in out or "DriftMonitor default/digits-cnn: no children until it runs" in out


def test_trainer_imports_and_declares_the_image_over_the_repository_columns() -> None:
    (run,) = loading.load_file(EXAMPLE / "trainingrun.yaml")
    assert isinstance(run, trainingrun.TrainingRun) and run.spec.trainer is not None
    assert callable(loader.load(run.spec.trainer, EXAMPLE))
    (image,) = run.spec.trainer.inputs or []
    assert (image.name, image.shape, image.column_names()) == ("image", [1, 8, 8], digits.PIXELS)
    assert run.spec.data.path == digits.DATA_PATH and run.spec.data.rev in digits.REVISIONS
    (monitor,) = loading.load_file(EXAMPLE / "driftmonitor.yaml")
    assert monitor.spec.retrain.template.data.rev == "shifted"
    assert monitor.spec.retrain.template.trainer.inputs == run.spec.trainer.inputs
