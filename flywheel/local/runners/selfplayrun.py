"""SelfPlayRun on one machine: the operator's controller, with local children (see runners.jobrun).

controllers.selfplayrun renders the NetworkPolicy, the ConfigMap and the PyTorchJob into the store
(the policy is stored, not enforced: the executor's own sandbox is what fences programs here); the
realiser runs the job as `torchrun --standalone -m flywheel.selfplay` (`python -m
torch.distributed.run`, never a `torchrun` found on PATH). Per-step status comes the operator's
way: at each step event the controller plans from the tail of the Master's log (here the local log
file, on Kubernetes GET pods/log), so `flywheel get spr` shows step, buffers, rates and the latest
checkpoint while it plays; the outcome comes from the termination message.

The bar, the resume note and the closing summary (did the signal move, what was earned, held-out
solve rate) come from rank 0's JSON event lines as this CLI follows them.
"""

from __future__ import annotations

import datetime
from typing import Any

from flywheel.api import selfplayrun as api
from flywheel.api.common import Manifest
from flywheel.controllers import plans
from flywheel.controllers import selfplayrun as controller
from flywheel.local import execute, progress
from flywheel.local.runners import Context, jobrun

KIND = api.SelfPlayRun.KIND


class SelfPlayRunJob(jobrun.JobRun):
    controller = controller
    noun = "selfplayrun"

    def __init__(self, ctx: Context, manifest: Manifest) -> None:
        super().__init__(ctx, manifest)
        self.steps = int(((manifest.get("spec") or {}).get("selfPlay") or {}).get("steps") or 0) or None
        self.seen: list[progress.Event] = []  # the first and the newest step event this CLI saw
        self.earned = Earned()
        self.held: list[progress.Event] = []  # the first and the newest held-out evaluation seen

    def plan_fn(self, now: datetime.datetime) -> execute.PlanFn:
        """The controller's plan with the log tail read first, as operators/selfplayrun.py does."""

        def plan(resource: Any, observed: plans.Observed) -> plans.Plan:
            tail = jobrun.log_tail(self.log, controller.LOG_TAIL_LINES)
            return controller.plan(resource, observed, now, self.settings, log_tail=tail)

        return plan

    def begin(self, bars: progress.Bars) -> None:
        bars.update("steps", completed=0, total=self.steps)

    def on_event(self, event: progress.Event, bars: progress.Bars) -> bool:
        kind = event.get("event")
        if kind == "start":
            done = event.get("step") or 0
            if event.get("resumed"):
                self.ctx.console.print(f"{self.ref}: resuming after step {done}", highlight=False)
            bars.update("steps", completed=done, total=event.get("steps") or self.steps)
        elif kind == "warmStart" and isinstance(event.get("steps"), int):
            bars.update(
                "warm-start",
                completed=event.get("step"),
                total=event["steps"],
                note=f"loss {event.get('loss')}",
            )
        elif kind == "warmStart" and event.get("cache"):
            self.ctx.console.print(f"{self.ref}: warm-started policy from {event['cache']}", highlight=False)
        elif kind == "heldOut":
            self.held = [*self.held[:1], event]
        elif kind == "step":
            self.seen = [*self.seen[:1], event]
            self.earned.add(event)
            bars.update("steps", completed=event.get("step"), total=self.steps, note=_note(event))
            return True  # status takes the step from the log tail now
        return False

    def report(self, resource: Manifest) -> None:
        status = resource.get("status") or {}
        self.ctx.console.print(
            f"[green]{self.ref}: succeeded[/green] {status.get('message')}", highlight=False
        )
        if self.seen:
            self.ctx.console.print(f"  signal     {_signal(self.seen[0], self.seen[-1])}", highlight=False)
            self.ctx.console.print(f"  rewards    {self.earned.line()}", highlight=False)
        if self.held:
            self.ctx.console.print(f"  held-out   {_held_out(self.held[0], self.held[-1])}", highlight=False)
        result = self.ctx.supervisor.run_dir(self.kind, self.name) / "result.json"
        self.ctx.console.print(
            f"  checkpoint {status.get('checkpoint', '-')}\n  result     {result}", highlight=False
        )


def run(ctx: Context, manifest: Manifest) -> bool:
    """Drive one stored SelfPlayRun to its end (see runners.jobrun)."""
    return SelfPlayRunJob(ctx, manifest).run()


def observe(ctx: Context, manifest: Manifest) -> Manifest:
    """Bring status up to the trainer's newest step (from the log tail) and notice a trainer that
    ended or is gone without a CLI following it (killed CLI, or --detach)."""
    return jobrun.observe(ctx, manifest, SelfPlayRunJob)


class Earned:
    """Whether the run earned anything: steps with valid proposals, with solver rewards above the
    malformed -1, and the executor's program count (all zero means the policy never produced a
    well-formed answer: the random tiny policy without warmStart)."""

    def __init__(self) -> None:
        self.steps = self.valid = self.solved = self.programs = 0

    def add(self, event: progress.Event) -> None:
        self.steps += 1
        valid = event.get("validProposalRate") if isinstance(event.get("validProposalRate"), dict) else {}
        rewards = event.get("solverReward") if isinstance(event.get("solverReward"), dict) else {}
        executor = event.get("executor") if isinstance(event.get("executor"), dict) else {}
        self.valid += any(isinstance(v, int | float) and v > 0 for v in (valid or {}).values())
        self.solved += any(isinstance(v, int | float) and v > -1 for v in (rewards or {}).values())
        programs = (executor or {}).get("programs")
        self.programs += programs if isinstance(programs, int) else 0

    def line(self) -> str:
        return (
            f"valid proposals in {self.valid}/{self.steps} steps, solver rewards above -1 in "
            f"{self.solved}/{self.steps} steps, {self.programs} programs run by the executor"
        )


def _held_out(first: progress.Event, last: progress.Event) -> str:
    """Greedy held-out solve rate per task type, first and newest evaluation this CLI saw."""
    before, after = first.get("solveRate"), last.get("solveRate")
    if not isinstance(before, dict) or not isinstance(after, dict):
        return f"steps {first.get('step')}..{last.get('step')}: no figures"
    rates = ", ".join(
        f"{task} {before.get(task, 0):.2f} -> {after.get(task, 0):.2f}" for task in sorted(after)
    )
    return f"greedy solve rate, steps {first.get('step')}..{last.get('step')}: {rates}"


def _mean(event: progress.Event, key: str) -> float:
    values = event.get(key) if isinstance(event.get(key), dict) else {}
    numbers = [v for v in (values or {}).values() if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else 0.0


def _signal(first: progress.Event, last: progress.Event) -> str:
    """Did anything move? Mean over task types at the first and the last step this CLI saw."""
    keys = (
        ("solveRate", "solve rate"),
        ("solverReward", "solver reward"),
        ("validProposalRate", "valid proposals"),
    )
    moved = ", ".join(f"{name} {_mean(first, key):.2f} -> {_mean(last, key):.2f}" for key, name in keys)
    return f"steps {first.get('step')}..{last.get('step')}: {moved}"


def _note(event: progress.Event) -> str:
    """The bar's note: mean solve rate, mean proposer reward, executor throughput."""
    executor = event.get("executor") if isinstance(event.get("executor"), dict) else {}
    rate = (executor or {}).get("programsPerSecond", 0)
    return (
        f"solve {_mean(event, 'solveRate'):.2f} propose {_mean(event, 'proposerReward'):+.2f} exec {rate}/s"
    )
