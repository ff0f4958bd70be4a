"""Deployment, DriftMonitor and TrainingRun read right by kstatus's rules
(tests/unit/controllers/kstatus.py) through a rollout, a wait, an invalid spec and a failure;
before Deployment and DriftMonitor published Reconciling and Stalled, all of theirs read Current.
SelfPlayRun shares TrainingRun's status code (flywheel.controllers.jobstatus)."""

from __future__ import annotations

from typing import Any

from flywheel.controllers import deployment as dep_controller
from flywheel.controllers import driftmonitor as dm
from flywheel.controllers import plans, trainingrun
from flywheel.training import result as trainer_result
from tests.unit.controllers import kstatus, upstream
from tests.unit.controllers import test_deployment as td
from tests.unit.controllers import test_driftmonitor_plan as tdm
from tests.unit.controllers import test_trainingrun_plan as ttr


def read(resource: dict[str, Any], plan: plans.Plan) -> str:
    return kstatus.compute({**resource, "status": plan.status})


def test_deployment_through_a_wait_a_rollout_a_failure_and_an_invalid_spec() -> None:
    waiting = td.resource(champion={"fromTrainingRun": "train-a"})
    assert read(waiting, dep_controller.plan(waiting, td.observed(), td.NOW, td.SETTINGS)) == "InProgress"
    running = td.observed(td.training_run("train-a", "Running"))
    assert read(waiting, dep_controller.plan(waiting, running, td.NOW, td.SETTINGS)) == "InProgress"
    failed = td.observed(td.training_run("train-a", "Failed"))
    plan = dep_controller.plan(waiting, failed, td.NOW, td.SETTINGS)
    assert read(waiting, plan) == "Failed"
    stalled = plans.get_condition(plan.status["conditions"], "Stalled") or {}
    assert "train-a" in stalled["message"]

    res = td.resource(replicas=2)
    rolling = dep_controller.plan(res, td.observed(), td.NOW, td.SETTINGS)
    assert read(res, rolling) == "InProgress"  # the serving Deployment is being created
    half = td.live(td.by_kind(rolling.apply)["Deployment"], ready=1)
    assert read(res, dep_controller.plan(res, td.observed(half), td.NOW, td.SETTINGS)) == "InProgress"
    res, settled = td._converge(res, [], td.NOW)
    assert read(res, settled) == "Current"
    for type_ in ("Reconciling", "Stalled"):  # present and False once done, as on TrainingRun
        assert (plans.get_condition(settled.status["conditions"], type_) or {}).get("status") == "False"

    invalid = td.resource(challenger={"uri": f"{td.ART}/models/m2"})
    assert read(invalid, dep_controller.plan(invalid, td.observed(), td.NOW, td.SETTINGS)) == "Failed"


def test_driftmonitor_through_a_wait_a_check_a_missing_deployment_and_an_invalid_spec() -> None:
    world = tdm.World(tdm.monitor())
    world.step(tdm.NOW)  # no check has run yet
    assert kstatus.compute(world.monitor) == "InProgress"
    world.step(tdm.NOW, check=tdm.check(False, 0))
    assert kstatus.compute(world.monitor) == "Current"

    gone = tdm.World(tdm.monitor())
    gone.deployment = None
    gone.step(tdm.NOW, check=tdm.check(True, 0))
    assert kstatus.compute(gone.monitor) == "Failed"

    resource = tdm.monitor(schedule={"intervalSeconds": 1})
    plan = dm.plan(resource, plans.Observed({"Deployment/shuttle": tdm.deployment()}), tdm.NOW)
    assert read(resource, plan) == "Failed"


def test_trainingrun_through_a_start_a_run_a_success_a_failure_and_an_invalid_spec() -> None:
    res = upstream.trainingrun()
    assert read(res, trainingrun.plan(res, plans.Observed(), ttr.T0, ttr.SETTINGS)) == "InProgress"
    running = ttr.world(res, ttr.job_with(res, *ttr.RUNNING))
    assert read(res, trainingrun.plan(res, running, ttr.T0, ttr.SETTINGS)) == "InProgress"
    done = ttr.world(res, ttr.job_with(res, *ttr.DONE), ttr.pod(trainer_result.compact(ttr.SUCCESS)))
    assert read(res, trainingrun.plan(res, done, ttr.T0, ttr.SETTINGS)) == "Current"
    failed = ttr.world(res, ttr.job_with(res, *ttr.FAILED), ttr.pod(None))
    assert read(res, trainingrun.plan(res, failed, ttr.T0, ttr.SETTINGS)) == "Failed"
    invalid = upstream.trainingrun(resources={"gpusPerReplica": -1})
    assert read(invalid, trainingrun.plan(invalid, plans.Observed(), ttr.T0, ttr.SETTINGS)) == "Failed"


def test_a_stale_observed_generation_reads_in_progress_whatever_the_conditions() -> None:
    res = td.resource(replicas=2)
    res, settled = td._converge(res, [], td.NOW)
    edited = {**res, "metadata": {**res["metadata"], "generation": 2}}
    assert read(edited, settled) == "InProgress"


def test_a_succeeded_trainingrun_edited_afterwards_reads_current_and_healthy() -> None:
    """The edit is its own condition (SpecDiverged), not a failure: kstatus Current, and the Argo CD
    health Lua (platform/gitops/argocd/health.lua, run by tests.unit.platform.test_gitops) Healthy."""
    from tests.unit.platform import test_gitops

    res = upstream.trainingrun()
    job = ttr.job_with(res, *ttr.DONE)
    master = ttr.pod(trainer_result.compact(ttr.SUCCESS))
    done = {**res, "status": trainingrun.plan(res, ttr.world(res, job, master), ttr.T0, ttr.SETTINGS).status}
    edited = ttr.edit(done)
    for seen in (ttr.world(res, job, master), plans.Observed()):  # the job there; garbage-collected
        after = {
            **edited,
            "status": execute_merge(done["status"], trainingrun.plan(edited, seen, ttr.T0, ttr.SETTINGS)),
        }
        assert kstatus.compute(after) == "Current"
        assert test_gitops.health(after)["status"] == "Healthy"
        assert (plans.get_condition(after["status"]["conditions"], "SpecDiverged") or {}).get(
            "status"
        ) == "True"


def execute_merge(status: dict[str, Any], plan: plans.Plan) -> dict[str, Any]:
    return ttr.merge(status, plan.status)  # type: ignore[no-any-return]
