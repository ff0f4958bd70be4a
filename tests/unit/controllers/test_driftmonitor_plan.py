"""The DriftMonitor controller (pure): retrain triggers, cooldown and concurrency, guarded promotion,
failed challengers, and convergence to one decision when a step is cut short anywhere.

A small in-memory world carries plans out in the adapters' fixed order (children, patches of other
resources, status) and can stop after any number of writes, which is what a crashed operator leaves.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
from typing import Any

import pytest

from flywheel.api import conditions, contract
from flywheel.controllers import driftmonitor as dm
from flywheel.controllers import plans

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
COMMIT = "a" * 40


def at(minutes: float) -> datetime.datetime:
    return NOW + datetime.timedelta(minutes=minutes)


def monitor(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "deploymentRef": "shuttle",
        "schedule": {"intervalSeconds": 60},
        "retrain": {
            "cooldownSeconds": 600,
            "maxConcurrent": 1,
            "template": {
                "data": {"repo": "https://git.example/data.git", "rev": "main", "path": "data/shuttle.csv"},
                "model": {"task": "classification", "target": "anomaly"},
            },
        },
        "promotion": {"metric": "accuracy", "minImprovement": 0.01},
    }
    for key, value in spec.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "DriftMonitor",
        "metadata": {"name": "shuttle", "namespace": "ml", "uid": "uid-dm", "generation": 1},
        "spec": base,
        "status": {},
    }


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": "shuttle", "namespace": "ml"},
        "spec": {"champion": {"fromTrainingRun": "shuttle-v1"}},
        "status": {"championUri": "file:///art/ml/trainingruns/shuttle-v1/model", "championVersion": "v1"},
    }


def check(drifted: bool, minutes: float, share: float = 0.78) -> dict[str, Any]:
    columns = [{"column": "f2", "score": 0.001, "method": "ks", "threshold": 0.05}] if drifted else []
    return {
        "lastCheckTime": plans.now_rfc3339(at(minutes)),
        "rowsChecked": 2000,
        "datasetDriftShare": share if drifted else 0.1,
        "drifted": drifted,
        "driftedColumns": columns,
        "reportUri": f"file:///art/reports/{minutes}",
    }


def evaluation(
    name: str, decision: str = "promoted", champ: float = 0.85, chal: float = 0.97
) -> dm.Evaluation:
    return dm.Evaluation(
        challenger=name, decision=decision, reason=f"accuracy {champ} -> {chal}", metric="accuracy",
        champion_value=champ, challenger_value=chal, champion_version="v1", challenger_version=f"{name}-abc",
        data_rev=COMMIT,
    )  # fmt: skip


def _wire(ev: dm.Evaluation) -> dict[str, Any]:
    """An Evaluation as the check Job writes it (camelCase)."""
    return {
        "challenger": ev.challenger, "decision": ev.decision, "reason": ev.reason, "metric": ev.metric,
        "championValue": ev.champion_value, "challengerValue": ev.challenger_value,
        "championVersion": ev.champion_version, "challengerVersion": ev.challenger_version,
        "dataRev": ev.data_rev,
    }  # fmt: skip


class World:
    """The monitor, its Deployment and TrainingRuns; executes plans in the adapters' order."""

    def __init__(self, resource: dict[str, Any]) -> None:
        self.monitor = resource
        self.deployment: dict[str, Any] | None = deployment()
        self.runs: dict[str, dict[str, Any]] = {}
        self.events: list[plans.Event] = []
        self.dep_patches = 0
        self.jobs = 0
        self.outcome_job: str | None = None
        self.started_jobs: list[dict[str, Any]] = []

    def observed(
        self,
        check: dict[str, Any] | None = None,
        check_note: str | None = None,
        check_reason: str | None = None,
        evaluations: dict[str, dm.Evaluation] | None = None,
    ) -> plans.Observed:
        """What the adapter would read. A check or evaluations given here come back as the outcome
        of a finished check Job (its pod's termination message), as the drift image writes it."""
        obs = plans.Observed()
        if self.deployment is not None:
            obs.objects["Deployment/shuttle"] = copy.deepcopy(self.deployment)
        obs.objects["TrainingRun/"] = {"items": copy.deepcopy(list(self.runs.values()))}
        obs.objects["DriftMonitor/"] = {"items": []}
        running = (self.monitor.get("status") or {}).get("checkJob")
        if any(m["kind"] == "Job" and m["metadata"]["name"] == running for m in self.started_jobs):
            obs.objects[f"Job/{running}"] = {"kind": "Job", "metadata": {"name": running}, "status": {}}
        self.outcome_job = None
        if check is not None or evaluations:
            self.jobs += 1
            name = self.outcome_job = f"shuttle-check-test{self.jobs}"
            result = {"check": check, "note": check_note, "reason": check_reason,
                      "evaluations": [_wire(e) for e in (evaluations or {}).values()]}  # fmt: skip
            obs.objects[f"Job/{name}"] = {
                "kind": "Job", "metadata": {"name": name, "namespace": "ml"},
                "status": {"conditions": [{"type": "Complete", "status": "True"}]},
            }  # fmt: skip
            pod = {"metadata": {"labels": {"job-name": name}}, "status": {"containerStatuses": [
                {"name": "drift", "state": {"terminated": {"exitCode": 0, "message": json.dumps(result)}}}]}}  # fmt: skip
            obs.objects[f"Pod/{name}"] = {"items": [pod]}
        return obs

    def step(self, now: datetime.datetime, crash_after: int | None = None, **kw: Any) -> plans.Plan:
        """One reconcile: plan, then carry it out (maybe only partly). The check Jobs the plan
        starts are kept aside (self.started_jobs): the returned plan's apply lists the rest."""
        obs = self.observed(**kw)
        resource = self.monitor
        if self.outcome_job:  # the Job status.checkJob names is the one that finished
            resource = {
                **resource,
                "status": {**(resource.get("status") or {}), "checkJob": self.outcome_job},
            }
        plan = dm.plan(resource, obs, now)
        self.started_jobs += [m for m in plan.apply if m["kind"] in ("Job", "ConfigMap")]
        plan.apply = [m for m in plan.apply if m["kind"] not in ("Job", "ConfigMap")]
        plan.delete = []
        writes: list[Any] = [("create", m) for m in plan.apply] + [("patch", p) for p in plan.patch_resources]
        writes.append(("status", plan.status))
        for n, (verb, body) in enumerate(writes):
            if crash_after is not None and n >= crash_after:
                return plan
            if verb == "create":
                self.runs.setdefault(body["metadata"]["name"], {**copy.deepcopy(body), "status": {}})
            elif verb == "patch" and body["kind"] == "Deployment":
                assert self.deployment is not None
                before, self.deployment = self.deployment, plans.merge_patch(self.deployment, body)
                self.dep_patches += self.deployment != before  # what reaches the API server
            elif verb == "patch":
                name = body["metadata"]["name"]
                self.runs[name] = plans.merge_patch(self.runs[name], body)
            else:
                self.monitor["status"] = plans.merge_patch(self.monitor.get("status") or {}, body)
        self.events.extend(plan.events)
        return plan

    def finish(self, name: str, phase: str = conditions.SUCCEEDED) -> None:
        self.runs[name]["status"] = {
            "phase": phase,
            "message": "trainer exited 1" if phase == "Failed" else "",
        }
        if phase == conditions.SUCCEEDED:  # its export, as the trainer records it
            card = f"file:///art/ml/trainingruns/{name}/model/model_card.json"
            self.runs[name]["status"]["model"] = {"version": f"{name}-abc", "cardUri": card}

    def cond(self, type_: str) -> dict[str, Any]:
        return plans.get_condition(self.monitor["status"].get("conditions"), type_) or {}


