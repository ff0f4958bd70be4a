"""The DriftMonitor operator, run by kopf for real against the Kubernetes API emulator over HTTP.

Real: kopf, the generic reconciler (operators/reconcile.py) with the monitor's children watched
(batch/v1 Jobs, TrainingRuns), the HTTP API (kmock, with uids, generations and GC), the check Job
and its ConfigMap as rendered, the challenger's creation, the Deployment patch, status and events.

Stand-ins, and why: no Job controller or kubelet runs here, so the test plays them: it reads the
check Job's ConfigMap, creates the Job's pod with the termination message `python -m
flywheel.drift` would write (precomputed figures; the real check runs in test_check_job.py and the
demo) and marks the Job Complete; likewise it patches the challenger TrainingRun's status for the
TrainingRun operator. The clock is injected through a controller shim (the same observe_refs and
plan, with `now` from the test), so the schedule and the cooldown move without waiting; a label on
the monitor wakes it (an update event) where the real one would wait for its requeue (the check
interval; 30 s while a decision awaits approval, which the plan test checks).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import types
from typing import Any

import kopf
import pytest

from flywheel.api import conditions
from flywheel.controllers import driftmonitor as dm
from flywheel.controllers import plans
from flywheel.kube import client, objects
from operators import _startup, reconcile
from operators import driftmonitor as operator
from tests.integration.operators import conftest

NS = conftest.NAMESPACE
RUNS = "flywheel.dev/v1alpha1/trainingruns"
MONITORS = "flywheel.dev/v1alpha1/driftmonitors"
DEPLOYMENTS = "flywheel.dev/v1alpha1/deployments"
JOBS = "batch/v1/jobs"
T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
COMMIT = "c" * 40

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "RETRY_BACKOFF", 0.3)
    # The manifests leave spec.artifacts at its default: on a cluster the chart's artifacts.uri fills it.
    monkeypatch.setenv("FLYWHEEL_ARTIFACTS_URI", "pvc://flywheel-artifacts")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now


def make_registry(clock: Clock) -> kopf.OperatorRegistry:
    """operators.driftmonitor.register, with the controller's clock injected (see the docstring)."""
    registry = kopf.OperatorRegistry()
    _startup.register(registry, login=kopf.login_with_kubeconfig)
    shim = types.SimpleNamespace(
        observe_refs=dm.observe_refs,
        validate=dm.validate,
        plan=lambda r, o, _now, s, model=None: dm.plan(r, o, clock(), s, model),
    )
    reconcile.register(shim, kind=operator.KIND, children=operator.CHILDREN, registry=registry)  # type: ignore[arg-type]
    return registry


