"""contract.run_root: the pure path rule of a run's artifact root, which the controllers render
into the trainer's config and the local backend removes on delete."""

from __future__ import annotations

import pytest

from flywheel import artifacts
from flywheel.api import contract


@pytest.mark.parametrize(
    "uri", ["file:///tmp/art", "file:///tmp/art/", "s3://bucket/prefix/", "pvc://flywheel-artifacts"]
)
def test_run_root_is_where_the_store_puts_a_runs_artifacts(uri: str) -> None:
    root = contract.run_root(uri, "ml", "trainingruns", "iris")
    assert root == artifacts.Store(uri).child("ml", "trainingruns", "iris").uri
    assert root.endswith("/ml/trainingruns/iris") and "//ml" not in root