def test_no_drift_starts_no_retrain_and_reports_ready() -> None:
    world = World(monitor())
    plan = world.step(NOW, check=check(False, 0))
    assert plan.apply == [] and world.runs == {}
    assert world.cond("Ready")["status"] == "True"
    assert world.cond("DriftDetected")["status"] == "False"
    assert world.cond("Retraining")["reason"] == conditions.R_IDLE
    assert plan.requeue_after == 60.0


def test_drift_starts_exactly_one_challenger_owned_and_labelled() -> None:
    world = World(monitor())
    plan = world.step(NOW, check=check(True, 0))
    (child,) = plan.apply
    meta = child["metadata"]
    assert meta["name"] == "shuttle-1" and meta["namespace"] == "ml"
    assert child["spec"]["data"]["rev"] == "main"  # the trainer pins the commit it resolves
    assert child["spec"]["data"]["repo"] == "https://git.example/data.git"
    (owner,) = meta["ownerReferences"]
    assert owner["kind"] == "DriftMonitor" and owner["uid"] == "uid-dm" and owner["controller"] is True
    assert meta["labels"][contract.LABEL_OWNER_KIND] == "DriftMonitor"
    assert meta["labels"][contract.LABEL_OWNER_NAME] == "shuttle"
    retrain = world.monitor["status"]["retrain"]
    assert retrain["active"] == ["shuttle-1"] and retrain["count"] == 1
    assert "drift share 0.78" in retrain["lastReason"] and "f2" in retrain["lastReason"]
    assert any(
        e.reason == conditions.R_RETRAIN_STARTED and "data/shuttle.csv@main" in e.message for e in plan.events
    )
    # Level-based: the same drifted status, seen again and again, starts nothing more.
    for minutes in (1, 2, 30):
        assert world.step(at(minutes)).apply == []
    assert list(world.runs) == ["shuttle-1"]


