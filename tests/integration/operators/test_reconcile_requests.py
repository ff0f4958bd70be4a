"""What the generic glue sends to the API server, counted at the emulator (real kopf, real HTTP).

The operator benchmark's cost per run is these requests; each test pins one of the savings
(operators/reconcile.py, flywheel/kube/execute.py) so it cannot silently come back.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import types
from typing import Any

import kmock
import pytest

from flywheel.controllers import plans, trainingrun
from flywheel.controllers import settings as settings_mod
from flywheel.kube import execute, objects
from operators import reconcile
from tests.integration.operators import conftest
from tests.integration.operators import test_trainingrun_operator as tr

pytestmark = pytest.mark.timeout(60)
SETTINGS = settings_mod.Settings()
PER_OBJECT = (kmock.action.FETCH, kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE)


def sent(em: Any, since: int = 0) -> collections.Counter[str]:
    """Requests per "METHOD plural[/sub]" after the first `since` ones (discovery, lists and
    watches, which kopf makes once at start-up, left out)."""
    out: collections.Counter[str] = collections.Counter()
    for r in em.requests()[since:]:
        if r.resource is None or r.action not in PER_OBJECT:
            continue
        sub = f"/{r.subresource}" if getattr(r, "subresource", None) else ""
        out[f"{r.method.value} {r.resource.plural}{sub}"] += 1
    return out


async def test_a_new_run_is_one_reconcile_with_one_status_write_and_no_echo(emulator: Any) -> None:
    async with conftest.running(tr.make_registry()):
        before = len(emulator.requests())
        await tr.create(tr.run_manifest())
        await conftest.eventually(lambda: tr.ready(emulator).get("reason") == "JobCreated", what="JobCreated")
        await asyncio.sleep(0.5)  # the job's ADDED event has come back by now
        counts = sent(emulator, before)
    # Never reconciled: no 404 reads before the creates; the Master pod is not read either (the
    # second plan reads it only from a finished job); ONE status patch already saying JobCreated,
    # the event, kopf's annotation patch; the job's ADDED event (our own write) re-read nothing.
    assert counts == {
        "POST trainingruns": 1,  # the test's own create
        "POST configmaps": 1,
        "POST pytorchjobs": 1,
        "PATCH trainingruns/status": 1,
        "POST events": 1,
        "PATCH trainingruns": 1,
    }
    reasons = [e["reason"] for e in emulator.live("v1/events", tr.NS)]
    assert reasons == ["CreatingJob"]  # the step-by-step world's events, no more


async def test_a_child_change_by_someone_else_still_reconciles(emulator: Any) -> None:
    async with conftest.running(tr.make_registry()):
        await tr.create(tr.run_manifest())
        await conftest.eventually(lambda: tr.ready(emulator).get("reason") == "JobCreated", what="JobCreated")
        await asyncio.sleep(0.3)
        before = len(emulator.requests())
        await tr.patch_status("kubeflow.org/v1", "PyTorchJob", "iris", tr.job_condition("Running"))
        await conftest.eventually(lambda: tr.run_status(emulator).get("phase") == "Running", what="Running")
        await asyncio.sleep(0.3)
        counts = sent(emulator, before)
    assert counts["PATCH pytorchjobs/status"] == 1  # the test's, standing in for the Training Operator
    assert counts["GET trainingruns"] == 1  # one reconcile: read the run, observe, write status
    assert counts["PATCH trainingruns/status"] == 1


async def test_a_no_op_reconcile_writes_nothing_and_reads_only_what_it_observes(emulator: Any) -> None:
    async with conftest.running(tr.make_registry()):
        await tr.create(tr.run_manifest())
        await conftest.eventually(lambda: tr.ready(emulator).get("reason") == "JobCreated", what="JobCreated")
        await asyncio.sleep(0.3)
    run = emulator.live(tr.RUNS, tr.NS)[0]
    before = len(emulator.requests())
    plan, outcome = await asyncio.to_thread(reconcile.reconcile_once, trainingrun, run, SETTINGS)
    assert outcome.writes == []
    assert sent(emulator, before) == {"GET pytorchjobs": 1, "GET configmaps": 1, "GET pods": 1}
    assert plan.requeue_after == trainingrun.REQUEUE_ACTIVE


async def test_converge_folds_the_child_echo_into_the_first_status(emulator: Any) -> None:
    """converge() ends where two step-by-step reconciles end: same status, same events."""
    manifest = tr.run_manifest("fold")
    run = await tr.create(manifest)
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    refs = trainingrun.observe_refs(run, SETTINGS)

    def plan_fn(view: Any, seen: plans.Observed) -> plans.Plan:
        return trainingrun.plan(dict(view), seen, now, SETTINGS)

    observed = await asyncio.to_thread(execute.observe, refs)
    plan, outcome = await asyncio.to_thread(execute.converge, run, plan_fn, observed, now)
    assert [w.split()[0] for w in outcome.writes] == ["created", "created", "status", "event"]
    folded = emulator.live(tr.RUNS, tr.NS)[0]["status"]
    # The step-by-step world: a second plan from a fresh read of everything says the same.
    ref = objects.ref_of(run)
    live = await asyncio.to_thread(objects.get, ref)
    again = trainingrun.plan(live, await asyncio.to_thread(execute.observe, refs), now, SETTINGS)
    assert objects.contains(folded, execute.status_patch(live, again))
    assert again.apply == [] and again.events == []
    assert folded["conditions"][0]["reason"] == "JobCreated"
    assert set(outcome.live) >= {"PyTorchJob/fold", "ConfigMap/fold-config"}
    assert plan.requeue_after == trainingrun.REQUEUE_ACTIVE


async def test_fresh_path_meets_a_foreign_job_and_falls_back_without_touching_it(emulator: Any) -> None:
    foreign = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
               "metadata": {"name": "iris", "namespace": tr.NS, "labels": {"team": "other"}},
               "spec": {"pytorchReplicaSpecs": {}}}  # fmt: skip
    await tr.create(foreign)
    async with conftest.running(tr.make_registry()):
        await tr.create(tr.run_manifest())
        await conftest.eventually(
            lambda: tr.ready(emulator).get("reason") == "JobNameConflict", what="JobNameConflict"
        )
    (job,) = emulator.live(tr.JOBS, tr.NS)
    assert job["metadata"]["labels"] == {"team": "other"}  # not patched into ours
    assert not any(r.method.value == "PATCH" and r.resource and r.resource.plural == "pytorchjobs"
                   for r in emulator.requests())  # fmt: skip
    # The one trace of the fresh path: the ConfigMap made before the job's 409. It belongs to
    # the run (garbage-collected with it); the step-by-step path would not have made it.
    (config_map,) = emulator.live(tr.CONFIGMAPS, tr.NS)
    assert config_map["metadata"]["ownerReferences"][0]["name"] == "iris"


async def test_fresh_path_after_a_crash_that_left_children_but_no_trace(emulator: Any) -> None:
    """An operator killed between its creates and any status or annotation: the next one takes
    the fresh path, meets the ConfigMap (409), and finishes through observe -> plan."""
    manifest = tr.run_manifest()
    run = await tr.create(manifest)
    config_map, _ = trainingrun.render_children(run, SETTINGS)
    await tr.create(config_map)
    async with conftest.running(tr.make_registry()):
        await conftest.eventually(lambda: tr.ready(emulator).get("reason") == "JobCreated", what="JobCreated")
    assert len(emulator.live(tr.JOBS, tr.NS)) == 1
    assert len(emulator.live(tr.CONFIGMAPS, tr.NS)) == 1


async def test_a_restart_reads_the_watched_children_from_the_watch_not_one_get_each(emulator: Any) -> None:
    """The first reconcile of each run after a start takes its job from the job watch's list;
    the ConfigMap and the Master pod (not watched) are still read, one GET each."""
    async with conftest.running(tr.make_registry()):
        for name in ("a", "b", "c"):
            await tr.create(tr.run_manifest(name))
        await conftest.eventually(
            lambda: all(tr.ready(emulator, n).get("reason") == "JobCreated" for n in "abc"), what="JobCreated"
        )
        await asyncio.sleep(0.3)
    before = len(emulator.requests())
    async with conftest.running(tr.make_registry()):
        await conftest.eventually(
            lambda: (
                sent(emulator, before)["PATCH trainingruns"] >= 3 or sent(emulator, before)["GET pods"] >= 3
            ),
            what="three resumed runs",
        )
        await asyncio.sleep(0.3)
        counts = sent(emulator, before)
    assert counts["GET pytorchjobs"] == 0
    assert counts["GET configmaps"] == 3 and counts["GET pods"] == 3
    assert not [k for k in counts if k.endswith("pytorchjobs") and not k.startswith("GET")]  # no re-create
    assert counts["PATCH trainingruns/status"] == 0  # the store said what the API would have


async def test_one_reconcile_validates_the_spec_once_though_it_plans_twice(emulator: Any) -> None:
    """A new run's reconcile plans twice (converge plans again from the server's answers to its
    creates); the spec is validated once and the model handed to both plans."""
    run = await tr.create(tr.run_manifest("once"))
    calls: collections.Counter[str] = collections.Counter()

    def validate(resource: Any) -> Any:
        calls["validate"] += 1
        return trainingrun.validate(resource)

    def plan(resource: Any, observed: Any, now: Any, settings: Any, model: Any = None) -> plans.Plan:
        calls["plan"] += 1
        assert model is not None
        return trainingrun.plan(resource, observed, now, settings, model)

    shim = types.SimpleNamespace(observe_refs=trainingrun.observe_refs, validate=validate, plan=plan)
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    out, outcome = await asyncio.to_thread(reconcile.reconcile_once, shim, run, SETTINGS, now)  # type: ignore[arg-type]
    assert calls == {"validate": 1, "plan": 2}
    assert out.status["conditions"][0]["reason"] == "JobCreated" and outcome.writes
