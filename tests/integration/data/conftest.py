"""One real example DVC repository (git + DVC + a local DVC remote) shared by this package's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.data import examples


@pytest.fixture(scope="session")
def example_repo(tmp_path_factory: pytest.TempPathFactory) -> examples.ExampleRepo:
    return examples.make_repo(tmp_path_factory.mktemp("example") / "shuttle")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"