def test_concurrency_limit_holds_while_a_challenger_runs_even_after_cooldown() -> None:
    world = World(monitor())
    world.step(NOW, check=check(True, 0))
    assert world.step(at(20), check=check(True, 20)).apply == []  # cooldown over, but shuttle-1 runs
    world2 = World(monitor(retrain={"maxConcurrent": 2, "cooldownSeconds": 0}))
    world2.step(NOW, check=check(True, 0))
    world2.step(at(1), check=check(True, 1))
    assert world2.step(at(2), check=check(True, 2)).apply == []
    assert sorted(world2.runs) == ["shuttle-1", "shuttle-2"]


def test_cooldown_holds_after_a_decision_and_then_a_fresh_drifted_check_retrains() -> None:
    world = World(monitor())
    world.step(NOW, check=check(True, 0))
    world.finish("shuttle-1", conditions.FAILED)
    world.step(at(1))
    assert world.monitor["status"]["retrain"]["active"] == []
    assert world.step(at(5), check=check(True, 5)).apply == []  # 5 min < 10 min cooldown
    assert world.step(at(9)).apply == []  # still cooling down
    plan = world.step(at(10.5))  # cooled down; the check at minute 5 is newer than the last retrain
    assert [c["metadata"]["name"] for c in plan.apply] == ["shuttle-2"]
    assert world.monitor["status"]["retrain"]["lastStarted"] == plans.now_rfc3339(at(10.5))


def test_a_drifted_check_older_than_the_last_retrain_does_not_retrain_again() -> None:
    world = World(monitor(retrain={"cooldownSeconds": 0}))
    world.step(NOW, check=check(True, 0))
    world.finish("shuttle-1", conditions.FAILED)
    assert world.step(at(30)).apply == []  # the only drifted check is the one shuttle-1 answered
    assert world.step(at(31), check=check(False, 31)).apply == []


def test_winning_challenger_is_promoted_once_with_figures_and_rollback_target() -> None:
    world = World(monitor())
    world.step(NOW, check=check(True, 0))
    world.finish("shuttle-1")
    obs = world.observed()
    assert [r["metadata"]["name"] for r in dm.to_evaluate(world.monitor, dm.facts(world.monitor, obs))] == [
        "shuttle-1"
    ]
    plan = world.step(at(2), evaluations={"shuttle-1": evaluation("shuttle-1")})
    assert world.deployment is not None
    assert world.deployment["spec"]["champion"] == {"fromTrainingRun": "shuttle-1"}
    status = world.monitor["status"]
    assert status["lastDecision"]["decision"] == "promoted"
    assert (
        status["lastDecision"]["championValue"] == 0.85 and status["lastDecision"]["challengerValue"] == 0.97
    )
    assert status["rollbackTarget"] == "file:///art/ml/trainingruns/shuttle-v1/model"
    assert status["lastPromotion"] == plans.now_rfc3339(at(2))
    assert status["retrain"]["active"] == []
    assert world.cond("Promoted")["status"] == "True"
    (event,) = [e for e in plan.events if e.reason == conditions.R_PROMOTED]
    for text in ("shuttle-1-abc", "v1", "0.8500", "0.9700", COMMIT):
        assert text in event.message
    # Served now: no longer garbage-collected with the monitor (released in the decision's write).
    assert "ownerReferences" not in world.runs["shuttle-1"]["metadata"]
    # Nothing left to evaluate; the next steps patch nothing.
    assert dm.to_evaluate(world.monitor, dm.facts(world.monitor, world.observed())) == []
    for minutes in (3, 4):
        assert world.step(at(minutes)).patch_resources == []
    assert world.dep_patches == 1


def test_losing_challenger_leaves_the_champion_and_records_the_rejection() -> None:
    world = World(monitor())
    world.step(NOW, check=check(True, 0))
    world.finish("shuttle-1")
    plan = world.step(at(2), evaluations={"shuttle-1": evaluation("shuttle-1", "rejected", 0.9, 0.6)})
    assert world.dep_patches == 0 and world.deployment == deployment()
    assert world.monitor["status"]["lastDecision"]["decision"] == "rejected"
    assert "rollbackTarget" not in world.monitor["status"]
    assert [e.type for e in plan.events if e.reason == conditions.R_REJECTED] == ["Warning"]
    assert world.cond("Promoted")["status"] == "False"
    assert [r["uid"] for r in world.runs["shuttle-1"]["metadata"]["ownerReferences"]] == ["uid-dm"]


