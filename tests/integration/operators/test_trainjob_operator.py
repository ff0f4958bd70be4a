"""spec.launcher: TrainJob, run by kopf for real against the Kubernetes API emulator over HTTP.

Kubeflow Trainer v2 (its controller, JobSet, the Job controller and the kubelet) cannot run here:
the tests stand in for them, the only mocked parties. They patch the TrainJob's status with the
v2.3 conditions (Created, Suspended, Complete, Failed) and jobsStatus counts, and create the node
pods the way JobSet's indexed Jobs name and label them (`<job>-node-0-<index>-<random>`, labels
jobset-name, replicatedjob-name, job-index, job-completion-index), with rank 0's termination
message. The operator finds rank 0 by those labels (the emulator answers label selectors). The
TrainJob the operator stored is checked against the vendored upstream TrainJob CRD.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kopf
import pytest

from flywheel.controllers import trainjob
from operators import _startup, reconcile
from operators import selfplayrun as selfplayrun_operator
from operators import trainingrun as trainingrun_operator
from tests.integration.operators import conftest
from tests.integration.operators import test_selfplayrun_operator as sp_tests
from tests.integration.operators import test_trainingrun_operator as tr_tests
from tests.unit.controllers import upstream_trainjob

NS = conftest.NAMESPACE
TRAINJOBS = "trainer.kubeflow.org/v1alpha1/trainjobs"
PYTORCHJOBS = tr_tests.JOBS
API = trainjob.API_VERSION

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "RETRY_BACKOFF", 0.3)
    # The manifests leave spec.artifacts at its default: on a cluster the chart's artifacts.uri fills it.
    monkeypatch.setenv("FLYWHEEL_ARTIFACTS_URI", "pvc://flywheel-artifacts")


def make_registry(*operators: Any) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    _startup.register(registry, login=kopf.login_with_kubeconfig)
    for operator in operators or (trainingrun_operator,):
        operator.register(registry)
    return registry


def run_manifest(name: str = "iris", **spec: Any) -> dict[str, Any]:
    manifest = tr_tests.run_manifest(name)
    manifest["spec"].update(launcher="TrainJob", **spec)
    return manifest


cond, jobs = upstream_trainjob.cond, upstream_trainjob.jobs_status


async def node_pod(job: str, index: int, suffix: str, message: str | None = None, exit_code: int = 0) -> None:
    """A node pod as JobSet's indexed Job creates it; `message`: it ended with that termination message."""
    name = f"{job}-node-0-{index}-{suffix}"
    labels = {trainjob.LABEL_JOBSET: job, trainjob.LABEL_REPLICATED_JOB: "node",
              trainjob.LABEL_JOB_INDEX: "0", trainjob.LABEL_COMPLETION_INDEX: str(index)}  # fmt: skip
    await tr_tests.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": labels},
                           "spec": {"containers": [{"name": "node", "image": "trainer"}]}})  # fmt: skip
    if message is not None:
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "message": message,
        }
        status = {"phase": "Succeeded" if exit_code == 0 else "Failed",
                  "containerStatuses": [{"name": "node", "state": {"terminated": terminated}}]}  # fmt: skip
        await tr_tests.patch_status("v1", "Pod", name, status)


async def job_status(name: str, conditions: list[dict[str, Any]], **counts: int) -> None:
    status: dict[str, Any] = {"conditions": conditions}
    if counts:
        status["jobsStatus"] = jobs(**counts)
    await tr_tests.patch_status(API, trainjob.KIND, name, status)


