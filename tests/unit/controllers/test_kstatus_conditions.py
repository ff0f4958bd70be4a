"""Deployment and DriftMonitor read right by kstatus's rules (tests/unit/controllers/kstatus.py)
through a rollout, a wait, an invalid spec and a failure; before they published Reconciling and
Stalled, every one of these read Current."""

from __future__ import annotations

from typing import Any

from flywheel.controllers import deployment as dep_controller
from flywheel.controllers import driftmonitor as dm
from flywheel.controllers import plans
from tests.unit.controllers import kstatus
from tests.unit.controllers import test_deployment as td
from tests.unit.controllers import test_driftmonitor_plan as tdm


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
    plan = dm.plan(resource, dm.Observed(deployment=tdm.deployment()), tdm.NOW)
    assert read(resource, plan) == "Failed"