def test_a_champion_promoted_by_an_older_release_is_released_from_the_monitor_once() -> None:
    """Before promotions dropped the monitor's ownerReference, deleting the monitor garbage-collected
    the TrainingRun its Deployment serves. A step now releases such a champion once, and only it."""
    world = World(monitor())
    world.step(NOW, check=check(True, 0))
    world.finish("shuttle-1")
    world.step(at(2), evaluations={"shuttle-1": evaluation("shuttle-1")})
    meta = world.runs["shuttle-1"]["metadata"]
    meta["ownerReferences"] = [{"kind": "DriftMonitor", "name": "shuttle", "uid": "uid-dm"}, {"uid": "other"}]
    (patch,) = world.step(at(3)).patch_resources
    assert patch["metadata"] == {
        "name": "shuttle-1",
        "namespace": "ml",
        "ownerReferences": [{"uid": "other"}],
    }
    assert world.runs["shuttle-1"]["metadata"]["ownerReferences"] == [{"uid": "other"}]
    assert world.step(at(4)).patch_resources == [] and world.dep_patches == 1


def test_a_win_without_auto_promote_is_recorded_pending_and_not_patched() -> None:
    world = World(monitor(promotion={"autoPromote": False}, schedule={"intervalSeconds": 3600}))
    world.step(NOW, check=check(True, 0))
    world.finish("shuttle-1")
    world.step(at(2), evaluations={"shuttle-1": evaluation("shuttle-1", "pending")})
    assert world.dep_patches == 0
    assert world.monitor["status"]["lastDecision"]["decision"] == "pending"
    assert world.cond("Promoted")["reason"] == conditions.R_AWAITING_APPROVAL
    # kopf reports no change of a flywheel.dev/ annotation: the monitor looks for an approval itself
    assert world.step(at(2.1)).requeue_after == dm.REQUEUE_ACTIVE


def test_failed_challenger_is_recorded_and_never_evaluated() -> None:
    world = World(monitor())
    world.step(NOW, check=check(True, 0))
    world.finish("shuttle-1", conditions.FAILED)
    assert dm.to_evaluate(world.monitor, dm.facts(world.monitor, world.observed())) == []
    plan = world.step(at(1))
    decision = world.monitor["status"]["lastDecision"]
    assert decision["decision"] == "rejected" and "trainer exited 1" in decision["reason"]
    assert world.dep_patches == 0
    assert [e.reason for e in plan.events if e.type == "Warning"] == [conditions.R_CHALLENGER_FAILED]


@pytest.mark.parametrize("crash_after", [0, 1, 2])
def test_crash_anywhere_between_evaluation_and_status_converges_to_one_decision(crash_after: int) -> None:
    """Writes of the deciding step: 0 Deployment patch, 1 challenger annotation, 2 status. The step is
    cut after `crash_after` writes; the restarted loop gets no evaluation for a challenger the
    Deployment already names (to_evaluate says so), and a full re-evaluation otherwise."""
    world = World(monitor())
    world.step(NOW, check=check(True, 0))
    world.finish("shuttle-1")
    world.step(at(2), crash_after=crash_after, evaluations={"shuttle-1": evaluation("shuttle-1")})
    # restart: evaluate only what to_evaluate names (the champion may have changed meanwhile)
    pending = [
        r["metadata"]["name"]
        for r in dm.to_evaluate(world.monitor, dm.facts(world.monitor, world.observed()))
    ]
    assert pending == (["shuttle-1"] if crash_after == 0 else [])
    world.step(at(3), evaluations={n: evaluation(n) for n in pending})
    world.step(at(4))
    assert world.dep_patches == 1
    assert (
        world.deployment is not None
        and world.deployment["spec"]["champion"]["fromTrainingRun"] == "shuttle-1"
    )
    status = world.monitor["status"]
    assert (
        status["lastDecision"]["challenger"] == "shuttle-1"
        and status["lastDecision"]["decision"] == "promoted"
    )
    assert status["rollbackTarget"] == "file:///art/ml/trainingruns/shuttle-v1/model"
    recorded = json.loads(world.runs["shuttle-1"]["metadata"]["annotations"][dm.ANNOTATION_DECISION])
    assert recorded["decision"]["decision"] == "promoted"
    assert sum(e.reason == conditions.R_PROMOTED for e in world.events) == 1


def test_status_lost_after_creating_the_challenger_neither_duplicates_nor_renames() -> None:
    world = World(monitor(retrain={"cooldownSeconds": 0, "maxConcurrent": 2}))
    world.step(NOW, crash_after=1, check=check(True, 0))  # created shuttle-1, status never written
    assert list(world.runs) == ["shuttle-1"] and world.monitor["status"] == {}
    plan = world.step(at(0.5))
    assert plan.apply == []  # the check was lost with the status: nothing new has judged drift
    plan = world.step(at(1), check=check(True, 1))
    assert [c["metadata"]["name"] for c in plan.apply] == ["shuttle-2"]
    assert world.monitor["status"]["retrain"]["count"] == 2