async def test_trainjob_moves_the_run_through_created_running_to_succeeded(emulator: Any) -> None:
    async with conftest.running(make_registry()):
        run = await tr_tests.create(run_manifest(resources={"replicas": 2}))
        await conftest.eventually(lambda: emulator.live(TRAINJOBS, NS), what="the TrainJob")
        (job,) = emulator.live(TRAINJOBS, NS)
        assert upstream_trainjob.trainjob_errors({k: v for k, v in job.items() if k != "status"}) == []
        assert job["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
        assert job["spec"]["trainer"]["numNodes"] == 2 and emulator.live(PYTORCHJOBS, NS) == []
        assert [m["metadata"]["name"] for m in emulator.live(tr_tests.CONFIGMAPS, NS)] == ["iris-config"]
        await job_status("iris", [cond("Created")])
        await conftest.eventually(
            lambda: tr_tests.ready(emulator).get("reason") == "JobCreated", what="JobCreated"
        )
        await job_status("iris", [cond("Created")], active=2, ready=2)
        await conftest.eventually(
            lambda: tr_tests.run_status(emulator).get("phase") == "Running", what="Running"
        )
        # Rank 0 of a first attempt failed and JobSet restarted the job: the newest pod has the result.
        await node_pod(
            "iris", 0, "aaaaa", json.dumps({"phase": "Failed", "message": "NCCL timeout"}), exit_code=1
        )
        await asyncio.sleep(1.1)  # creationTimestamp has 1 s resolution: the retry's pods are newer
        await node_pod("iris", 1, "bbbbb", json.dumps({"phase": "Failed", "message": "rank 1 is not rank 0"}))
        await node_pod("iris", 0, "ccccc")
        summary = {"phase": "Succeeded", "metrics": {"accuracy": 0.97}}
        terminated = {"exitCode": 0, "reason": "Completed", "message": json.dumps(summary)}
        await tr_tests.patch_status("v1", "Pod", "iris-node-0-0-ccccc",
                                    {"phase": "Succeeded", "containerStatuses": [{"name": "node", "state": {"terminated": terminated}}]})  # fmt: skip
        await job_status("iris", [cond("Created"), cond("Complete")], succeeded=2)
        await conftest.eventually(
            lambda: tr_tests.run_status(emulator).get("phase") == "Succeeded", what="Succeeded"
        )
    status = tr_tests.run_status(emulator)
    assert status["metrics"] == {"accuracy": 0.97} and status["jobName"] == "iris"
    assert tr_tests.ready(emulator)["status"] == "True"
    reasons = {
        e["reason"]
        for e in emulator.live("v1/events", NS)
        if e.get("source", {}).get("component") == "flywheel-operator"
    }
    assert {"CreatingJob", "JobRunning", "Succeeded"} <= reasons


async def test_trainjob_failed_marks_the_run_failed_with_rank0s_message(emulator: Any) -> None:
    async with conftest.running(make_registry()):
        await tr_tests.create(run_manifest())
        await conftest.eventually(lambda: emulator.live(TRAINJOBS, NS), what="the TrainJob")
        await job_status("iris", [cond("Created"), cond("Suspended")])
        await conftest.eventually(
            lambda: tr_tests.run_status(emulator).get("phase") == "Suspended", what="Suspended"
        )
        await node_pod(
            "iris",
            0,
            "xyzab",
            json.dumps({"phase": "Failed", "message": "out of memory in epoch 3"}),
            exit_code=1,
        )
        await job_status(
            "iris",
            [cond("Created"), cond("Suspended", "False"), cond("Failed", message="JobSet failed")],
            failed=1,
        )
        await conftest.eventually(
            lambda: tr_tests.run_status(emulator).get("phase") == "Failed", what="Failed"
        )
    ready = tr_tests.ready(emulator)
    assert (ready["status"], ready["reason"]) == ("False", "Failed")
    assert "out of memory in epoch 3" in ready["message"]


async def test_a_field_trainjob_cannot_express_is_refused_with_nothing_created(emulator: Any) -> None:
    async with conftest.running(make_registry()):
        await tr_tests.create(run_manifest(scheduling={"priorityClassName": "urgent"}))
        await conftest.eventually(
            lambda: tr_tests.ready(emulator).get("reason") == "InvalidSpec", what="InvalidSpec"
        )
    message = tr_tests.ready(emulator)["message"]
    assert "scheduling.priorityClassName" in message and "launcher: PyTorchJob" in message
    assert emulator.live(TRAINJOBS, NS) == [] and emulator.live(tr_tests.CONFIGMAPS, NS) == []


async def test_selfplayrun_runs_as_a_fenced_trainjob(emulator: Any) -> None:
    manifest = sp_tests.manifest()
    manifest["spec"]["launcher"] = "TrainJob"
    async with conftest.running(make_registry(selfplayrun_operator)):
        await tr_tests.create(manifest)
        await conftest.eventually(lambda: emulator.live(TRAINJOBS, NS), what="the TrainJob")
        (job,) = emulator.live(TRAINJOBS, NS)
        (policy,) = emulator.live(sp_tests.POLICIES, NS)
        patch = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][
            0
        ]
        pod_labels = patch["template"]["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()  # the fence holds
        result = {"phase": "Succeeded", "message": "self-play finished", "step": sp_tests.TOTAL}
        await node_pod("azr-tiny", 0, "qwert", json.dumps(result))
        await job_status("azr-tiny", [cond("Created"), cond("Complete")], succeeded=1)
        await conftest.eventually(
            lambda: sp_tests.run_status(emulator).get("phase") == "Succeeded", what="Succeeded"
        )
    assert sp_tests.run_status(emulator)["step"] == sp_tests.TOTAL
