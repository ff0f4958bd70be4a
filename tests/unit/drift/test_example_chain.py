"""The kind examples a DriftMonitor depends on resolve within the set examples/kustomization.yaml
applies (offline: no cluster here): examples/driftmonitor.yaml watches the Deployment of
examples/deployment.yaml, whose champion and challenger are models that TrainingRun examples of the
set produce, so `kubectl apply -k examples/` leaves no reference dangling and no name clashes."""

from __future__ import annotations

from pathlib import Path

import yaml

from flywheel import artifacts
from flywheel.api import contract, loading
from flywheel.api import trainingrun as tr_api

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
KUSTOMIZED = yaml.safe_load((EXAMPLES / "kustomization.yaml").read_text())["resources"]


def _by_kind(kind: str, *files: str) -> dict[tuple[str, str], dict]:
    out = {}
    for name in files or KUSTOMIZED:
        for resource in loading.load_file(EXAMPLES / name):
            manifest = resource.to_manifest()
            if manifest["kind"] == kind:
                meta = manifest["metadata"]
                out[(meta.get("namespace") or "default", meta["name"])] = manifest
    return out


def _model_dirs() -> dict[str, tuple[str, str]]:
    """Model directory URI -> (namespace, name) of the TrainingRun example that writes it."""
    out = {}
    for (namespace, name), run in _by_kind(tr_api.TrainingRun.KIND).items():
        root = contract.run_root(run["spec"]["artifacts"]["uri"], namespace, tr_api.TrainingRun.PLURAL, name)
        out[artifacts.Store(root).join(contract.MODEL_DIR)] = (namespace, name)
    return out


def test_the_kind_deployment_serves_models_that_examples_train() -> None:
    runs = _by_kind(tr_api.TrainingRun.KIND)
    dirs = _model_dirs()
    ((namespace, _), deployment), *rest = _by_kind("Deployment", "deployment.yaml").items()
    assert rest == []
    trained = {}
    for role in ("champion", "challenger"):
        ref = deployment["spec"][role]
        if "fromTrainingRun" in ref:
            assert (namespace, ref["fromTrainingRun"]) in runs, f"{role}: no TrainingRun example"
            trained[role] = runs[(namespace, ref["fromTrainingRun"])]
        else:
            assert ref["uri"] in dirs, f"{role}: {ref['uri']} is written by no TrainingRun example"
            trained[role] = runs[dirs[ref["uri"]]]
    # The challenger learns the later period: a model the champion is not.
    revs = {role: run["spec"]["data"]["rev"] for role, run in trained.items()}
    assert revs == {"champion": "period-1", "challenger": "period-2"}
    assert trained["champion"]["spec"]["model"] == trained["challenger"]["spec"]["model"]


def test_the_kind_driftmonitor_watches_the_kind_deployment() -> None:
    ((namespace, _), monitor), *rest = _by_kind("DriftMonitor", "driftmonitor.yaml").items()
    assert rest == []
    assert (namespace, monitor["spec"]["deploymentRef"]) in _by_kind("Deployment", "deployment.yaml")


def test_the_kustomized_set_has_one_resource_per_name_and_exists() -> None:
    seen: dict[tuple[str, str, str], str] = {}
    for name in KUSTOMIZED:
        for resource in loading.load_file(EXAMPLES / name):  # raises on an invalid example
            meta = resource.to_manifest()["metadata"]
            key = (resource.KIND, meta.get("namespace") or "default", meta["name"])
            assert key not in seen, f"{key} is in both {seen.get(key)} and {name}"
            seen[key] = name
    assert {kind for kind, _, _ in seen} == {"TrainingRun", "Deployment", "DriftMonitor"}
