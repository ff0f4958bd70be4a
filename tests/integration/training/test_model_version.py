"""A model version identifies the model (flywheel.training.identity): the real trainer, in this
process, on scikit-learn's wine data. The same spec on the same data gives the same version (CPU
training here is bit-reproducible, and the test says so by comparing the weights' digest too); a
changed spec or changed data gives a new one."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from flywheel.api import contract
from flywheel.training import identity
from tests.integration.serving import trained
from tests.unit.training import fixtures

pytestmark = pytest.mark.slow


def _card(root: Path, data: Path, epochs: int = 2, name: str = "tiny") -> dict:
    root.mkdir(parents=True, exist_ok=True)
    config = fixtures.write_config(root, data, fixtures.spec(epochs=epochs, learningRate=0.02), name=name)
    trained._train(root, name, config)
    return json.loads((fixtures.run_root(root, name) / contract.MODEL_DIR / contract.MODEL_CARD).read_text())


def test_same_spec_and_data_same_version_any_change_a_new_one(tmp_path: Path) -> None:
    data = fixtures.wine_csv(tmp_path / "wine.csv")
    first = _card(tmp_path / "a", data)
    again = _card(tmp_path / "b", data)  # another home: paths differ, the model does not
    assert first["version"].startswith("tiny-") and len(first["version"]) == len("tiny-") + 12
    assert again["digests"] == first["digests"], "CPU training is no longer bit-reproducible"
    assert again["version"] == first["version"] and again["createdAt"] is not None

    longer = _card(tmp_path / "c", data, epochs=3)
    assert longer["digests"][contract.FP32_FILE] != first["digests"][contract.FP32_FILE]
    assert longer["version"] != first["version"]

    fewer = tmp_path / "fewer.csv"
    pd.read_csv(data).iloc[:-10].to_csv(fewer, index=False)
    changed = _card(tmp_path / "d", fewer)
    assert changed["data"]["hash"] != first["data"]["hash"] and changed["version"] != first["version"]


def test_the_version_follows_the_identity_not_the_moment() -> None:
    """What the digest covers, without training: content and identifying fields, not timestamps,
    metrics or paths."""
    card = {"name": "m", "config": {"spec": {"training": {"epochs": 2}}, "artifactsUri": "file:///a"},
            "data": {"hash": "abc", "path": "/x"}, "createdAt": "2026-01-01", "metrics": {"f1": 0.5}}  # fmt: skip
    digests = {contract.FP32_FILE: "00", contract.PREPROCESSOR_FILE: "11"}
    base = identity.version("m", card, digests)
    moved = {**card, "createdAt": "2027-01-01", "metrics": {"f1": 0.6},
             "config": {**card["config"], "artifactsUri": "file:///b"}, "data": {"hash": "abc", "path": "/y"}}  # fmt: skip
    assert identity.version("m", moved, digests) == base
    # the same spec from another home: its repository, artifact folder, code folder and starting
    # model's folder are places, not what the model is
    placed = {"training": {"epochs": 2}, "data": {"repo": "/home/a/datasets/x", "path": "d.csv"},
              "trainer": {"entryPoint": "m:train", "path": "/home/a/code"},
              "artifacts": {"uri": "file:///home/a/artifacts"}, "model": {"initFrom": "file:///home/a/m"}}  # fmt: skip
    elsewhere = json.loads(json.dumps(placed).replace("/home/a", "/srv/b"))
    at_a = identity.version("m", {**card, "config": {"spec": placed}}, digests)
    assert identity.version("m", {**card, "config": {"spec": elsewhere}}, digests) == at_a
    other_code = {**placed, "trainer": {"entryPoint": "n:train", "path": "/home/a/code"}}
    assert identity.version("m", {**card, "config": {"spec": other_code}}, digests) != at_a
    started = {**card, "config": {"spec": placed}, "training": {"initFrom": {"version": "m-0123456789ab"}}}
    assert identity.version("m", started, digests) != at_a  # which model it started from still counts
    assert identity.version("m", card, {**digests, contract.PREPROCESSOR_FILE: "12"}) != base
    assert identity.version("m", {**card, "config": {"spec": {"training": {"epochs": 3}}}}, digests) != base
    assert identity.version("m", {**card, "data": {"hash": "abd"}}, digests) != base
