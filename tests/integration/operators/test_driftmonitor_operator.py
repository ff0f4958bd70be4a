"""The DriftMonitor operator, run by kopf for real against the Kubernetes API emulator over HTTP.

Real: kopf, its handlers and timer, the HTTP API (kmock, with uids, generations and GC), the
challenger's creation, the Deployment patch, status and events, and `git ls-remote` resolving the
template's tag to its commit in a real local git repository.

Injected, and why: the drift check and the evaluation verdict come from a precomputed
loop.Analysis (the real Evidently path and scoring are drift-core's tests and the demo's); the
challenger TrainingRun's status is patched by the test, standing in for the TrainingRun operator
and the Kubeflow Training Operator, which do not run here; the clock is injected so the schedule
and the cooldown move without waiting.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

import kopf
import pytest

from flywheel.controllers import driftmonitor as dm
from flywheel.controllers import driftmonitor_claims as claims
from flywheel.controllers import plans
from flywheel.drift import decide, loop
from flywheel.kube import client, objects
from operators import _startup, reconcile
from operators import driftmonitor as operator
from tests.integration.operators import conftest

NS = conftest.NAMESPACE
RUNS = "flywheel.dev/v1alpha1/trainingruns"
MONITORS = "flywheel.dev/v1alpha1/driftmonitors"
DEPLOYMENTS = "flywheel.dev/v1alpha1/deployments"
T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "RETRY_BACKOFF", 0.3)
    monkeypatch.setattr(reconcile, "KOPF_BACKOFF", 0.3)  # DriftMonitor's steps still retry through kopf


@pytest.fixture(scope="module")
def data_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A real git repository with a tag `period-2`: (path, the tag's commit)."""
    root = tmp_path_factory.mktemp("data-repo")
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True,
                              env={**env, "PATH": "/usr/bin:/bin"}).stdout.strip()  # fmt: skip

    git("init", "-q", "-b", "main")
    (root / "data.csv.dvc").write_text("outs:\n- md5: 0\n  path: data.csv\n")
    git("add", ".")
    git("commit", "-q", "-m", "period 2")
    git("tag", "-a", "period-2", "-m", "period 2")  # annotated: ls-remote must peel it
    return str(root), git("rev-parse", "HEAD")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now


class Injected:
    """Precomputed check and verdict (see the module docstring); counts what it was asked."""

    def __init__(self, drifted: bool = True, win: bool = True) -> None:
        self.drifted, self.win = drifted, win
        self.checks = 0
        self.evaluations = 0

    def check(self, monitor: Any, champion_dir: Path, sink: str, now: datetime.datetime) -> loop.CheckOutcome:
        self.checks += 1
        status = {"lastCheckTime": plans.now_rfc3339(now), "rowsChecked": 1000, "drifted": self.drifted,
                  "datasetDriftShare": 0.7 if self.drifted else 0.1, "driftedColumns": [], "reportUri": "file:///r"}  # fmt: skip
        return loop.CheckOutcome(status)

    def evaluate(self, monitor: Any, champion_dir: Path, challenger_dir: Path, target: str, sink: str,
                 now: datetime.datetime) -> loop.EvaluationOutcome:  # fmt: skip
        self.evaluations += 1
        comparison = decide.Comparison.of("accuracy", 0.80, 0.95 if self.win else 0.70, 500)
        return loop.EvaluationOutcome(comparison, decide.decide(monitor.spec.promotion, comparison, None))


def make_registry(analysis: Injected, clock: Clock) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    _startup.register(registry, login=kopf.login_with_kubeconfig)
    operator.register(registry, analysis=analysis, clock=clock, timer_seconds=0.2)
    return registry


