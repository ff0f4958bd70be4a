"""`flywheel get` on a SelfPlayRun nobody follows (started with --detach, or its CLI killed): the
runner's observe() has the controller plan from the tail of the trainer's log (as the operator
reads the Master pod's log), so status shows the newest step, and the realiser notices when the
trainer is gone (the job Suspended). A real supervised process (`sleep`) stands in for torchrun, so
this runs in a blink; the real torchrun path is tests/integration/local/test_selfplayrun_runner.py."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from rich import console as rich_console

from flywheel.api import conditions
from flywheel.local import realize, runners
from flywheel.local.runners import selfplayrun as runner

PER_TASK = {"abduction": 0.5, "deduction": 0.25, "induction": 0.0}


def context(tmp_path: Path) -> runners.Context:
    quiet = rich_console.Console(file=io.StringIO())
    return runners.Context.create(tmp_path / "home", console=quiet)


def running(ctx: runners.Context) -> tuple[dict[str, Any], Any]:
    """A stored run whose job the controller created and the realiser started (as `sleep 30`)."""
    manifest = {"apiVersion": "flywheel.dev/v1alpha1", "kind": "SelfPlayRun",
                "metadata": {"name": "azr"}, "spec": {"selfPlay": {"steps": 5}}}  # fmt: skip
    ctx.store.put(manifest)
    job = runner.SelfPlayRunJob(ctx, manifest)
    job.reconcile()  # the controller puts the NetworkPolicy, ConfigMap and PyTorchJob in the store
    child = job.job()
    assert child is not None and child["metadata"]["labels"]["flywheel.dev/owner-kind"] == "SelfPlayRun"
    workload = realize.owner_of(child)
    info = realize.start_pod(ctx, workload, ["sleep", "30"], {}, child["metadata"]["uid"])
    realize.mark_running(ctx, child)
    return job.reconcile(), info


def step(n: int) -> str:
    event = {"event": "step", "step": n, "steps": 5, "solveRate": PER_TASK, "buffers": {"deduction": n},
             "executor": {"programs": 7, "programsPerSecond": 350.0}, "checkpoint": f"file:///c/step-{n}.pt"}  # fmt: skip
    return json.dumps(event, sort_keys=True)


def test_observe_catches_up_while_running_then_suspends_when_the_trainer_is_gone(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    manifest, info = running(ctx)
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
        assert "step 2/5" in status["message"] and "solve rate abduction=0.5" in status["message"]
        assert runner.observe(ctx, seen) == seen  # nothing new: nothing written
    finally:
        ctx.supervisor.stop("SelfPlayRun", "azr", grace=2)
    assert not ctx.supervisor.alive(info)
    gone = runner.observe(ctx, ctx.store.get("SelfPlayRun", "azr") or {})
    assert gone["status"]["phase"] == conditions.SUSPENDED and gone["status"]["step"] == 2
    ready = next(c for c in gone["status"]["conditions"] if c["type"] == conditions.READY)
    assert ready["reason"] == conditions.R_JOB_SUSPENDED
