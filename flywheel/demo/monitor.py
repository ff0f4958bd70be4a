"""The DriftMonitor's part of the demo: check, retrain, evaluate and promote, one step at a time.

Each stage is a few reconciles of the DriftMonitor controller over the local store
(flywheel.local.runners.driftmonitor.reconcile), what `flywheel run -f
examples/driftmonitor-local.yaml` repeats on its schedule (its run_once does all of it in one call;
the demo takes it apart to time and explain each):

- check: a monitor with retrain.enabled false starts its check Job, which runs the Evidently check
  on the logged traffic as a local process (`python -m flywheel.drift`); the next reconcile reads
  its outcome into status;
- retrain: enabled once period-2's labels are committed, the next reconcile sees the drifted check
  and creates the challenger TrainingRun (named <monitor>-<n>; its trainer pins the data commit);
- the demo trains it with the TrainingRun runner (what run_once does) while traffic keeps flowing;
- decide: an evaluation Job scores both models on the challenger's holdout rows and, if the
  challenger wins, the next reconcile patches the Deployment, whose runner hot-swaps it into the
  running server.
"""

from __future__ import annotations

import time
from typing import Any

from flywheel import api, artifacts
from flywheel.api import conditions
from flywheel.controllers import plans
from flywheel.demo import dataset, flow, resources, stages

SETTLE_REQUESTS = 20
"""Requests the new champion answers under the running replay before the demo moves on."""


ROUNDS = 4
"""Reconciles a stage waits for its outcome (a Job is started, run, then read back)."""


def reconcile_until(demo: flow.Loop, manifest: plans.Manifest, done: Any) -> Any:
    """Reconcile until `done(plan)` (at most ROUNDS times); the last plan."""
    from flywheel.local.runners import driftmonitor

    meta = manifest["metadata"]
    for _ in range(ROUNDS):
        stored = demo.ctx.store.get(api.DriftMonitor.KIND, meta["name"]) or manifest
        plan = driftmonitor.reconcile(demo.ctx, stored)
        if done(plan):
            break
    return plan


def check_drift(demo: flow.Loop) -> None:
    fresh_monitor(demo)
    manifest = demo.ctx.store.put(resources.driftmonitor(demo.repo, retrain=False))
    plan = reconcile_until(demo, manifest, lambda p: p.status.get("lastCheckTime"))
    status = plan.status
    drift = plans.get_condition(status.get("conditions"), conditions.DRIFT_DETECTED) or {}
    if not status.get("lastCheckTime") or drift.get("status") == "Unknown":
        raise stages.StageError(
            f"the monitor did not judge drift: {drift.get('message') or 'no check ran'}",
            "replay more traffic (window.minRows) and run the demo again",
        )
    demo.facts.check = status
    if status.get("reportUri"):
        demo.facts.report_html = artifacts.Store(status["reportUri"]).local_path("report.html")
    columns = ", ".join(c["column"] for c in status.get("driftedColumns") or [])
    demo.st.note(
        f"Evidently: drift share {status.get('datasetDriftShare', 0):.2f} over "
        f"{status.get('rowsChecked')} rows; drifted columns: {columns or 'none'}"
    )
    demo.st.note(f"report: {demo.facts.report_html}")
    if not status.get("drifted"):
        raise stages.StageError(
            "no dataset drift was detected on period-2 traffic",
            "check spec.drift.datasetDriftShare in examples/driftmonitor-local.yaml",
        )


def fresh_monitor(demo: flow.Loop) -> None:
    """A previous demo's monitor and its challengers' records go; their artifacts stay (reused)."""
    from flywheel.controllers import driftmonitor as controller

    info = demo.ctx.supervisor.find(api.DriftMonitor.KIND, demo.monitor_name)
    if info is not None and demo.ctx.supervisor.alive(info):  # a `flywheel run --detach` loop
        demo.ctx.supervisor.stop(api.DriftMonitor.KIND, demo.monitor_name)
        demo.st.note(f"stopped the background driftmonitor/{demo.monitor_name} (pid {info.pid})")
    old = demo.ctx.store.get(api.DriftMonitor.KIND, demo.monitor_name)
    if old is None:
        return
    for run in controller.challengers(old, demo.ctx.store.list(api.TrainingRun.KIND)):
        demo.ctx.store.delete(api.TrainingRun.KIND, run["metadata"]["name"])
    demo.ctx.store.delete(api.DriftMonitor.KIND, demo.monitor_name)
    demo.st.note("started a fresh DriftMonitor (a previous demo's challengers resume from their checkpoints)")


