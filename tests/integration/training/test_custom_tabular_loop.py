"""The demo's closed loop with the user's model in place of the built-in one: the resources of
examples/custom-tabular (TrainingRun with spec.trainer, Deployment, DriftMonitor whose retrain
template names the same entry point) run through `flywheel demo`'s stages, in this process. Every
piece is real: the DVC repository, torchrun training of tabular_model:train, the BentoML server with
HTTP traffic, Evidently, the DriftMonitor's check Jobs, the challenger's training and the hot swap.

What is adapted: the demo looks its resources up by the name `shuttle`, so the example's
`shuttle-custom` is renamed, and spec.trainer.path is made absolute as `flywheel run` makes it."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from flywheel import api
from flywheel.api import loading
from flywheel.demo import resources
from flywheel.local import store as store_mod

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "custom-tabular"
FILES = {
    resources.TRAININGRUN: EXAMPLE / "trainingrun.yaml",
    resources.DEPLOYMENT: EXAMPLE / "deployment.yaml",
    resources.DRIFTMONITOR: EXAMPLE / "driftmonitor.yaml",
}


def _custom(path: Path) -> dict[str, Any]:
    (doc,) = loading.read_documents(FILES[path])
    doc = copy.deepcopy(doc)
    doc["metadata"]["name"] = "shuttle"
    spec = doc["spec"]
    for owner in (spec, (spec.get("retrain") or {}).get("template")):
        if owner and "trainer" in owner:
            owner["trainer"]["path"] = str(EXAMPLE)
    if doc["kind"] == "Deployment":
        spec["champion"]["fromTrainingRun"] = "shuttle"
    if doc["kind"] == "DriftMonitor":
        spec["deploymentRef"] = "shuttle"
    return doc


def test_the_custom_model_closes_the_drift_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flywheel import demo

    monkeypatch.setattr(resources, "_load", _custom)
    home, report = tmp_path / "home", tmp_path / "report"
    assert demo.cli(argparse.Namespace(home=str(home), report=str(report), scenario=demo.CLOSED_LOOP)) == 0
    summary: dict[str, Any] = json.loads((report / "summary.json").read_text())
    assert summary["drift"]["detected"] is True
    assert summary["decision"]["decision"] == "promoted" == summary["outcome"]["decision"]
    assert summary["traffic"]["failed"] == 0
    store = store_mod.Store(home)
    runs = {name: store.get(api.TrainingRun.KIND, name) for name in summary["runs"].values()}
    for name, run in runs.items():  # champion and challenger: both the user's model
        assert run is not None and run["spec"]["trainer"]["entryPoint"] == "tabular_model:train", name
        card_uri = run["status"]["model"]["cardUri"]
        card = json.loads(Path(card_uri.removeprefix("file://")).read_text())
        assert card["inputs"]["kind"] == "tabular" and card["trainer"]["entryPoint"] == "tabular_model:train"
    deployment = store.get(api.Deployment.KIND, "shuttle")
    assert deployment is not None
    assert deployment["spec"]["champion"]["fromTrainingRun"] == summary["runs"]["challenger"]
