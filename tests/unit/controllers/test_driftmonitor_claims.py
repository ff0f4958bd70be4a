"""Two DriftMonitors on one Deployment (pure): the oldest owns it, ties by name; the other does
nothing, says who owns it once, and takes over when the owner is gone. Also loop.step on a
MemoryBackend: a blocked monitor checks, resolves, creates and patches nothing."""

from __future__ import annotations

import copy
from typing import Any

from flywheel.api import conditions
from flywheel.controllers import driftmonitor as dm
from flywheel.controllers import driftmonitor_claims as claims
from flywheel.controllers import plans
from flywheel.drift import loop
from tests.unit.controllers import test_driftmonitor_loop as loop_tests
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
    observed = dm.Observed(
        deployment=plan_tests.deployment(), check=plan_tests.check(True, 0), commit="a" * 40,
        monitors=[owner, twin],
    )  # fmt: skip
    first = dm.plan(twin, observed, NOW)
    assert first.apply == [] and first.patch_resources == []
    ready = plans.get_condition(first.status["conditions"], conditions.READY)
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", dm.R_CLAIMED)
    assert "driftmonitor/shuttle" in ready["message"] and "delete one of them" in ready["message"]
    assert "lastCheckTime" not in first.status and "retrain" not in first.status
    assert [(e.reason, e.type) for e in first.events] == [(dm.R_CLAIMED, "Warning")]
    twin["status"] = first.status
    assert dm.plan(twin, observed, NOW).events == []  # the next tick: no second event
    twin["metadata"]["annotations"] = {dm.ANNOTATION_APPROVE: "twin-1"}
    approved = dm.plan(twin, observed, NOW)
    assert approved.patch_resources == [] and approved.apply == []
    promoted = plans.get_condition(approved.status["conditions"], conditions.PROMOTED)
    assert promoted is not None and promoted["reason"] == dm.R_CLAIMED
    assert "is not carried out: driftmonitor/shuttle owns" in promoted["message"]
    del twin["metadata"]["annotations"]
    observed.monitors = [twin]  # the owner was deleted
    takeover = dm.plan(twin, observed, NOW)
    assert [m["metadata"]["name"] for m in takeover.apply] == ["twin-1"]
    ready = plans.get_condition(takeover.status["conditions"], conditions.READY)
    assert ready is not None and ready["status"] == "True"


def test_a_blocked_step_checks_resolves_and_writes_nothing_but_its_status() -> None:
    backend, answers = loop_tests.world(), loop_tests.Answers()
    loop_tests.monitor(backend)["metadata"]["creationTimestamp"] = OLD
    twin = copy.deepcopy(loop_tests.monitor(backend))
    twin["metadata"].update(name="twin", uid="u2", creationTimestamp=NEW)
    backend.put(twin)
    result = loop.step(backend, twin, NOW, answers)
    assert result.claimed_by == "mon" and result.started == []
    assert answers.checked == [] and backend.resolved == 0
    assert backend.writes == ["status", f"event {dm.R_CLAIMED}"]
    backend.objects.pop(("DriftMonitor", "mon"))  # deleted: the twin takes over at its next step
    stored = backend.objects[("DriftMonitor", "twin")]
    again = loop.step(backend, stored, NOW, answers)
    assert again.claimed_by is None and again.started == ["twin-1"] and len(answers.checked) == 1