def start_retrain(demo: flow.Loop) -> None:
    manifest = demo.ctx.store.put(resources.driftmonitor(demo.repo, retrain=True))
    plan = reconcile_until(demo, manifest, lambda p: any(m["kind"] == api.TrainingRun.KIND for m in p.apply))
    started = [m["metadata"]["name"] for m in plan.apply if m["kind"] == api.TrainingRun.KIND]
    if not started:
        status = (demo.ctx.store.get(api.DriftMonitor.KIND, demo.monitor_name) or {}).get("status") or {}
        raise stages.StageError(
            f"the monitor started no challenger: {_conditions(status)}",
            f"see `flywheel get dm {demo.monitor_name} -o yaml --home {demo.ctx.home}`",
        )
    (name,) = started
    run = demo.ctx.store.get(api.TrainingRun.KIND, name)
    assert run is not None
    demo.facts.runs["challenger"] = name
    demo.st.note(
        f"driftmonitor/{demo.monitor_name} created trainingrun/{name}: template data.rev "
        f"{run['spec']['data']['rev']} (its trainer pins the commit it resolves)"
    )


def train_challenger(demo: flow.Loop) -> None:
    run = demo.ctx.store.get(api.TrainingRun.KIND, demo.facts.runs["challenger"])
    assert run is not None
    demo.train(run, "challenger", dataset.tag(2))


def evaluate_and_promote(demo: flow.Loop) -> None:
    assert demo.player is not None
    before, started = demo.player.stats(), time.monotonic()
    stored = demo.ctx.store.get(api.DriftMonitor.KIND, demo.monitor_name)
    assert stored is not None
    challenger = demo.facts.runs["challenger"]
    plan = reconcile_until(
        demo, stored, lambda p: (p.status.get("lastDecision") or {}).get("challenger") == challenger
    )
    decision = plan.status.get("lastDecision") or {}
    if decision.get("challenger") != challenger:
        raise stages.StageError(
            "the monitor made no decision on the challenger",
            f"see `flywheel get dm {demo.monitor_name} -o yaml --home {demo.ctx.home}`",
        )
    demo.facts.decision = decision
    demo.st.note(f"decision: {decision['decision']}: {decision['reason']}")
    if decision["decision"] == "promoted":
        _watch_new_champion(demo)
    after = demo.player.stats()
    demo.facts.promotion = {
        "seconds": round(time.monotonic() - started, 2),
        "requests": after.requests - before.requests,
        "failedRequests": after.failed - before.failed,
    }
    demo.st.note(
        f"{demo.facts.promotion['requests']} requests during evaluation and swap, "
        f"{demo.facts.promotion['failedRequests']} failed"
    )


def _watch_new_champion(demo: flow.Loop) -> None:
    """Keep the traffic flowing until the new champion has answered SETTLE_REQUESTS requests."""
    assert demo.player is not None
    version = demo.facts.versions.get("challenger", "")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and demo.player.stats().versions.get(version, 0) < SETTLE_REQUESTS:
        time.sleep(0.1)
    served = demo.player.stats().versions.get(version, 0)
    demo.st.note(f"the new champion {version} has answered {served} requests of the running replay")


def _conditions(status: dict[str, Any]) -> str:
    texts = [
        f"{c.get('type')}={c.get('status')} ({c.get('message')})"
        for c in status.get("conditions") or []
        if c.get("type") != conditions.READY or c.get("status") != "True"
    ]
    return "; ".join(texts) or "no status"