def test_replanning_the_same_world_is_a_no_op() -> None:
    world = World(monitor())
    world.step(NOW, check=check(True, 0))
    world.step(at(1))  # the next check is due: its Job starts
    assert [m["kind"] for m in world.started_jobs] == ["ConfigMap", "Job"]
    first = dm.plan(world.monitor, world.observed(), at(1))
    world.step(at(1))
    second = dm.plan(world.monitor, world.observed(), at(1))
    assert first.requeue_after == dm.REQUEUE_JOB  # while the Job runs
    assert first.status == second.status and second.apply == [] and second.patch_resources == []
    assert plans.merge_patch(world.monitor["status"], second.status) == world.monitor["status"]


def test_missing_deployment_is_ready_false_and_starts_nothing() -> None:
    world = World(monitor())
    world.deployment = None
    plan = world.step(NOW, check=check(True, 0))
    assert plan.apply == []
    assert (
        world.cond("Ready")["status"] == "False"
        and world.cond("Ready")["reason"] == conditions.R_NO_DEPLOYMENT
    )


def test_invalid_spec_is_a_permanent_error_with_the_field_named() -> None:
    resource = monitor(schedule={"intervalSeconds": 1})
    plan = dm.plan(resource, plans.Observed({"Deployment/shuttle": deployment()}), NOW)
    assert plan.permanent_error and "intervalSeconds" in plan.permanent_error
    ready = plans.get_condition(plan.status["conditions"], "Ready") or {}
    assert ready["status"] == "False" and ready["reason"] == conditions.R_INVALID_SPEC
    assert plan.apply == []


def test_retrain_disabled_never_retrains() -> None:
    world = World(monitor(retrain={"enabled": False}))
    assert world.step(NOW, check=check(True, 0)).apply == []
    assert world.cond("Retraining")["reason"] == conditions.R_DISABLED
    assert world.cond("DriftDetected")["status"] == "True"


def test_not_enough_rows_is_said_in_drift_detected() -> None:
    world = World(monitor())
    note = "only 12 rows of traffic (window.minRows 200); not judged"
    world.step(NOW, check={"lastCheckTime": plans.now_rfc3339(NOW), "rowsChecked": 12}, check_note=note)
    assert (
        world.cond("DriftDetected") | {}
        and world.cond("DriftDetected")["reason"] == conditions.R_NOT_ENOUGH_ROWS
    )
    assert world.cond("Ready")["status"] == "True"


def test_a_second_promotion_cut_short_before_status_still_moves_rollback_target() -> None:
    world = World(monitor(retrain={"cooldownSeconds": 0}))
    world.step(NOW, check=check(True, 0))
    world.finish("shuttle-1")
    world.step(at(1), evaluations={"shuttle-1": evaluation("shuttle-1")})
    assert world.deployment is not None
    world.deployment["status"]["championUri"] = "file:///art/ml/trainingruns/shuttle-1/model"  # rolled out
    world.step(at(2), check=check(True, 2))
    world.finish("shuttle-2")
    world.step(at(3), crash_after=2, evaluations={"shuttle-2": evaluation("shuttle-2")})
    world.step(at(4))
    status = world.monitor["status"]
    assert status["lastDecision"]["challenger"] == "shuttle-2"
    assert status["lastPromotion"] == plans.now_rfc3339(at(3))
    assert status["rollbackTarget"] == "file:///art/ml/trainingruns/shuttle-1/model"
    assert world.dep_patches == 2


# --- approval of a pending win (promotion.autoPromote false) --------------------------------------
def pending_world(name: str = "shuttle-1") -> World:
    """A monitor without autoPromote whose first challenger won and is recorded pending."""
    world = World(monitor(promotion={"autoPromote": False}))
    world.step(NOW, check=check(True, 0))
    world.finish(name)
    world.step(at(2), evaluations={name: evaluation(name, "pending")})
    assert world.monitor["status"]["lastDecision"]["decision"] == "pending" and world.dep_patches == 0
    return world


def approve(world: World, name: str) -> None:
    world.monitor["metadata"]["annotations"] = {dm.ANNOTATION_APPROVE: name}


