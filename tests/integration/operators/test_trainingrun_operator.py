"""The TrainingRun operator, run by kopf for real against the Kubernetes API emulator over HTTP.

The operator's event loop runs on fake time (conftest.running): its requeues and retry backoffs
keep their real delays and fire as soon as it idles, and a test's short real wait for "nothing
more happens" covers minutes of the operator's time. The Kubeflow Training Operator does not run
here: tests patch the PyTorchJob's status and create
its Master pod themselves, standing in for it (that is the only mocked party). Garbage collection
is emulated by the fixture (see kube_emulator), so the deletion test proves that every child
carries an owner reference to the run's uid and that the operator does not re-create anything
after the run is gone; it does not prove Kubernetes' GC itself.
"""

from __future__ import annotations

import asyncio
import copy
import json
import pathlib
from typing import Any

import kopf
import pytest
import yaml

from flywheel.controllers import trainingrun
from flywheel.kube import client, objects
from operators import _startup, reconcile
from operators import trainingrun as trainingrun_operator
from tests.integration.operators import conftest

JOBS = "kubeflow.org/v1/pytorchjobs"
RUNS = "flywheel.dev/v1alpha1/trainingruns"
CONFIGMAPS = "v1/configmaps"
NS = conftest.NAMESPACE

pytestmark = pytest.mark.timeout(60)


def make_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    _startup.register(registry, login=kopf.login_with_kubeconfig)  # reads $KUBECONFIG as the fixture set it
    trainingrun_operator.register(registry)
    return registry


EXAMPLE = yaml.safe_load(
    (pathlib.Path(__file__).parents[3] / "examples/trainingrun-minimal.yaml").read_text()
)


def run_manifest(name: str = "iris", **training: Any) -> dict[str, Any]:
    """examples/trainingrun-minimal.yaml, renamed, with spec.training overrides."""
    manifest = copy.deepcopy(EXAMPLE)
    manifest["metadata"] = {"name": name, "namespace": NS}
    manifest["spec"]["training"] = {**manifest["spec"].get("training", {}), **training}
    return manifest


async def call(method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
    """A client request from the test, off the event loop the emulator and kopf run on."""
    return await asyncio.to_thread(client.request, method, path, body, content_type)


async def create(manifest: dict[str, Any]) -> dict[str, Any]:
    return await call("POST", client.manifest_path(manifest, collection=True), manifest)


async def patch_status(api_version: str, kind: str, name: str, status: dict[str, Any]) -> None:
    path = client.path(api_version, kind, NS, name, "status")
    await call("PATCH", path, {"status": status}, objects.MERGE_PATCH)


def job_condition(type_: str) -> dict[str, Any]:
    return {"conditions": [{"type": type_, "status": "True", "reason": f"PyTorchJob{type_}"}]}


def run_status(em: Any, name: str = "iris") -> dict[str, Any]:
    runs = [r for r in em.live(RUNS, NS) if r["metadata"]["name"] == name]
    return (runs[0].get("status") or {}) if runs else {}


def ready(em: Any, name: str = "iris") -> dict[str, Any]:
    return next((c for c in run_status(em, name).get("conditions", []) if c["type"] == "Ready"), {})


async def test_apply_creates_one_job_with_owner_reference_and_config_map(emulator: Any) -> None:
    async with conftest.running(make_registry(), fake_time=True):
        run = await create(run_manifest())
        await conftest.eventually(lambda: ready(emulator).get("reason") == "JobCreated", what="JobCreated")
    jobs, maps = emulator.live(JOBS, NS), emulator.live(CONFIGMAPS, NS)
    assert [j["metadata"]["name"] for j in jobs] == ["iris"]
    assert [m["metadata"]["name"] for m in maps] == ["iris-config"]
    for child in (jobs[0], maps[0]):
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner == {"apiVersion": "flywheel.dev/v1alpha1", "kind": "TrainingRun", "name": "iris",
                         "uid": run["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}  # fmt: skip
    status = run_status(emulator)
    assert status["observedGeneration"] == 1
    assert ready(emulator)["status"] == "Unknown"  # kstatus: in progress
    # kopf's bookkeeping went to flywheel.dev/ annotations, none of it into status
    annotations = emulator.live(RUNS, NS)[0]["metadata"].get("annotations", {})
    assert all(k.startswith("flywheel.dev/") for k in annotations)
    assert "reconcile-trainingrun" not in status and status["phase"] == "Pending"


async def test_job_status_moves_run_through_running_to_succeeded_with_metrics(emulator: Any) -> None:
    async with conftest.running(make_registry(), fake_time=True):
        await create(run_manifest())
        await conftest.eventually(lambda: emulator.live(JOBS, NS), what="the PyTorchJob")
        await patch_status("kubeflow.org/v1", "PyTorchJob", "iris", job_condition("Running"))
        await conftest.eventually(lambda: run_status(emulator).get("phase") == "Running", what="Running")
        # The Training Operator's Master pod ends and leaves rank 0's summary as termination message.
        await create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "iris-master-0", "namespace": NS},
                      "spec": {"containers": [{"name": "pytorch", "image": "trainer"}]}})  # fmt: skip
        summary = json.dumps({"phase": "Succeeded", "metrics": {"accuracy": 0.93}})
        terminated = {"exitCode": 0, "reason": "Completed", "message": summary}
        await patch_status("v1", "Pod", "iris-master-0",
                           {"phase": "Succeeded", "containerStatuses": [{"name": "pytorch", "state": {"terminated": terminated}}]})  # fmt: skip
        await patch_status("kubeflow.org/v1", "PyTorchJob", "iris", job_condition("Succeeded"))
        await conftest.eventually(lambda: run_status(emulator).get("phase") == "Succeeded", what="Succeeded")
    assert run_status(emulator)["metrics"] == {"accuracy": 0.93}
    assert ready(emulator)["status"] == "True"
    reasons = [
        e["reason"]
        for e in emulator.live("v1/events", NS)
        if e.get("source", {}).get("component") == "flywheel-operator"
    ]
    assert {"CreatingJob", "JobRunning", "Succeeded"} <= set(reasons)