async def call(method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
    return await asyncio.to_thread(client.request, method, path, body, content_type)


async def create(manifest: dict[str, Any]) -> dict[str, Any]:
    return await call("POST", client.manifest_path(manifest, collection=True), manifest)


async def patch(kind: str, name: str, body: dict[str, Any], sub: str | None = None) -> None:
    api_version = "batch/v1" if kind == "Job" else "flywheel.dev/v1alpha1"
    await call("PATCH", client.path(api_version, kind, NS, name, sub), body, objects.MERGE_PATCH)


def succeeded(name: str) -> dict[str, Any]:
    uri = f"file:///art/{NS}/trainingruns/{name}/model"
    return {"phase": "Succeeded", "data": {"commit": COMMIT},
            "model": {"version": f"{name}-v", "cardUri": f"{uri}/model_card.json"}}  # fmt: skip


async def seed(auto_promote: bool = True, **retrain: Any) -> dict[str, Any]:
    """The champion run (Succeeded), its Deployment serving it (status), and the monitor."""
    spec = {"data": {"repo": "https://git.example/d.git", "path": "data.csv"},
            "model": {"task": "classification", "target": "y"}}  # fmt: skip
    await create({"apiVersion": "flywheel.dev/v1alpha1", "kind": "TrainingRun",
                  "metadata": {"name": "champ", "namespace": NS}, "spec": spec})  # fmt: skip
    await patch("TrainingRun", "champ", {"status": succeeded("champ")}, "status")
    await create({"apiVersion": "flywheel.dev/v1alpha1", "kind": "Deployment",
                  "metadata": {"name": "svc", "namespace": NS}, "spec": {"champion": {"fromTrainingRun": "champ"}}})  # fmt: skip
    served = {"championUri": f"file:///art/{NS}/trainingruns/champ/model", "championVersion": "champ-v"}
    await patch("Deployment", "svc", {"status": served}, "status")
    template = {**spec, "data": {**spec["data"], "rev": "period-2"}}
    return await create({
        "apiVersion": "flywheel.dev/v1alpha1", "kind": "DriftMonitor", "metadata": {"name": "mon", "namespace": NS},
        "spec": {"deploymentRef": "svc", "schedule": {"intervalSeconds": 60},
                 "retrain": {"cooldownSeconds": 600, "template": template, **retrain},
                 "promotion": {"autoPromote": auto_promote, "metric": "accuracy"}},
    })  # fmt: skip


def live(em: Any, resource: str, name: str) -> dict[str, Any]:
    return next((o for o in em.live(resource, NS) if o["metadata"]["name"] == name), {})


def challengers(em: Any) -> list[str]:
    return sorted(
        o["metadata"]["name"] for o in em.live(RUNS, NS) if o["metadata"]["name"].startswith("mon-")
    )


def status(em: Any) -> dict[str, Any]:
    return live(em, MONITORS, "mon").get("status") or {}


def waiting_job(em: Any) -> str | None:
    """The check Job the monitor started that has not finished yet."""
    jobs = [j for j in em.live(JOBS, NS) if not (j.get("status") or {}).get("conditions")]
    return jobs[0]["metadata"]["name"] if jobs else None


def monitor_events(em: Any, reason: str) -> int:
    return sum(
        1 for e in em.live("v1/events", NS) if e["reason"] == reason and e["involvedObject"]["name"] == "mon"
    )


async def finish_job(
    em: Any,
    clock: Clock,
    drifted: bool = True,
    win: bool = True,
    fail: bool = False,
    found: dict[str, Any] | None = None,
) -> str:
    """Play the Job controller and the kubelet for the waiting check Job (see the docstring)."""
    name = await conftest.eventually(lambda: waiting_job(em), what="a check Job")
    config = json.loads(live(em, "v1/configmaps", name)["data"]["config.json"])
    result: dict[str, Any] = {"check": None, "note": None, "reason": None, "evaluations": []}
    if config["check"]:
        result["check"] = {"lastCheckTime": plans.now_rfc3339(clock.now), "rowsChecked": 1000,
                           "drifted": drifted, "datasetDriftShare": 0.7 if drifted else 0.1,
                           "driftedColumns": [], "reportUri": "file:///r", **(found or {})}  # fmt: skip
    for item in config["challengers"]:
        result["evaluations"].append({
            "challenger": item["name"], "decision": "promoted" if win else "rejected",
            "reason": "accuracy 0.8000 -> 0.9500", "metric": "accuracy", "championValue": 0.80,
            "challengerValue": 0.95 if win else 0.70, "championVersion": config["championVersion"],
            "challengerVersion": item["version"], "dataRev": item["dataRev"],
        })  # fmt: skip
    message = "" if fail else json.dumps(result)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{name}-x1", "namespace": NS, "labels": {"job-name": name}},
           "spec": {"containers": [{"name": "drift", "image": "i"}]}}  # fmt: skip
    await create(pod)
    terminated = {"exitCode": 1 if fail else 0, "message": message}
    pod_status = {"containerStatuses": [{"name": "drift", "state": {"terminated": terminated}}]}
    await call("PATCH", client.path("v1", "Pod", NS, pod["metadata"]["name"], "status"),
               {"status": pod_status}, objects.MERGE_PATCH)  # fmt: skip
    done = {
        "type": "Failed" if fail else "Complete",
        "status": "True",
        "lastTransitionTime": plans.now_rfc3339(clock.now),
        "message": "BackoffLimitExceeded" if fail else "",
    }
    await patch("Job", name, {"status": {"conditions": [done]}}, "status")
    return str(name)


async def wake(tick: int) -> None:
    """An update event on the monitor (what its requeue would do once the real time came)."""
    await patch("DriftMonitor", "mon", {"metadata": {"labels": {"test/tick": str(tick)}}})