def test_approving_a_pending_win_promotes_it_once() -> None:
    world = pending_world()
    approve(world, "shuttle-1")
    world.step(at(3))
    world.step(at(4))
    assert world.dep_patches == 1
    assert world.deployment is not None
    assert world.deployment["spec"]["champion"] == {"fromTrainingRun": "shuttle-1"}
    status = world.monitor["status"]
    assert status["lastDecision"]["decision"] == "promoted"
    assert status["lastDecision"]["reason"] == f"accuracy 0.85 -> 0.97; approved ({dm.ANNOTATION_APPROVE})"
    assert status["lastDecision"]["challengerValue"] == 0.97  # the comparison stays the evaluated one
    assert status["rollbackTarget"] == "file:///art/ml/trainingruns/shuttle-v1/model"
    assert world.cond("Promoted")["status"] == "True"
    assert sum(e.reason == conditions.R_PROMOTED for e in world.events) == 1
    assert "ownerReferences" not in world.runs["shuttle-1"]["metadata"]


def test_an_approval_given_before_the_decision_applies_once_it_is_pending() -> None:
    world = World(monitor(promotion={"autoPromote": False}))
    world.step(NOW, check=check(True, 0))
    approve(world, "shuttle-1")
    world.step(at(1))
    assert world.cond("Promoted")["reason"] == "NoDecision"  # undecided: the approval waits quietly
    world.finish("shuttle-1")
    world.step(at(2), evaluations={"shuttle-1": evaluation("shuttle-1", "pending")})
    world.step(at(3))
    assert world.monitor["status"]["lastDecision"]["decision"] == "promoted" and world.dep_patches == 1


@pytest.mark.parametrize("crash_after", [0, 1, 2])
def test_an_approval_cut_short_anywhere_converges_to_one_promotion(crash_after: int) -> None:
    """Writes of the approving step: 0 Deployment patch, 1 challenger annotation, 2 status."""
    world = pending_world()
    approve(world, "shuttle-1")
    world.step(at(3), crash_after=crash_after)
    world.step(at(4))
    world.step(at(5))
    assert world.dep_patches == 1
    recorded = json.loads(world.runs["shuttle-1"]["metadata"]["annotations"][dm.ANNOTATION_DECISION])
    assert recorded["decision"]["decision"] == "promoted"
    assert world.monitor["status"]["lastDecision"]["decision"] == "promoted"
    assert sum(e.reason == conditions.R_PROMOTED for e in world.events) == 1


def test_approving_a_rejected_challenger_is_refused_and_said_once() -> None:
    world = World(monitor(promotion={"autoPromote": False}))
    world.step(NOW, check=check(True, 0))
    world.finish("shuttle-1")
    world.step(at(2), evaluations={"shuttle-1": evaluation("shuttle-1", "rejected", 0.9, 0.8)})
    approve(world, "shuttle-1")
    world.step(at(3))
    world.step(at(4))
    assert world.dep_patches == 0
    message = world.cond("Promoted")["message"]
    assert f"{dm.ANNOTATION_APPROVE}=shuttle-1 is ignored: it was rejected" in message
    ignored = [e for e in world.events if e.reason == conditions.R_APPROVAL_IGNORED]
    assert len(ignored) == 1 and ignored[0].type == "Warning"


def test_approving_an_unknown_challenger_names_the_real_ones() -> None:
    world = pending_world()
    approve(world, "shuttle-9")
    world.step(at(3))
    assert world.dep_patches == 0
    assert "not a challenger of this monitor (challengers: shuttle-1)" in world.cond("Promoted")["message"]


def test_a_pending_win_evaluated_before_the_champion_changed_cannot_be_approved() -> None:
    world = World(
        monitor(promotion={"autoPromote": False}, retrain={"maxConcurrent": 2, "cooldownSeconds": 0})
    )
    world.step(NOW, check=check(True, 0))
    world.step(at(1), check=check(True, 1))
    world.finish("shuttle-1")
    world.finish("shuttle-2")
    world.step(
        at(2),
        evaluations={n: evaluation(n, "pending") for n in ("shuttle-1", "shuttle-2")},
    )
    approve(world, "shuttle-2")
    world.step(at(3))
    assert world.deployment is not None
    assert world.deployment["spec"]["champion"] == {"fromTrainingRun": "shuttle-2"}
    approve(world, "shuttle-1")
    world.step(at(4))
    assert world.dep_patches == 1  # shuttle-1 was compared with shuttle-v1, not with shuttle-2
    assert "the champion was replaced at" in world.cond("Promoted")["message"]
    assert world.monitor["status"]["lastDecision"]["challenger"] == "shuttle-2"


def rolled_back_world() -> World:
    """shuttle-1 promoted at minute 2, then a person put the old champion back."""
    world = World(monitor(retrain={"cooldownSeconds": 600, "maxConcurrent": 1}))
    world.step(NOW, check=check(True, 0))
    world.finish("shuttle-1")
    world.step(at(2), evaluations={"shuttle-1": evaluation("shuttle-1")})
    assert world.deployment is not None
    world.deployment["spec"]["champion"] = {"fromTrainingRun": "shuttle-v1"}  # kubectl patch
    return world


