"""The trainer as it runs in a pod (no dataPath: it resolves and gates the data itself), and
spec.data.validation.file read from git at the same commit as the data, on a clone of the real
example DVC repository whose expectations change between two tags."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flywheel import errors
from flywheel.api import trainingrun
from flywheel.data import examples, resolve
from flywheel.training import config as config_mod
from flywheel.training import dataset

pytestmark = pytest.mark.slow  # real git + DVC (the session's example repository, cloned)

LOOSE = (
    "expectations:\n  - type: expect_column_max_to_be_between\n    kwargs: {column: f1, max_value: 10000}\n"
)
STRICT = "expectations:\n  - type: expect_column_max_to_be_between\n    kwargs: {column: f1, max_value: 5}\n"


@pytest.fixture(scope="module")
def repo(example_repo: examples.ExampleRepo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of the example with checks/shuttle.yaml committed loose (tag exp-loose), then strict."""
    root = tmp_path_factory.mktemp("clone") / "shuttle"
    subprocess.run(["git", "clone", "-q", str(example_repo.root), str(root)], check=True)
    for tag, text in (("exp-loose", LOOSE), ("exp-strict", STRICT)):
        (root / "checks").mkdir(exist_ok=True)
        (root / "checks" / "shuttle.yaml").write_text(text)
        examples.git(root, "add", "checks/shuttle.yaml")
        examples.git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", tag)
        examples.git(root, "tag", tag)
    return root


def data(repo: Path, rev: str, file: str | None = "checks/shuttle.yaml") -> trainingrun.Data:
    return trainingrun.Data(
        repo=str(repo), rev=rev, path=examples.DATA_PATH, validation=trainingrun.Validation(file=file)
    )


def in_pod_config(repo: Path, rev: str, tmp_path: Path) -> config_mod.Config:
    spec = trainingrun.TrainingRunSpec(data=data(repo, rev), model=examples.model_spec())
    return config_mod.Config(name="shuttle", spec=spec, artifacts_uri=(tmp_path / "art").as_uri())


def test_the_expectations_file_is_read_at_the_data_commit(repo: Path, tmp_path: Path) -> None:
    loose = resolve.resolve(data(repo, "exp-loose"), tmp_path / "cache")
    strict = resolve.resolve(data(repo, "exp-strict"), tmp_path / "cache")
    assert loose.expectations is not None and loose.expectations.read_text() == LOOSE
    assert strict.expectations is not None and strict.expectations.read_text() == STRICT
    assert loose.lineage.hash == strict.lineage.hash  # same data, different expectations
    assert resolve.resolve(data(repo, "exp-loose", None), tmp_path / "cache").expectations is None


def test_a_missing_expectations_file_names_the_field(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.UserError, match=r"spec.data.validation.file: 'checks/none.yaml' is not in"):
        resolve.resolve(data(repo, "exp-loose", "checks/none.yaml"), tmp_path / "cache")


def test_the_trainer_in_a_pod_resolves_and_gates_with_that_revision(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_DATA_CACHE", str(tmp_path / "pod-cache"))
    passed = dataset.locate(in_pod_config(repo, "exp-loose", tmp_path))
    assert passed.passed and passed.validation is not None and passed.validation["success"] is True
    head = examples.git(repo, "rev-parse", "exp-loose^{commit}").strip()
    assert passed.lineage.commit == head and passed.lineage.rows == examples.ROWS_PER_PERIOD
    assert Path(passed.path).is_file()
    failed = dataset.locate(in_pod_config(repo, "exp-strict", tmp_path))
    assert not failed.passed and failed.validation is not None
    assert "spec.data.validation.file (shuttle.yaml) item 0" in failed.validation["summary"]
