"""SelfPlayRun on one machine: `torchrun --standalone -m flywheel.selfplay` under the supervisor.

What the operator does with a PyTorchJob, with local adapters: the workload config is written to
<home>/runs/selfplayrun/<name>/config.json, torchrun (`python -m torch.distributed.run`, never a
`torchrun` found on PATH) runs as a supervised process group, and rank 0's JSON event lines
({"event": "start"|"step"|"done"}, see flywheel.selfplay.trainer) drive a progress bar and a
status patch per step: step, buffers, valid-proposal rate, solve rate and proposer reward per task
type, the latest checkpoint, and in status.message the solver reward, loss and executor throughput.
The outcome comes from result.json (success) or the termination log (the trainer's own words when
it failed). Status uses the operator's vocabulary, so `flywheel get spr -o yaml` reads like
`kubectl get`.

Resuming: the trainer checkpoints under <artifacts>/checkpoints and resumes from the newest. A run
interrupted (Ctrl-C, or the CLI killed) is Suspended; the next `flywheel run` starts torchrun again
and it continues from there. A run already Succeeded for the current generation is not run again;
a new generation moves the old checkpoints aside, so it starts afresh.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from flywheel import artifacts
from flywheel.api import conditions, contract
from flywheel.api import selfplayrun as api
from flywheel.controllers import plans, selfplayresult
from flywheel.local import progress, supervisor, torchrun
from flywheel.local.runners import Context
from flywheel.local.runners import status as status_mod

KIND = api.SelfPlayRun.KIND
TERMINATION_FILE = "termination-log"
CATCH_UP_BYTES = 256 * 1024  # a step event is ~1 KB; torch warnings may sit in between
Manifest = dict[str, Any]


def run(ctx: Context, manifest: Manifest) -> bool:
    """Drive one stored SelfPlayRun to Succeeded or Failed (see the module docstring)."""
    job = _Job(ctx, manifest)
    status = manifest.get("status") or {}
    if status.get("phase") == conditions.SUCCEEDED and status.get("observedGeneration") == job.generation:
        ctx.console.print(f"{job.ref}: already succeeded (generation {job.generation}), skipping")
        return True
    try:
        return job.drive(status)
    except KeyboardInterrupt:
        ctx.supervisor.stop(KIND, job.name)
        job.status.suspend("interrupted; run `flywheel run` again to resume from the last checkpoint")
        raise
    except Exception as exc:  # a bug, not a user mistake: record it, stop the workload, show the trace
        ctx.supervisor.stop(KIND, job.name)
        job.status.fail(conditions.R_FAILED, f"{type(exc).__name__}: {exc}"[:500], conditions.READY)
        raise


def observe(ctx: Context, manifest: Manifest) -> Manifest:
    """Bring status up to the trainer's newest step, and notice a trainer that is gone without a
    CLI to record it (killed CLI, or --detach)."""
    status = manifest.get("status") or {}
    name = manifest["metadata"]["name"]
    info = ctx.supervisor.find(KIND, name)
    if status.get("phase") != conditions.RUNNING or info is None:
        return manifest
    alive = ctx.supervisor.alive(info)
    job = _Job(ctx, manifest)
    job.catch_up()  # started with --detach, or its CLI was killed: nobody followed the log
    if not alive and job.result_path.exists():
        job.finish(exit_code=None)
    elif not alive:
        job.status.suspend("the trainer is gone; run `flywheel run` again to resume from the last checkpoint")
    return ctx.store.get(KIND, name, job.namespace) or manifest


class _Job:
    """One attempt at a SelfPlayRun: its paths, its status patches, its events."""

    def __init__(self, ctx: Context, manifest: Manifest) -> None:
        self.ctx = ctx
        self.resource = api.SelfPlayRun.model_validate({k: v for k, v in manifest.items() if k != "status"})
        self.spec = self.resource.spec
        self.name = self.resource.name
        self.namespace = self.resource.namespace
        self.generation = int(manifest["metadata"].get("generation") or 1)
        self.status = status_mod.Writer(ctx, manifest)
        uri = ctx.artifacts_uri(self.spec.artifacts.uri)
        self.artifacts_root = uri
        self.root = artifacts.run_root(uri, self.namespace, api.SelfPlayRun.PLURAL, self.name)
        self.run_dir = ctx.supervisor.run_dir(KIND, self.name)
        self.result_path = self.run_dir / contract.RESULT_FILE
        self.termination_path = self.run_dir / TERMINATION_FILE
        self.log = ctx.supervisor.log_path(KIND, self.name)
        self.offset = _size(self.log)
        self.steps = self.spec.self_play.steps
        self.status_step = (manifest.get("status") or {}).get("step")
        self.seen: list[progress.Event] = []  # the first and the newest step event this CLI saw
        self.earned = Earned()
        self.held: list[progress.Event] = []  # the first and the newest held-out evaluation seen

    @property
    def ref(self) -> str:
        return f"selfplayrun/{self.name}"

    def drive(self, status: dict[str, Any]) -> bool:
        same_generation = status.get("observedGeneration") == self.generation
        if not same_generation and status.get("observedGeneration") is not None:
            self._archive_checkpoints(status["observedGeneration"])
        live = self.ctx.supervisor.find(KIND, self.name)
        if same_generation and live is not None and self.ctx.supervisor.alive(live):
            self.ctx.console.print(f"{self.ref}: already playing (pid {live.pid}), following it")
            return True if self.ctx.detach else self._follow_to_end(live)
        self.status.patch(
            {
                "phase": conditions.RUNNING,
                "observedGeneration": self.generation,
                "message": None,
                "startTime": (same_generation and status.get("startTime"))
                or plans.now_rfc3339(self.ctx.now()),
                "completionTime": None,
            },
            (conditions.READY, "False", conditions.R_RECONCILING, "starting torchrun"),
        )
        info = self._start()
        if self.ctx.detach:
            self.ctx.console.print(f"{self.ref}: started (pid {info.pid}); see `flywheel get spr`")
            return True
        return self._follow_to_end(info)

    def _start(self) -> supervisor.ProcessInfo:
        spec = self.spec.to_dict()
        spec["artifacts"]["uri"] = self.artifacts_root
        config = {"name": self.name, "namespace": self.namespace, "spec": spec, "artifactsUri": self.root.uri}
        config_path = self.run_dir / contract.CONFIG_FILE
        artifacts.atomic_write_text(config_path, json.dumps(config, indent=2))
        for stale in (self.result_path, self.termination_path):  # what is here is this attempt's
            stale.unlink(missing_ok=True)
        launch = torchrun.launch(self.spec.resources, contract.SELFPLAY_MODULE, self.ctx.cores())
        env = {
            **launch.env,
            contract.ENV_CONFIG: str(config_path),
            contract.ENV_RESULT_PATH: str(self.result_path),
            contract.ENV_TERMINATION_LOG: str(self.termination_path),
            contract.ENV_ARTIFACTS_URI: self.root.uri,
            contract.ENV_RUN_NAME: self.name,
            contract.ENV_NAMESPACE: self.namespace,
        }
        self.offset = _size(self.log)
        info = self.ctx.supervisor.start(
            KIND, self.name, launch.argv, env, cwd=self.ctx.cwd, tie_to_parent=not self.ctx.detach
        )
        job_name = f"torchrun-{info.pid}"
        message = f"torchrun with {launch.nproc} workers, {launch.threads} threads each"
        self.status.patch(
            {"jobName": job_name},
            (conditions.READY, "False", conditions.R_JOB_RUNNING, f"self-play: {message}"),
        )
        self.status.event(conditions.R_JOB_CREATED, f"started {job_name}: {message}")
        return info

    def _follow_to_end(self, info: supervisor.ProcessInfo) -> bool:
        with progress.Bars(self.ctx.console) as bars:
            bars.update("steps", completed=0, total=self.steps)
            for line in progress.follow(self.log, self.offset, lambda: self.ctx.supervisor.alive(info)):
                self.on_line(line, bars)
        return self.finish(self.ctx.supervisor.exit_code(info))

    def catch_up(self) -> None:
        """Record the newest step in the log's tail (a run whose CLI was not there to see it)."""
        try:
            with self.log.open("rb") as fh:
                fh.seek(max(0, _size(self.log) - CATCH_UP_BYTES))
                lines = fh.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return
        for line in reversed(lines):
            event = progress.parse_event(line)
            if event is not None and event.get("event") == "step":
                if event.get("step") != self.status_step:
                    self.on_event(event, None)
                return

    def on_line(self, line: str, bars: progress.Bars | None) -> None:
        event = progress.parse_event(line)
        if event is not None:
            self.on_event(event, bars)

    def on_event(self, event: progress.Event, bars: progress.Bars | None) -> None:
        kind = event.get("event")
        if kind == "start" and bars is not None:
            done = event.get("step") or 0
            if event.get("resumed"):
                self.ctx.console.print(f"{self.ref}: resuming after step {done}", highlight=False)
            bars.update("steps", completed=done, total=event.get("steps") or self.steps)
        elif kind == "warmStart" and bars is not None and isinstance(event.get("steps"), int):
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
            fields = selfplayresult.fields(event)
            message = _step_message(event, self.steps)
            self.status.patch(
                {**fields, "message": message},
                (conditions.READY, "False", conditions.R_JOB_RUNNING, message),
            )
            if bars is not None:
                bars.update("steps", completed=fields.get("step"), total=self.steps, note=_note(event))

    def finish(self, exit_code: int | None) -> bool:
        """Record the outcome from result.json, or the trainer's last words when it failed."""
        result = _read_json(self.result_path)
        if result is None or exit_code not in (0, None):
            said = _read_json(self.termination_path) or {}
            why = said.get("message") if said.get("phase") == conditions.FAILED else None
            where = f"see `flywheel logs selfplayrun/{self.name}`"
            message = (
                f"self-play failed: {why}; {where}"
                if why
                else f"the trainer exited with code {exit_code}; {where}"
            )
            return self.status.fail(conditions.R_FAILED, message, conditions.READY)
        fields = selfplayresult.fields(result)
        message = "self-play finished: " + selfplayresult.summary(result, self.steps)
        self.status.patch(
            {
                **fields,
                "phase": conditions.SUCCEEDED,
                "message": message,
                "completionTime": plans.now_rfc3339(self.ctx.now()),
            },
            (conditions.READY, "True", conditions.R_SUCCEEDED, message),
        )
        self.status.event(conditions.R_SUCCEEDED, message)
        self.ctx.console.print(f"[green]{self.ref}: succeeded[/green] {message}", highlight=False)
        if self.seen:
            self.ctx.console.print(f"  signal     {_signal(self.seen[0], self.seen[-1])}", highlight=False)
            self.ctx.console.print(f"  rewards    {self.earned.line()}", highlight=False)
        if self.held:
            self.ctx.console.print(f"  held-out   {_held_out(self.held[0], self.held[-1])}", highlight=False)
        self.ctx.console.print(
            f"  checkpoint {fields.get('checkpoint', '-')}\n  result     {self.result_path}", highlight=False
        )
        return True

    def _archive_checkpoints(self, old_generation: int) -> None:
        """A new spec must not resume an old one's checkpoints: move them aside (kept, not deleted)."""
        if self.root.local_root is None:
            return
        old = self.root.local_path(contract.CHECKPOINTS_DIR)
        if old.exists():
            target = old.with_name(f"{contract.CHECKPOINTS_DIR}-generation-{old_generation}")
            shutil.rmtree(target, ignore_errors=True)
            old.rename(target)


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


def _step_message(event: progress.Event, total: int) -> str:
    """status.message while playing: the summary plus the figures status has no field for."""
    parts = [selfplayresult.summary(event, total)]
    rewards = event.get("solverReward")
    if isinstance(rewards, dict) and rewards:
        parts.append("solver reward " + ", ".join(f"{k}={v:.3g}" for k, v in sorted(rewards.items())))
    executor = event.get("executor") if isinstance(event.get("executor"), dict) else {}
    if executor:
        parts.append(
            f"executor {executor.get('programs', 0)} programs, {executor.get('programsPerSecond', 0)}/s"
        )
    if isinstance(event.get("loss"), int | float):
        parts.append(f"loss {event['loss']:.4g}")
    return "; ".join(parts)


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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