async def test_job_failure_marks_run_failed(emulator: Any) -> None:
    async with conftest.running(make_registry(), fake_time=True):
        await create(run_manifest())
        await conftest.eventually(lambda: emulator.live(JOBS, NS), what="the PyTorchJob")
        await patch_status("kubeflow.org/v1", "PyTorchJob", "iris", job_condition("Failed"))
        await conftest.eventually(lambda: run_status(emulator).get("phase") == "Failed", what="Failed")
    assert ready(emulator)["status"] == "False"
    assert ready(emulator)["reason"] == "Failed"


async def test_invalid_spec_ends_ready_false_with_reason_and_no_children(emulator: Any) -> None:
    async with conftest.running(make_registry(), fake_time=True):
        await create(run_manifest(epochs=0))  # the CRD schema says minimum 1; the emulator has no schema
        await conftest.eventually(lambda: ready(emulator).get("reason") == "InvalidSpec", what="InvalidSpec")
        await asyncio.sleep(0.3)  # kopf records the permanent failure in its annotations
        writes = len(emulator.writes())
        await asyncio.sleep(0.5)  # a permanent error is not retried: no more writes
        assert len(emulator.writes()) == writes
    assert ready(emulator)["status"] == "False"
    assert "training.epochs" in ready(emulator)["message"]
    assert emulator.live(JOBS, NS) == []


async def test_reconciling_twice_writes_nothing(emulator: Any) -> None:
    async with conftest.running(make_registry(), fake_time=True):
        await create(run_manifest())
        await conftest.eventually(lambda: ready(emulator).get("reason") == "JobCreated", what="JobCreated")
        await asyncio.sleep(0.3)  # let the child's ADDED event re-reconcile, too
    before = len(emulator.writes())
    run = emulator.live(RUNS, NS)[0]
    settings = reconcile.settings_mod.Settings()
    _, outcome = await asyncio.to_thread(reconcile.reconcile_once, trainingrun, run, settings)
    assert outcome.writes == []
    async with conftest.running(
        make_registry(), fake_time=True
    ):  # a restart resumes every run: still nothing to do
        await asyncio.sleep(0.5)
    assert [(r.method, str(r.url.path)) for r in emulator.writes()[before:]] == []


async def test_operator_killed_midway_and_restarted_creates_no_duplicate(emulator: Any) -> None:
    emulator.fail("POST", "pytorchjobs", times=100)  # the API falls over after the ConfigMap
    async with conftest.running(make_registry(), fake_time=True):
        await create(run_manifest())
        await conftest.eventually(lambda: emulator.live(CONFIGMAPS, NS), what="the ConfigMap")
    assert emulator.live(JOBS, NS) == []  # killed (stopped) midway: ConfigMap written, job not
    emulator.fail("POST", "pytorchjobs", times=0)
    emulator._faults.clear()
    async with conftest.running(make_registry(), fake_time=True):
        await conftest.eventually(lambda: ready(emulator).get("reason") == "JobCreated", what="JobCreated")
        async with conftest.running(
            make_registry(), fake_time=True
        ):  # and a second replica racing it, for good measure
            await asyncio.sleep(0.3)
    assert len(emulator.live(JOBS, NS)) == 1
    assert len(emulator.live(CONFIGMAPS, NS)) == 1
    posts = [
        r
        for r in emulator.writes()
        if r.method == "POST" and r.resource and r.resource.plural == "configmaps"
    ]
    assert len(posts) == 1  # the restart saw the ConfigMap and did not even try again


