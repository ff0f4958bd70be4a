"""Two DriftMonitors on one Deployment (pure): the oldest owns it, ties by name; the other does
nothing, says who owns it once, and takes over when the owner is gone; a blocked monitor starts
no check Job."""

from __future__ import annotations

from typing import Any

from flywheel.api import conditions
from flywheel.controllers import driftmonitor as dm
from flywheel.controllers import driftmonitor_claims as claims
from flywheel.controllers import plans
from tests.unit.controllers import test_driftmonitor_plan as plan_tests

NOW = plan_tests.NOW


def named(name: str, created: str, ref: str = "shuttle", namespace: str = "ml") -> dict[str, Any]:
    resource = plan_tests.monitor(deploymentRef=ref)
    resource["metadata"].update(name=name, namespace=namespace, uid=f"uid-{name}", creationTimestamp=created)
    return resource


OLD, NEW = "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"


def test_the_oldest_owns_and_a_tie_goes_to_the_first_name() -> None:
    a, b = named("zeta", OLD), named("alpha", NEW)
    assert claims.claimed_by(b, [a, b]) == "zeta" and claims.claimed_by(a, [a, b]) is None
    c, d = named("beta", OLD), named("alpha", OLD)  # same second: by name
    assert claims.claimed_by(c, [c, d]) == "alpha" and claims.claimed_by(d, [d, c]) is None
    local = named("gamma", "2026-03-01T10:00:00.001Z")  # the local store's milliseconds
    assert claims.claimed_by(local, [local, a]) == "zeta"


def test_other_deployments_namespaces_and_deleting_monitors_do_not_count() -> None:
    me = named("mine", NEW)
    elsewhere = named("old", OLD, ref="other")
    other_ns = named("old2", OLD, namespace="prod")
    deleting = named("old3", OLD)
    deleting["metadata"]["deletionTimestamp"] = NEW
    assert claims.claimed_by(me, [me, elsewhere, other_ns, deleting]) is None
    assert claims.claimed_by(me, None) is None  # not observed: no conflict assumed
    unsaved = named("first", OLD)
    del unsaved["metadata"]["creationTimestamp"]  # not stored yet: the newest
    assert claims.claimed_by(unsaved, [me]) == "mine"


def test_a_blocked_monitor_plans_nothing_but_saying_so_once_and_takes_over_later() -> None:
    owner, twin = named("shuttle", OLD), named("twin", NEW)
    world = plan_tests.World(twin)
    observed = world.observed(check=plan_tests.check(True, 0))
    observed.objects["DriftMonitor/"] = {"items": [owner, twin]}
    twin["status"] = {"checkJob": world.outcome_job}  # a check that finished before the owner came
    first = dm.plan(twin, observed, NOW)
    assert first.apply == [] and first.patch_resources == []
    ready = plans.get_condition(first.status["conditions"], conditions.READY)
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", conditions.R_CLAIMED)
    assert "driftmonitor/shuttle" in ready["message"] and "delete one of them" in ready["message"]
    assert "lastCheckTime" not in first.status and "retrain" not in first.status
    assert [(e.reason, e.type) for e in first.events] == [(conditions.R_CLAIMED, "Warning")]
    twin["status"] = {**twin["status"], **first.status}
    assert dm.plan(twin, observed, NOW).events == []  # the next tick: no second event
    twin["metadata"]["annotations"] = {dm.ANNOTATION_APPROVE: "twin-1"}
    approved = dm.plan(twin, observed, NOW)
    assert approved.patch_resources == [] and approved.apply == []
    promoted = plans.get_condition(approved.status["conditions"], conditions.PROMOTED)
    assert promoted is not None and promoted["reason"] == conditions.R_CLAIMED
    assert "is not carried out: driftmonitor/shuttle owns" in promoted["message"]
    del twin["metadata"]["annotations"]
    observed.objects["DriftMonitor/"] = {"items": [twin]}  # the owner was deleted
    takeover = dm.plan(twin, observed, NOW)
    assert [m["metadata"]["name"] for m in takeover.apply if m["kind"] == "TrainingRun"] == ["twin-1"]
    ready = plans.get_condition(takeover.status["conditions"], conditions.READY)
    assert ready is not None and ready["status"] == "True"


def test_a_blocked_monitor_starts_no_check_job_and_the_owner_does() -> None:
    owner, twin = named("shuttle", OLD), named("twin", NEW)
    observed = plan_tests.World(twin).observed()
    observed.objects["DriftMonitor/"] = {"items": [owner, twin]}
    assert dm.plan(twin, observed, NOW).apply == []  # due (never checked), but not its Deployment
    started = dm.plan(owner, observed, NOW).apply
    assert [(m["kind"], m["metadata"]["name"]) for m in started] == [
        ("ConfigMap", f"shuttle-check-{int(NOW.timestamp()) // 60}"),
        ("Job", f"shuttle-check-{int(NOW.timestamp()) // 60}"),
    ]
