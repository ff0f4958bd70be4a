"""The local backend creates the example repository a TrainingRun's relative data.repo names on
first use, under the home: here datasets/digits (the 8x8 digits of examples/custom-digits), a real
git + DVC repository, and leaves it alone once there. (datasets/example, the Shuttle one, is
covered end to end by test_trainingrun_local.py.)"""

from __future__ import annotations

import io
from pathlib import Path

import yaml
from rich import console as rich_console

from flywheel.data import digits, examples
from flywheel.local import runners
from flywheel.local.runners import trainingrun as tr_runner

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "custom-digits" / "trainingrun.yaml"


def test_the_digits_repository_is_created_under_the_home_once(tmp_path: Path) -> None:
    out = io.StringIO()
    ctx = runners.Context.create(tmp_path / "home", console=rich_console.Console(file=out))
    manifest = yaml.safe_load(EXAMPLE.read_text())
    assert manifest["spec"]["data"]["repo"] == tr_runner.DIGITS_REPO
    job = tr_runner.TrainingRunJob(ctx, manifest)
    job.prepare(manifest)
    repo = ctx.home / tr_runner.DIGITS_REPO
    assert "creating the example DVC repository" in out.getvalue()
    assert (repo / f"{digits.DATA_PATH}.dvc").exists()
    assert examples.git(repo, "tag", "--list").split() == sorted(digits.REVISIONS)
    before = examples.git(repo, "rev-parse", "HEAD")
    job.prepare(manifest)  # already there: not rebuilt
    assert out.getvalue().count("creating the example DVC repository") == 1
    assert examples.git(repo, "rev-parse", "HEAD") == before
