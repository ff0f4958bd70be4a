"""`flywheel get` on a SelfPlayRun nobody follows (started with --detach, or its CLI killed): the
runner's observe() brings status up to the newest step in the trainer's log, and notices when the
trainer is gone. A real supervised process (`sleep`) stands in for torchrun, so this runs in a blink;
the real torchrun path is tests/integration/local/test_selfplayrun_runner.py."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from rich import console as rich_console

from flywheel.api import conditions
from flywheel.local import runners
from flywheel.local.runners import selfplayrun as runner

PER_TASK = {"abduction": 0.5, "deduction": 0.25, "induction": 0.0}


def context(tmp_path: Path) -> runners.Context:
    quiet = rich_console.Console(file=io.StringIO())
    return runners.Context.create(tmp_path / "home", console=quiet)


def running(ctx: runners.Context) -> dict[str, Any]:
    manifest = {"apiVersion": "flywheel.dev/v1alpha1", "kind": "SelfPlayRun",
                "metadata": {"name": "azr"}, "spec": {"selfPlay": {"steps": 5}}}  # fmt: skip
    stored = ctx.store.put(manifest)
    ctx.store.patch_status("SelfPlayRun", "azr", {"phase": conditions.RUNNING, "observedGeneration": 1})
    assert stored["metadata"]["generation"] == 1
    return ctx.store.get("SelfPlayRun", "azr") or {}


def step(n: int) -> str:
    event = {"event": "step", "step": n, "steps": 5, "solveRate": PER_TASK, "buffers": {"deduction": n},
             "executor": {"programs": 7, "programsPerSecond": 350.0}, "checkpoint": f"file:///c/step-{n}.pt"}  # fmt: skip
    return json.dumps(event, sort_keys=True)


def test_observe_catches_up_while_running_then_suspends_when_the_trainer_is_gone(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    manifest = running(ctx)
    info = ctx.supervisor.start("SelfPlayRun", "azr", ["sleep", "30"], tie_to_parent=True)
    try:
        log = ctx.supervisor.log_path("SelfPlayRun", "azr")
        with log.open("a") as fh:
            fh.write(
                "\n".join([step(1), "UserWarning: something from torch", step(2), '{"event": "st']) + "\n"
            )
        seen = runner.observe(ctx, manifest)
        status = seen["status"]
        assert status["phase"] == conditions.RUNNING and status["step"] == 2
        assert status["solveRate"] == PER_TASK and status["checkpoint"] == "file:///c/step-2.pt"
        assert "step 2/5" in status["message"] and "350.0/s" in status["message"]
        assert runner.observe(ctx, seen) == seen  # nothing new: nothing written
    finally:
        ctx.supervisor.stop("SelfPlayRun", "azr", grace=2)
    assert not ctx.supervisor.alive(info)
    gone = runner.observe(ctx, ctx.store.get("SelfPlayRun", "azr") or {})
    assert gone["status"]["phase"] == conditions.SUSPENDED and gone["status"]["step"] == 2
    ready = next(c for c in gone["status"]["conditions"] if c["type"] == conditions.READY)
    assert ready["reason"] == conditions.R_JOB_SUSPENDED
