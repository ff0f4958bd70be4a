"""No default that loses data: on Kubernetes a resource whose artifacts would live in a pod's
scratch space is refused by the operator, and a defaulted store is the platform's (the chart's
artifacts.uri, passed to the operator as FLYWHEEL_ARTIFACTS_URI). The TrainingRun operator runs
under kopf against the Kubernetes API emulator over HTTP; nothing is mocked but the cluster."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from flywheel.api import conditions, contract
from flywheel.controllers import artifact_store, settings
from tests.integration.operators import conftest
from tests.integration.operators import test_trainingrun_operator as tr

pytestmark = pytest.mark.timeout(60)
PLATFORM = "s3://platform-artifacts/flywheel"


def defaulted(name: str, uri: str | None = None) -> dict[str, Any]:
    """examples/trainingrun-minimal.yaml with spec.artifacts left at its default (or set to `uri`)."""
    out = tr.run_manifest(name)
    out["spec"].pop("artifacts", None)
    if uri is not None:
        out["spec"]["artifacts"] = {"uri": uri}
    return out


async def test_a_store_in_the_pod_is_refused_naming_the_field_and_the_fix(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(settings.ENV_ARTIFACTS_URI, raising=False)
    async with conftest.running(tr.make_registry()):
        await tr.create(defaulted("lost"))
        await conftest.eventually(lambda: tr.ready(emulator, "lost").get("status") == "False", what="refused")
    ready = tr.ready(emulator, "lost")
    assert ready["reason"] == conditions.R_EPHEMERAL
    assert ready["message"].startswith(
        "spec.artifacts.uri: file:///var/lib/flywheel/artifacts is a path inside the pod"
    )
    assert (
        "s3://" in ready["message"] and "pvc://" in ready["message"] and "artifacts.uri" in ready["message"]
    )
    status = tr.run_status(emulator, "lost")
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (status["phase"], status["observedGeneration"], stalled["status"]) == ("Failed", 1, "True")
    assert emulator.live(tr.JOBS, tr.NS) == [] and emulator.live(tr.CONFIGMAPS, tr.NS) == []
    warnings = [e for e in emulator.live("v1/events", tr.NS) if e["reason"] == conditions.R_EPHEMERAL]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"


async def test_the_platform_store_fills_the_default_and_a_written_file_store_is_still_refused(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.ENV_ARTIFACTS_URI, PLATFORM)
    monkeypatch.setenv(settings.ENV_ARTIFACTS_SECRET, "platform-s3")
    async with conftest.running(tr.make_registry()):
        await tr.create(defaulted("kept"))
        await tr.create(defaulted("scratch", uri="file:///data/artifacts"))
        await conftest.eventually(
            lambda: tr.ready(emulator, "kept").get("reason") == "JobCreated", what="a job"
        )
        await conftest.eventually(
            lambda: tr.ready(emulator, "scratch").get("status") == "False", what="refused"
        )
    (config_map,) = emulator.live(tr.CONFIGMAPS, tr.NS)
    config = json.loads(config_map["data"][contract.CONFIG_FILE])
    assert config["artifactsUri"].startswith(f"{PLATFORM}/")
    (job,) = emulator.live(tr.JOBS, tr.NS)
    container = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "platform-s3"}} in container["envFrom"]
    assert tr.ready(emulator, "scratch")["message"].startswith("spec.artifacts.uri: file:///data/artifacts")


def test_resolve_is_pure_and_leaves_written_stores_alone() -> None:
    platform = settings.Settings(artifacts_uri=PLATFORM, artifacts_credentials_secret="platform-s3")
    resource = defaulted("x")
    before = copy.deepcopy(resource)
    resolved, problem = artifact_store.resolve(resource, platform)
    assert problem is None and resource == before
    assert resolved["spec"]["artifacts"] == {"uri": PLATFORM, "credentialsSecret": "platform-s3"}
    pvc = defaulted("y", uri="pvc://claim/runs")
    assert artifact_store.resolve(pvc, platform) == (pvc, None)
    assert artifact_store.resolve(pvc, settings.Settings()) == (pvc, None)
    _, problem = artifact_store.resolve(defaulted("z"), settings.Settings(artifacts_uri="file:///tmp/a"))
    assert problem is not None and "file:///tmp/a" in problem
    assert artifact_store.effective_uri(None, platform) == PLATFORM  # where a reader of the default looks
    assert artifact_store.effective_uri("pvc://c/p", platform) == "pvc://c/p"
    assert artifact_store.effective_uri(None, settings.Settings()) == artifact_store.DEFAULT_URI