def test_a_rollback_is_recorded_once_and_held_against_the_same_data_across_the_cooldown() -> None:
    world = rolled_back_world()
    plan = world.step(at(3))
    hold = world.monitor["status"]["rollbackHold"]
    assert (hold["challenger"], hold["dataRev"], hold["version"]) == ("shuttle-1", COMMIT, "shuttle-1-abc")
    assert hold["time"] == plans.now_rfc3339(at(3))
    assert [e.reason for e in plan.events].count(conditions.R_ROLLED_BACK) == 1
    assert "shuttle-1 was rolled back" in world.cond("Promoted")["message"]
    assert world.step(at(4)).events == []  # seen once: no second event, the record keeps its time
    assert world.monitor["status"]["rollbackHold"]["time"] == plans.now_rfc3339(at(3))
    # Past the cooldown the traffic still drifts: shuttle-2 trains on the same data and wins.
    assert [m["metadata"]["name"] for m in world.step(at(13), check=check(True, 13)).apply] == ["shuttle-2"]
    world.finish("shuttle-2")
    plan = world.step(at(14), evaluations={"shuttle-2": evaluation("shuttle-2")})
    decision = world.monitor["status"]["lastDecision"]
    assert decision["decision"] == "pending" and "held: the same data rev as shuttle-1" in decision["reason"]
    assert plan.patch_resources == [p for p in plan.patch_resources if p["kind"] == "TrainingRun"]
    assert world.deployment is not None and world.deployment["spec"]["champion"] == {
        "fromTrainingRun": "shuttle-v1"
    }
    # A person approves it: promoted, and that promotion ends the hold.
    world.monitor["metadata"]["annotations"] = {dm.ANNOTATION_APPROVE: "shuttle-2"}
    world.step(at(15))
    assert world.deployment["spec"]["champion"] == {"fromTrainingRun": "shuttle-2"}
    assert dm.decisions.active_hold(world.monitor["status"]) is None


def test_a_challenger_on_new_data_that_wins_is_promoted_despite_the_hold() -> None:
    world = rolled_back_world()
    world.step(at(3))
    world.step(at(13), check=check(True, 13))
    world.finish("shuttle-2")
    fresh = dataclasses.replace(evaluation("shuttle-2"), data_rev="d" * 40)
    world.step(at(14), evaluations={"shuttle-2": fresh})
    assert world.monitor["status"]["lastDecision"]["decision"] == "promoted"
    assert world.deployment is not None and world.deployment["spec"]["champion"] == {
        "fromTrainingRun": "shuttle-2"
    }
    assert dm.decisions.active_hold(world.monitor["status"]) is None


def test_a_failed_evaluation_job_rejects_its_challenger_with_the_jobs_message() -> None:
    world = World(monitor())
    world.step(NOW, check=check(True, 0))
    world.finish("shuttle-1")
    world.step(at(0.5))  # not due: an evaluation Job for shuttle-1 alone
    (job,) = [m for m in world.started_jobs if m["kind"] == "Job"]
    assert job["metadata"]["name"] == "shuttle-eval-1"
    config = json.loads(world.started_jobs[-2]["data"]["config.json"])
    assert config["check"] is False and [c["name"] for c in config["challengers"]] == ["shuttle-1"]
    obs = world.observed()
    failed = {"type": "Failed", "status": "True", "message": "DeadlineExceeded"}
    obs.objects["Job/shuttle-eval-1"] = {
        "kind": "Job",
        "metadata": job["metadata"],
        "status": {"conditions": [failed]},
    }
    plan = dm.plan(world.monitor, obs, at(1))
    decision = plan.status["lastDecision"]
    assert decision["decision"] == "rejected" and "DeadlineExceeded" in decision["reason"]
    assert [p["metadata"]["name"] for p in plan.patch_resources] == ["shuttle-1"]  # recorded on it


def test_a_challenger_that_exported_no_model_is_rejected_without_a_job() -> None:
    world = World(monitor())
    world.step(NOW, check=check(True, 0))
    world.runs["shuttle-1"]["status"] = {"phase": conditions.SUCCEEDED}
    world.step(at(0.5))
    assert world.monitor["status"]["lastDecision"]["reason"] == "the challenger exported no model"
    assert world.started_jobs == []


