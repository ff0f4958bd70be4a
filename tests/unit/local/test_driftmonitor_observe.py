"""`flywheel get` on a DriftMonitor whose detached loop is gone: the runner's observe() says so in
Ready, once, and keeps a status that already says why the loop stopped. A real supervised process
(`sleep`) stands in for the loop, so this runs in a blink; the real detached loop is
tests/integration/local/test_driftmonitor_runner.py."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich import console as rich_console

from flywheel.api import conditions
from flywheel.controllers import plans
from flywheel.local import commands, runners
from flywheel.local.runners import driftmonitor as runner


def monitoring(tmp_path: Path, ready: str = "True", reason: str = "Monitoring") -> runners.Context:
    ctx = runners.Context.create(tmp_path / "home", console=rich_console.Console(file=io.StringIO()))
    ctx.store.put({"apiVersion": "flywheel.dev/v1alpha1", "kind": "DriftMonitor", "metadata": {"name": "dm"},
                   "spec": {"deploymentRef": "shuttle"}})  # fmt: skip
    conds = plans.set_condition(
        [], conditions.Condition(conditions.READY, ready, reason, "watching"), ctx.now(), 1
    )
    ctx.store.patch_status("DriftMonitor", "dm", {"phase": conditions.RUNNING, "conditions": conds})
    return ctx


def ready(manifest: dict[str, Any]) -> dict[str, Any]:
    return plans.get_condition(manifest["status"]["conditions"], conditions.READY) or {}


def test_a_live_loop_changes_nothing_and_a_dead_one_turns_ready_false_once(tmp_path: Path) -> None:
    ctx = monitoring(tmp_path)
    info = ctx.supervisor.start("DriftMonitor", "dm", ["sleep", "30"], tie_to_parent=True)
    stored = ctx.store.get("DriftMonitor", "dm")
    assert stored is not None and runner.observe(ctx, stored) == stored
    ctx.supervisor.stop("DriftMonitor", "dm", grace=2)
    assert not ctx.supervisor.alive(info)
    (seen,) = commands._observed(ctx.home, "DriftMonitor")  # what `flywheel get dm` shows
    assert ready(seen)["status"] == "False" and ready(seen)["reason"] == conditions.R_LOOP_EXITED
    assert f"pid {info.pid}" in seen["status"]["message"] and seen["status"]["phase"] == conditions.PENDING
    assert runner.observe(ctx, seen) == seen
    assert [e["reason"] for e in ctx.store.events("DriftMonitor", "dm")] == [conditions.R_LOOP_EXITED]


def test_a_loop_that_stopped_for_a_stated_reason_keeps_it(tmp_path: Path) -> None:
    ctx = monitoring(tmp_path, ready="False", reason="InvalidSpec")
    ctx.supervisor.start("DriftMonitor", "dm", ["true"], tie_to_parent=True)
    info = ctx.supervisor.find("DriftMonitor", "dm")
    assert info is not None and ctx.supervisor.wait(info) == 0
    stored = ctx.store.get("DriftMonitor", "dm")
    assert stored is not None and runner.observe(ctx, stored) == stored


def test_no_detached_loop_recorded_means_nothing_to_notice(tmp_path: Path) -> None:
    ctx = monitoring(tmp_path)  # e.g. `flywheel demo`, or a foreground loop that forgot its record
    ctx.supervisor.start("DriftMonitor", "dm", ["true"], tie_to_parent=True)
    ctx.supervisor.forget("DriftMonitor", "dm")
    stored = ctx.store.get("DriftMonitor", "dm")
    assert stored is not None and runner.observe(ctx, stored) == stored