async def test_check_job_challenger_promotion_and_a_rollback_that_holds_across_the_cooldown(
    emulator: Any,
) -> None:
    clock = Clock()
    async with conftest.running(make_registry(clock)):
        monitor = await seed()
        first = await finish_job(emulator, clock)
        job = live(emulator, JOBS, first)
        assert first == f"mon-check-{int(T0.timestamp()) // 60}"
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", "flywheel.drift"]
        assert container["image"].endswith("/drift:0.1.0")
        assert [r["uid"] for r in job["metadata"]["ownerReferences"]] == [monitor["metadata"]["uid"]]
        await conftest.eventually(lambda: challengers(emulator) == ["mon-1"], what="the challenger")
        assert live(emulator, RUNS, "mon-1")["spec"]["data"]["rev"] == "period-2"  # its trainer pins it
        # The challenger is applied before the monitor's status is written: wait for the write.
        await conftest.eventually(
            lambda: status(emulator).get("lastCheckTime") == plans.now_rfc3339(T0), what="lastCheckTime"
        )

        await patch("TrainingRun", "mon-1", {"status": succeeded("mon-1")}, "status")  # a watched child
        evaluation = await finish_job(emulator, clock)
        assert evaluation == "mon-eval-1"
        await conftest.eventually(
            lambda: (status(emulator).get("lastDecision") or {}).get("decision") == "promoted",
            what="promoted",
        )
        assert live(emulator, DEPLOYMENTS, "svc")["spec"]["champion"] == {"fromTrainingRun": "mon-1"}
        assert monitor_events(emulator, conditions.R_PROMOTED) == 1

        # A person rolls back (kubectl patch); the cooldown passes and the traffic still drifts.
        await patch("Deployment", "svc", {"spec": {"champion": {"fromTrainingRun": "champ"}}})
        clock.now = T0 + datetime.timedelta(seconds=700)
        await wake(1)
        await conftest.eventually(lambda: status(emulator).get("rollbackHold"), what="the rollback recorded")
        assert status(emulator)["rollbackHold"]["challenger"] == "mon-1"
        await finish_job(emulator, clock)  # the next window's check: drifted
        await conftest.eventually(lambda: challengers(emulator) == ["mon-1", "mon-2"], what="mon-2")
        await patch("TrainingRun", "mon-2", {"status": succeeded("mon-2")}, "status")  # same data commit
        await finish_job(emulator, clock)  # mon-2 wins...
        await conftest.eventually(
            lambda: status(emulator)["lastDecision"]["challenger"] == "mon-2", what="mon-2"
        )
        decision = status(emulator)["lastDecision"]
        assert decision["decision"] == "pending" and "was rolled back" in decision["reason"]
        assert live(emulator, DEPLOYMENTS, "svc")["spec"]["champion"] == {"fromTrainingRun": "champ"}
        promoted = plans.get_condition(status(emulator)["conditions"], "Promoted") or {}
        assert "mon-1 was rolled back" in promoted["message"]
        assert monitor_events(emulator, conditions.R_ROLLED_BACK) == 1

        # ...and is promoted only when a person approves it.
        await patch("DriftMonitor", "mon", {"metadata": {"annotations": {dm.ANNOTATION_APPROVE: "mon-2"}}})
        await wake(2)
        await conftest.eventually(
            lambda: status(emulator)["lastDecision"]["decision"] == "promoted", what="the approval"
        )
    assert live(emulator, DEPLOYMENTS, "svc")["spec"]["champion"] == {"fromTrainingRun": "mon-2"}
    assert len(emulator.live(JOBS, NS)) == 1  # each new Job removed the one whose outcome was read


async def test_a_failed_check_job_is_said_and_the_next_window_checks_again(emulator: Any) -> None:
    clock = Clock()
    async with conftest.running(make_registry(clock)):
        await seed()
        first = await finish_job(emulator, clock, fail=True)
        await conftest.eventually(
            lambda: (
                (plans.get_condition(status(emulator).get("conditions"), "DriftDetected") or {}).get("reason")
                == conditions.R_CHECK_FAILED
            ),
            what="CheckFailed",
        )
        drift = plans.get_condition(status(emulator)["conditions"], "DriftDetected") or {}
        assert first in drift["message"] and drift["status"] == "Unknown"
        assert challengers(emulator) == []
        clock.now = T0 + datetime.timedelta(seconds=61)
        await wake(1)
        drift = plans.get_condition(status(emulator)["conditions"], "DriftDetected") or {}
        assert drift["reason"] == conditions.R_CHECK_FAILED  # still said after later reconciles
        second = await finish_job(emulator, clock, drifted=False)
        assert second != first
        await conftest.eventually(lambda: status(emulator).get("drifted") is False, what="the second check")
    assert challengers(emulator) == []


async def test_a_performance_drop_fine_tunes_the_champion_named_on_the_challenger(emulator: Any) -> None:
    """The check finds no feature drift but a drop on labelled traffic; the monitor acts on the
    trigger it was given, fine-tuning from the champion the Deployment serves."""
    clock = Clock()
    drop = {
        "triggers": ["performanceDrop"],
        "performance": {"metric": "accuracy", "labels": 400, "unknownLabels": 0,
                        "baseline": {"version": "champ-v", "value": 0.99, "low": 0.98, "high": 0.995, "rows": 800},
                        "versions": [{"version": "champ-v", "value": 0.84, "low": 0.80, "high": 0.87, "rows": 400}],
                        "dropped": "0.8400 [0.8000, 0.8700] on 400 rows against the baseline"},
        "predictionDrift": {"method": "jensenshannon", "distance": 0.01, "threshold": 0.1, "drifted": False},
    }  # fmt: skip
    async with conftest.running(make_registry(clock)):
        await seed(triggers=["featureDrift", "performanceDrop"], mode="fineTune")
        await finish_job(emulator, clock, drifted=False, found=drop)
        await conftest.eventually(lambda: challengers(emulator) == ["mon-1"], what="the challenger")
        run = live(emulator, RUNS, "mon-1")
        assert run["metadata"]["annotations"][dm.ANNOTATION_TRIGGER] == "performanceDrop"
        assert run["metadata"]["annotations"][dm.ANNOTATION_RETRAIN_MODE] == "fineTune"
        assert run["spec"]["model"]["initFrom"] == f"file:///art/{NS}/trainingruns/champ/model"
        await conftest.eventually(
            lambda: status(emulator).get("retrain", {}).get("lastTrigger"), what="status"
        )
        assert status(emulator)["performance"]["versions"][0]["rows"] == 400  # kept by the CRD's schema
        assert status(emulator)["triggers"] == ["performanceDrop"]
        assert monitor_events(emulator, conditions.R_PERFORMANCE_DROPPED) == 1