async def call(method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
    return await asyncio.to_thread(client.request, method, path, body, content_type)


async def create(manifest: dict[str, Any]) -> dict[str, Any]:
    return await call("POST", client.manifest_path(manifest, collection=True), manifest)


async def patch_status(kind: str, name: str, status: dict[str, Any]) -> None:
    path = client.path("flywheel.dev/v1alpha1", kind, NS, name, "status")
    await call("PATCH", path, {"status": status}, objects.MERGE_PATCH)


def succeeded(name: str) -> dict[str, Any]:
    uri = f"file:///art/{NS}/trainingruns/{name}/model"
    return {"phase": "Succeeded", "data": {"commit": "c" * 40},
            "model": {"version": f"{name}-v", "cardUri": f"{uri}/model_card.json"}}  # fmt: skip


async def seed(repo: str, auto_promote: bool = True) -> dict[str, Any]:
    """The champion run (Succeeded), its Deployment, and the monitor."""
    spec = {"data": {"repo": repo, "path": "data.csv"}, "model": {"task": "classification", "target": "y"}}
    await create({"apiVersion": "flywheel.dev/v1alpha1", "kind": "TrainingRun",
                  "metadata": {"name": "champ", "namespace": NS}, "spec": spec})  # fmt: skip
    await patch_status("TrainingRun", "champ", succeeded("champ"))
    await create({"apiVersion": "flywheel.dev/v1alpha1", "kind": "Deployment",
                  "metadata": {"name": "svc", "namespace": NS}, "spec": {"champion": {"fromTrainingRun": "champ"}}})  # fmt: skip
    template = {**spec, "data": {**spec["data"], "rev": "period-2"}}
    return await create({
        "apiVersion": "flywheel.dev/v1alpha1", "kind": "DriftMonitor", "metadata": {"name": "mon", "namespace": NS},
        "spec": {"deploymentRef": "svc", "schedule": {"intervalSeconds": 60},
                 "retrain": {"cooldownSeconds": 600, "template": template},
                 "promotion": {"autoPromote": auto_promote}},
    })  # fmt: skip


def live(em: Any, resource: str, name: str) -> dict[str, Any]:
    return next((o for o in em.live(resource, NS) if o["metadata"]["name"] == name), {})


def challengers(em: Any) -> list[str]:
    return sorted(
        o["metadata"]["name"] for o in em.live(RUNS, NS) if o["metadata"]["name"].startswith("mon-")
    )


def status(em: Any) -> dict[str, Any]:
    return live(em, MONITORS, "mon").get("status") or {}


def deployment_patches(em: Any) -> int:
    return sum(
        1 for r in em.writes() if r.method == "PATCH" and r.resource and r.resource.plural == "deployments"
    )


def monitor_events(em: Any, reason: str) -> int:
    return sum(
        1 for e in em.live("v1/events", NS) if e["reason"] == reason and e["involvedObject"]["name"] == "mon"
    )


async def test_drift_creates_one_pinned_owned_challenger_and_the_cooldown_holds(
    emulator: Any, data_repo: Any
) -> None:
    repo, commit = data_repo
    analysis, clock = Injected(), Clock()
    async with conftest.running(make_registry(analysis, clock)):
        monitor = await seed(repo)
        await conftest.eventually(lambda: challengers(emulator), what="the challenger")
        await asyncio.sleep(0.6)  # timer ticks and child events: still one challenger
        assert challengers(emulator) == ["mon-1"]
        run = live(emulator, RUNS, "mon-1")
        assert run["spec"]["data"]["rev"] == commit  # `git ls-remote` peeled the annotated tag
        (owner,) = run["metadata"]["ownerReferences"]
        assert owner["uid"] == monitor["metadata"]["uid"] and owner["kind"] == "DriftMonitor"
        assert status(emulator)["retrain"]["active"] == ["mon-1"]
        await patch_status("TrainingRun", "mon-1", {"phase": "Failed", "message": "OOMKilled"})
        await conftest.eventually(lambda: status(emulator).get("lastDecision"), what="the failure recorded")
        assert status(emulator)["lastDecision"]["decision"] == "rejected"
        clock.now = T0 + datetime.timedelta(seconds=120)  # the next check is due; the cooldown is not over
        await conftest.eventually(lambda: analysis.checks >= 2, what="the second check")
        await asyncio.sleep(0.4)
        assert challengers(emulator) == ["mon-1"]
        clock.now = T0 + datetime.timedelta(seconds=700)  # cooled down, and a fresh drifted check
        await conftest.eventually(lambda: challengers(emulator) == ["mon-1", "mon-2"], what="mon-2")
    assert deployment_patches(emulator) == 0


@pytest.mark.parametrize("win", [True, False])
async def test_succeeded_challenger_is_decided_once(emulator: Any, data_repo: Any, win: bool) -> None:
    analysis, clock = Injected(win=win), Clock()
    async with conftest.running(make_registry(analysis, clock)):
        await seed(data_repo[0])
        await conftest.eventually(lambda: challengers(emulator), what="the challenger")
        await patch_status("TrainingRun", "mon-1", succeeded("mon-1"))
        await conftest.eventually(lambda: status(emulator).get("lastDecision"), what="the decision")
        await asyncio.sleep(0.6)  # more ticks and events: nothing more is decided or patched
    decision = status(emulator)["lastDecision"]
    champion = live(emulator, DEPLOYMENTS, "svc")["spec"]["champion"]
    assert analysis.evaluations == 1
    if win:
        assert decision["decision"] == "promoted" and champion == {"fromTrainingRun": "mon-1"}
        assert deployment_patches(emulator) == 1
        assert status(emulator)["rollbackTarget"] == "trainingrun/champ"
        assert monitor_events(emulator, dm.R_PROMOTED) == 1
        # Served now: deleting the monitor must not garbage-collect it.
        assert "ownerReferences" not in live(emulator, RUNS, "mon-1")["metadata"]
    else:
        assert decision["decision"] == "rejected" and champion == {"fromTrainingRun": "champ"}
        assert deployment_patches(emulator) == 0
        assert monitor_events(emulator, dm.R_REJECTED) == 1
        assert [r["name"] for r in live(emulator, RUNS, "mon-1")["metadata"]["ownerReferences"]] == ["mon"]
    assert (decision["championValue"], decision["challengerValue"]) == (0.80, 0.95 if win else 0.70)
    assert decision["challengerVersion"] == "mon-1-v" and decision["championVersion"] == "champ-v"


async def test_a_pending_win_is_promoted_when_the_monitor_is_annotated(emulator: Any, data_repo: Any) -> None:
    """`kubectl annotate driftmonitor mon flywheel.dev/approve=mon-1`: an update event, one step."""
    analysis, clock = Injected(), Clock()
    async with conftest.running(make_registry(analysis, clock)):
        await seed(data_repo[0], auto_promote=False)
        await conftest.eventually(lambda: challengers(emulator), what="the challenger")
        await patch_status("TrainingRun", "mon-1", succeeded("mon-1"))
        await conftest.eventually(lambda: status(emulator).get("lastDecision"), what="the decision")
        assert status(emulator)["lastDecision"]["decision"] == "pending"
        assert deployment_patches(emulator) == 0
        path = client.path("flywheel.dev/v1alpha1", "DriftMonitor", NS, "mon")
        body = {"metadata": {"annotations": {dm.ANNOTATION_APPROVE: "mon-1"}}}
        await call("PATCH", path, body, objects.MERGE_PATCH)
        await conftest.eventually(
            lambda: status(emulator)["lastDecision"]["decision"] == "promoted", what="the approval"
        )
        await asyncio.sleep(0.4)
    assert live(emulator, DEPLOYMENTS, "svc")["spec"]["champion"] == {"fromTrainingRun": "mon-1"}
    assert deployment_patches(emulator) == 1 and analysis.evaluations == 1
    assert monitor_events(emulator, dm.R_PROMOTED) == 1 and monitor_events(emulator, dm.R_PENDING) == 1


@pytest.mark.slow  # two operator lifetimes, one of them retrying against a failing API
async def test_restart_between_promotion_and_bookkeeping_converges_to_one_decision(
    emulator: Any, data_repo: Any
) -> None:
    """The Deployment patch lands, then the API server fails every later write of that step (the
    challenger's decision annotation): the operator is stopped there and started again."""
    analysis, clock = Injected(), Clock()
    async with conftest.running(make_registry(analysis, clock)):
        await seed(data_repo[0])
        await conftest.eventually(lambda: challengers(emulator), what="the challenger")
    await patch_status("TrainingRun", "mon-1", succeeded("mon-1"))  # while the operator is down
    emulator.fail("PATCH", "trainingruns", times=1000)
    async with conftest.running(make_registry(analysis, clock)):
        await conftest.eventually(lambda: deployment_patches(emulator) == 1, what="the promotion patch")
        await asyncio.sleep(0.3)
    assert analysis.evaluations >= 1
    assert "lastDecision" not in status(emulator)  # cut short: only the Deployment knows
    emulator._faults.clear()
    fresh = Injected()  # the restarted operator
    async with conftest.running(make_registry(fresh, clock)):
        await conftest.eventually(lambda: status(emulator).get("lastDecision"), what="the decision")
        await asyncio.sleep(0.4)
    assert fresh.evaluations == 0  # the Deployment's record was taken, not a re-evaluation
    assert deployment_patches(emulator) == 1
    assert status(emulator)["lastDecision"]["decision"] == "promoted"
    annotation = live(emulator, RUNS, "mon-1")["metadata"]["annotations"][dm.ANNOTATION_DECISION]
    assert json.loads(annotation)["decision"] == status(emulator)["lastDecision"]
    assert monitor_events(emulator, dm.R_PROMOTED) == 1


def test_the_timer_steps_for_an_approval_until_status_shows_it_carried_out_or_refused() -> None:
    """Pure: operator.wants_step on bodies as the timer sees them (no check due, nothing active)."""
    ignored = f"{dm.ANNOTATION_APPROVE}=mon-1 is ignored: it was rejected"

    def body(approve: str | None, decision: str, promoted_message: str = "") -> dict[str, Any]:
        notes = {dm.ANNOTATION_APPROVE: approve} if approve else {}
        conds = [{"type": "Promoted", "status": "False", "reason": "x", "message": promoted_message}]
        return {
            "apiVersion": "flywheel.dev/v1alpha1", "kind": "DriftMonitor",
            "metadata": {"name": "mon", "namespace": NS, "annotations": notes},
            "spec": {"deploymentRef": "svc", "schedule": {"intervalSeconds": 60}},
            "status": {"lastCheckTime": plans.now_rfc3339(T0), "conditions": conds,
                       "lastDecision": {"challenger": "mon-1", "decision": decision}},
        }  # fmt: skip

    assert not operator.wants_step(body(None, "pending"), T0)
    assert operator.wants_step(body("mon-1", "pending"), T0)
    assert not operator.wants_step(body("mon-1", "promoted"), T0)
    assert operator.wants_step(body("mon-1", "rejected"), T0)  # to say why it is refused, once
    assert not operator.wants_step(body("mon-1", "rejected", ignored), T0)


def ready(em: Any, name: str) -> dict[str, Any]:
    conds = (live(em, MONITORS, name).get("status") or {}).get("conditions")
    return plans.get_condition(conds, "Ready") or {}


def steps_of(em: Any, name: str) -> int:
    """GETs of the monitor by name: each step re-reads it once (kopf's watch lists, it never GETs one)."""
    return sum(
        1 for r in em.requests()
        if r.method == "GET" and r.name == name and r.resource and r.resource.plural == "driftmonitors"
    )  # fmt: skip


async def test_a_second_monitor_on_the_same_deployment_waits_and_takes_over_when_the_first_goes(
    emulator: Any, data_repo: Any
) -> None:
    """`twin` names the Deployment `mon` monitors (created later, or in the same second: `mon` sorts
    first): it says who owns it, once, steps no more while it waits, and never retrains or
    promotes; deleting `mon` hands the Deployment to `twin` within a timer tick."""
    analysis, clock = Injected(), Clock()
    async with conftest.running(make_registry(analysis, clock)):
        first = await seed(data_repo[0])
        await conftest.eventually(lambda: challengers(emulator), what="mon's challenger")
        twin = {k: first[k] for k in ("apiVersion", "kind", "spec")}
        await create({**twin, "metadata": {"name": "twin", "namespace": NS}})
        await conftest.eventually(
            lambda: ready(emulator, "twin").get("reason") == dm.R_CLAIMED, what="claimed"
        )
        assert ready(emulator, "twin")["status"] == "False"
        assert "driftmonitor/mon" in ready(emulator, "twin")["message"]
        waiting = steps_of(emulator, "twin")
        await asyncio.sleep(0.6)  # three timer ticks: the index says it waits; no step, no API call
        assert steps_of(emulator, "twin") == waiting
        await patch_status("TrainingRun", "mon-1", succeeded("mon-1"))
        await conftest.eventually(lambda: status(emulator).get("lastDecision"), what="mon's decision")
        await asyncio.sleep(0.4)
        assert live(emulator, DEPLOYMENTS, "svc")["spec"]["champion"] == {"fromTrainingRun": "mon-1"}
        assert deployment_patches(emulator) == 1 and analysis.checks == 1 and analysis.evaluations == 1
        assert not [o for o in emulator.live(RUNS, NS) if o["metadata"]["name"].startswith("twin")]
        twin_status = live(emulator, MONITORS, "twin")["status"]
        assert "lastCheckTime" not in twin_status and "lastDecision" not in twin_status
        claimed = [e for e in emulator.live("v1/events", NS) if e["involvedObject"]["name"] == "twin"]
        assert [(e["reason"], e["type"]) for e in claimed] == [(dm.R_CLAIMED, "Warning")]

        # mon-1, promoted, no longer belongs to mon: deleting mon leaves the served model alone.
        assert "ownerReferences" not in live(emulator, RUNS, "mon-1")["metadata"]
        await call("DELETE", client.path("flywheel.dev/v1alpha1", "DriftMonitor", NS, "mon"))
        await conftest.eventually(
            lambda: live(emulator, RUNS, "twin-1"), what="twin's own challenger after the takeover"
        )
        assert ready(emulator, "twin").get("reason") != dm.R_CLAIMED and analysis.checks == 2


def test_the_timer_steps_a_blocked_monitor_only_when_its_ownership_changes() -> None:
    """Pure: operator.wants_step with the index's peers (no API call per tick while blocked)."""

    def body(name: str, created: str, reason: str = "", message: str = "") -> dict[str, Any]:
        conds = [{"type": "Ready", "status": "False", "reason": reason, "message": message}]
        return {
            "apiVersion": "flywheel.dev/v1alpha1", "kind": "DriftMonitor",
            "metadata": {"name": name, "namespace": NS, "creationTimestamp": created},
            "spec": {"deploymentRef": "svc"}, "status": {"conditions": conds, "retrain": {"active": ["x-1"]}},
        }  # fmt: skip

    owner = body("mon", "2026-03-01T10:00:00Z")
    twin = body("twin", "2026-03-01T11:00:00Z")
    peers = [next(iter(operator.claim_entry(b).values())) for b in (owner, twin)]
    assert operator.wants_step(twin, T0, peers)  # not said yet
    said = body("twin", "2026-03-01T11:00:00Z", dm.R_CLAIMED, claims.message(twin, "mon"))
    assert not operator.wants_step(said, T0, peers)  # said: wait, even with a challenger active
    assert operator.wants_step(said, T0, peers[1:])  # the owner left the index: take over


async def test_a_step_that_keeps_failing_shows_on_the_monitor_and_clears(
    emulator: Any, data_repo: Any
) -> None:
    analysis, clock = Injected(), Clock()
    async with conftest.running(make_registry(analysis, clock)):
        await seed(data_repo[0])
        emulator.fail("POST", "trainingruns", times=1000)  # before the operator's first step can run
        await conftest.eventually(
            lambda: ready(emulator, "mon").get("reason") == "ReconcileError", what="shown"
        )
        assert (
            ready(emulator, "mon")["status"] == "False"
            and "injected fault" in ready(emulator, "mon")["message"]
        )
        assert monitor_events(emulator, "ReconcileError") == 1
        emulator._faults.clear()
        await conftest.eventually(lambda: challengers(emulator), what="the challenger, once the API accepts")
        await conftest.eventually(
            lambda: ready(emulator, "mon").get("reason") != "ReconcileError", what="cleared"
        )
    assert challengers(emulator) == ["mon-1"]