async def test_an_event_whose_post_failed_is_sent_again_before_the_status_says_so(emulator: Any) -> None:
    """Events are derived from the status transition, so the status is written only after them:
    when the event POST fails (or the process dies there), the retry re-plans the same transition
    and sends the event; the status written first would have lost it (the retry saw no transition).
    The retry sees the job it created, so the transition it announces is to JobCreated."""
    emulator.fail("POST", "events", times=1)

    def announced() -> list[str]:
        return [e["reason"] for e in emulator.live("v1/events", NS) if e["involvedObject"]["name"] == "iris"]

    async with conftest.running(make_registry(), fake_time=True):
        await create(run_manifest())
        await conftest.eventually(lambda: ready(emulator).get("reason") == "JobCreated", what="JobCreated")
        await conftest.eventually(announced, what="an event for the run")
        await asyncio.sleep(0.3)
    assert announced() == ["JobCreated"]


async def test_deleting_the_run_leaves_nothing_behind(emulator: Any) -> None:
    async with conftest.running(make_registry(), fake_time=True):
        await create(run_manifest())
        await conftest.eventually(lambda: ready(emulator).get("reason") == "JobCreated", what="JobCreated")
        await call("DELETE", client.path("flywheel.dev/v1alpha1", "TrainingRun", NS, "iris"))
        await conftest.eventually(lambda: not emulator.live(RUNS, NS), what="the run gone")
        await asyncio.sleep(0.3)  # a late child event or requeue must not re-create anything
    assert emulator.live(JOBS, NS) == []
    assert emulator.live(CONFIGMAPS, NS) == []


def condition(em: Any, type_: str, name: str = "iris") -> dict[str, Any]:
    return next((c for c in run_status(em, name).get("conditions", []) if c["type"] == type_), {})


async def edit_spec(**training: Any) -> None:
    """`kubectl edit`: a merge patch of spec.training (the emulator bumps the generation; it has no
    CRD schema, so the CEL rule that refuses this on a real API server does not run here)."""
    path = client.path("flywheel.dev/v1alpha1", "TrainingRun", NS, "iris")
    await call("PATCH", path, {"spec": {"training": training}}, objects.MERGE_PATCH)


async def test_spec_edit_after_start_stalls_until_put_back_and_a_finished_run_stays_succeeded(
    emulator: Any,
) -> None:
    epochs = run_manifest()["spec"]["training"].get("epochs", 3)
    async with conftest.running(make_registry(), fake_time=True):
        await create(run_manifest(epochs=epochs))
        await conftest.eventually(lambda: emulator.live(JOBS, NS), what="the PyTorchJob")
        await patch_status("kubeflow.org/v1", "PyTorchJob", "iris", job_condition("Running"))
        await conftest.eventually(lambda: run_status(emulator).get("phase") == "Running", what="Running")

        await edit_spec(epochs=epochs + 10)
        await conftest.eventually(
            lambda: condition(emulator, "Stalled").get("status") == "True", what="Stalled after the edit"
        )
        assert ready(emulator)["reason"] == "SpecChangedAfterStart"
        assert condition(emulator, "SpecDiverged")["status"] == "True"
        await edit_spec(epochs=epochs)  # put back: the generation moved on twice, the spec did not
        await conftest.eventually(
            lambda: condition(emulator, "Stalled").get("status") == "False", what="the stall cleared"
        )
        assert condition(emulator, "SpecDiverged")["status"] == "False"
        assert run_status(emulator)["phase"] == "Running"

        await create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "iris-master-0", "namespace": NS},
                      "spec": {"containers": [{"name": "pytorch", "image": "trainer"}]}})  # fmt: skip
        terminated = {"exitCode": 0, "reason": "Completed", "message": json.dumps({"phase": "Succeeded"})}
        await patch_status("v1", "Pod", "iris-master-0",
                           {"phase": "Succeeded", "containerStatuses": [{"name": "pytorch", "state": {"terminated": terminated}}]})  # fmt: skip
        await patch_status("kubeflow.org/v1", "PyTorchJob", "iris", job_condition("Succeeded"))
        await conftest.eventually(lambda: run_status(emulator).get("phase") == "Succeeded", what="Succeeded")

        await edit_spec(epochs=epochs + 20)
        await conftest.eventually(
            lambda: condition(emulator, "SpecDiverged").get("status") == "True", what="SpecDiverged"
        )
    status = run_status(emulator)
    generation = emulator.live(RUNS, NS)[0]["metadata"]["generation"]
    # kstatus Current (and Healthy to the Argo CD check): the model it trained is still the result.
    assert (status["phase"], status["observedGeneration"]) == ("Succeeded", generation)
    assert [condition(emulator, t)["status"] for t in ("Ready", "Reconciling", "Stalled")] == [
        "True",
        "False",
        "False",
    ]
    warnings = [e for e in emulator.live("v1/events", NS) if e["reason"] == "SpecChangedAfterStart"]
    assert len(warnings) == 2 and {e["type"] for e in warnings} == {
        "Warning"
    }  # the running edit, the finished one