def _live(
    minutes: float, *, feature: bool = False, prediction: bool = False, drop: bool = False
) -> dict[str, Any]:
    """A check outcome with the live-performance and prediction-drift fields the check Job adds."""
    out = check(feature, minutes)
    out["predictionDrift"] = {"method": "jensenshannon", "distance": 0.31 if prediction else 0.02,
                              "threshold": 0.1, "drifted": prediction}  # fmt: skip
    out["performance"] = {
        "metric": "accuracy", "labels": 300, "unknownLabels": 4,
        "baseline": {"version": "v1", "value": 0.99, "low": 0.98, "high": 0.995, "rows": 800},
        "versions": [{"version": "v1", "value": 0.84 if drop else 0.99, "low": 0.8, "high": 0.88, "rows": 300}],
        "dropped": "0.8400 [0.8000, 0.8800] on 300 rows against the baseline" if drop else None,
    }  # fmt: skip
    fired = [
        n
        for n, on in (("featureDrift", feature), ("predictionDrift", prediction), ("performanceDrop", drop))
        if on
    ]
    out["triggers"] = fired
    return out


@pytest.mark.parametrize(
    ("triggers", "fired", "expected"),
    [
        (["featureDrift"], {"drop": True}, None),  # concept drift is invisible to the default trigger
        (["performanceDrop"], {"drop": True}, "performanceDrop"),
        (["performanceDrop"], {"feature": True}, None),
        (["predictionDrift", "performanceDrop"], {"prediction": True}, "predictionDrift"),
        (["featureDrift", "performanceDrop"], {"feature": True, "drop": True}, "featureDrift"),
        (["performanceDrop", "featureDrift"], {}, None),
    ],
)
def test_each_trigger_fires_only_when_chosen_and_is_named_on_the_challenger(
    triggers: list[str], fired: dict[str, bool], expected: str | None
) -> None:
    world = World(monitor(retrain={"triggers": triggers}))
    plan = world.step(NOW, check=_live(0, **fired))
    if expected is None:
        assert world.runs == {} and "lastTrigger" not in world.monitor["status"]["retrain"]
        return
    (child,) = plan.apply
    assert child["metadata"]["annotations"][dm.ANNOTATION_TRIGGER] == expected
    assert world.monitor["status"]["retrain"]["lastTrigger"] == expected
    assert world.monitor["status"]["triggers"] == [t for t in ("featureDrift", "predictionDrift", "performanceDrop")
                                                   if t in _live(0, **fired)["triggers"]]  # fmt: skip


def test_a_performance_drop_is_reported_in_status_and_one_warning_event() -> None:
    world = World(monitor(retrain={"triggers": ["performanceDrop"]}))
    plan = world.step(NOW, check=_live(0, drop=True))
    perf = world.monitor["status"]["performance"]
    assert (
        perf["versions"][0]["rows"] == 300 and perf["baseline"]["low"] == 0.98 and perf["unknownLabels"] == 4
    )
    assert [e.reason for e in plan.events].count(conditions.R_PERFORMANCE_DROPPED) == 1
    assert "performance drop (accuracy)" in world.monitor["status"]["retrain"]["lastReason"]
    assert conditions.R_PERFORMANCE_DROPPED not in [
        e.reason for e in world.step(at(1)).events
    ]  # folded in once


def test_fine_tune_mode_starts_the_challenger_from_the_served_champion() -> None:
    world = World(monitor(retrain={"mode": "fineTune"}))
    (child,) = world.step(NOW, check=check(True, 0)).apply
    assert child["spec"]["model"]["initFrom"] == "file:///art/ml/trainingruns/shuttle-v1/model"
    assert child["metadata"]["annotations"][dm.ANNOTATION_RETRAIN_MODE] == "fineTune"
    scratch = World(monitor())
    (plain,) = scratch.step(NOW, check=check(True, 0)).apply
    assert "initFrom" not in plain["spec"]["model"]
    assert plain["metadata"]["annotations"][dm.ANNOTATION_RETRAIN_MODE] == "fromScratch"


def test_a_status_from_before_triggers_still_retrains_on_feature_drift() -> None:
    world = World(monitor())
    old = check(True, 0)
    assert "triggers" not in old
    (child,) = world.step(NOW, check=old).apply
    assert child["metadata"]["annotations"][dm.ANNOTATION_TRIGGER] == "featureDrift"


def test_a_step_given_the_validated_monitor_validates_nothing_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter validates once per reconcile and hands the model to plan; plan and its helpers
    (the retrain trigger among them) use it instead of validating the spec again."""
    world = World(monitor())
    model = dm.validate(world.monitor)
    obs = world.observed(check=check(True, 0))
    resource = {**world.monitor, "status": {"checkJob": world.outcome_job}}
    monkeypatch.setattr(plans, "validate_spec", lambda *_: pytest.fail("the spec was validated again"))
    plan = dm.plan(resource, obs, NOW, model=model)
    assert [m["metadata"]["name"] for m in plan.apply if m["kind"] == "TrainingRun"] == ["shuttle-1"]
