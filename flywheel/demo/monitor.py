"""The DriftMonitor's part of the demo: check, retrain, evaluate and promote, one step at a time.

Each stage is one `flywheel.drift.loop.step` over the local runner's LocalBackend, the step that
`flywheel run -f examples/driftmonitor-local.yaml` repeats on its schedule (its run_once does the
same three things in one call; the demo takes them apart to time and explain each):

- check: a monitor with retrain.enabled false runs its Evidently check on the logged traffic;
- retrain: enabled once period-2's labels are committed, the next step sees the drifted check and
  creates the challenger TrainingRun (named <monitor>-<n>, data.rev pinned to the resolved commit);
- the demo trains it with the TrainingRun runner (what run_once does) while traffic keeps flowing;
- decide: the next step scores both models on the challenger's holdout rows and, if the challenger
  wins, patches the Deployment, whose runner hot-swaps it into the running server.
"""

from __future__ import annotations

import time
from typing import Any

from flywheel import api, artifacts
from flywheel.api import conditions
from flywheel.demo import dataset, flow, resources, stages

SETTLE_REQUESTS = 20
"""Requests the new champion answers under the running replay before the demo moves on."""


def _step(demo: flow.Loop, manifest: dict[str, Any]) -> Any:
    from flywheel.drift import loop
    from flywheel.local.runners import driftmonitor

    return loop.step(driftmonitor.LocalBackend(demo.ctx), manifest, demo.ctx.now())


def check_drift(demo: flow.Loop) -> None:
    _fresh_monitor(demo)
    result = _step(demo, demo.ctx.store.put(resources.driftmonitor(demo.repo, retrain=False)))
    if result.check is None or result.check.note:
        raise stages.StageError(
            f"the monitor did not judge drift: {result.check.note if result.check else 'no check ran'}",
            "replay more traffic (window.minRows) and run the demo again",
        )
    status = result.check.status
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


def _fresh_monitor(demo: flow.Loop) -> None:
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
    result = _step(demo, demo.ctx.store.put(resources.driftmonitor(demo.repo, retrain=True)))
    if not result.started:
        status = (demo.ctx.store.get(api.DriftMonitor.KIND, demo.monitor_name) or {}).get("status") or {}
        raise stages.StageError(
            f"the monitor started no challenger: {_conditions(status)}",
            f"see `flywheel get dm {demo.monitor_name} -o yaml --home {demo.ctx.home}`",
        )
    (name,) = result.started
    run = demo.ctx.store.get(api.TrainingRun.KIND, name)
    assert run is not None
    demo.facts.runs["challenger"] = name
    demo.st.note(
        f"driftmonitor/{demo.monitor_name} created trainingrun/{name}: template data.rev "
        f"{dataset.tag(2)} pinned to commit {run['spec']['data']['rev'][:12]}"
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
    result = _step(demo, stored)
    if not result.decisions:
        raise stages.StageError(
            "the monitor made no decision on the challenger",
            f"see `flywheel get dm {demo.monitor_name} -o yaml --home {demo.ctx.home}`",
        )
    decision = result.decisions[-1]
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
