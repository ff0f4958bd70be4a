"""The one local runner of PyTorchJob-backed kinds (TrainingRun, SelfPlayRun): the controller decides.

`run` loops observe -> plan (the kind's pure controller, the same one the operator runs) -> local
execute (flywheel.local.execute: children into the store, status, events) -> realise
(flywheel.local.realize: the stored PyTorchJob becomes a supervised torchrun, and its status and
Master pod are written as the Training Operator would) until the run is done. So conditions,
phases, events and the spec-change rule are the operator's: a spec changed after the job started
leaves the run going with the spec it started with and Stalled (SpecChangedAfterStart), as on
Kubernetes; delete the run (or give it a new name) to train with the new spec.

What stays local is the UX: progress bars from the trainer's JSON event lines, Ctrl-C (the
processes stop, the job is Suspended, the next `flywheel run` restarts it and the trainer resumes
from its newest checkpoint), `--detach`, attaching to a run already training, and a run already
Succeeded for its generation is not run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from flywheel.api import conditions
from flywheel.api.common import Manifest
from flywheel.controllers import jobstatus, plans, pytorchjob
from flywheel.controllers import settings as settings_mod
from flywheel.local import execute, logview, progress, realize
from flywheel.local.runners import Context

WAIT = 0.5
"""Seconds between two looks while a child waits for something (a ConfigMap being put back)."""
MAX_IDLE_ROUNDS = 120
"""Rounds without a process and without a change before the runner gives up (a bug, not a state)."""


class JobRun:
    """One `flywheel run` of a PyTorchJob-backed resource. Subclasses name the controller and may
    hook the trainer's events (`on_event`), the bars (`begin`) and the closing lines (`report`)."""

    controller: ModuleType
    noun: str  # trainingrun, selfplayrun: how the CLI names the kind

    def __init__(self, ctx: Context, manifest: Manifest) -> None:
        self.ctx = ctx
        meta = manifest["metadata"]
        self.kind = manifest["kind"]
        self.name = meta["name"]
        self.namespace = meta.get("namespace") or "default"
        self.generation = meta.get("generation")
        self.settings = settings_mod.Settings()
        self.job_name = pytorchjob.job_name(self.name)
        self.log = ctx.supervisor.log_path(self.kind, self.name)

    @property
    def ref(self) -> str:
        return f"{self.noun}/{self.name}"

    # --- hooks ----------------------------------------------------------------------------------
    def prepare(self, resource: Manifest) -> None:
        """Before the first reconcile (e.g. create the example dataset)."""

    def begin(self, bars: progress.Bars) -> None:
        """Once, when the bars are up."""

    def on_event(self, event: progress.Event, bars: progress.Bars) -> bool:
        """A trainer event line; return True when status should be reconciled now."""
        return False

    def plan_fn(self, now: Any) -> execute.PlanFn | None:
        """The plan with the observation completed by this adapter (None: controller.plan)."""
        return None

    def report(self, resource: Manifest) -> None:
        """Closing lines for a run that ended healthy."""
        message = (resource.get("status") or {}).get("message") or ""
        self.ctx.console.print(f"[green]{self.ref}: succeeded[/green] {message}", highlight=False)

    # --- the loop -------------------------------------------------------------------------------
    def current(self) -> Manifest:
        got = self.ctx.store.get(self.kind, self.name, self.namespace)
        assert got is not None, f"{self.ref} vanished from the store"
        return got

    def job(self) -> Manifest | None:
        return self.ctx.store.get(pytorchjob.KIND, self.job_name, self.namespace)

    def reconcile(self) -> Manifest:
        now = self.ctx.now()
        execute.reconcile_once(
            self.ctx.store, self.controller, self.current(), self.settings, now, self.plan_fn(now)
        )
        return self.current()

    def run(self) -> bool:
        resource = self.current()
        status = resource.get("status") or {}
        ready = plans.get_condition(status.get("conditions"), conditions.READY) or {}
        done = (
            status.get("phase") == conditions.SUCCEEDED
            and status.get("observedGeneration") == self.generation
        )
        if done and ready.get("status") == "True":  # not when Stalled by a spec change: say so again
            self.ctx.console.print(f"{self.ref}: already succeeded (generation {self.generation}), skipping")
            return True
        self.prepare(resource)
        try:
            with progress.Bars(self.ctx.console) as bars:
                self.begin(bars)
                started = self._drive(bars)
        except KeyboardInterrupt:
            self._stop("interrupted; run `flywheel run` again to resume from the last checkpoint")
            self.ctx.console.print(f"{self.ref}: interrupted; run `flywheel run` again to resume")
            raise
        except Exception as exc:  # a bug, not a user mistake: stop the workload, show the trace
            self._stop(f"the local runner failed: {type(exc).__name__}: {exc}"[:500])
            raise
        if started and self.ctx.detach:
            return True
        return self._outcome(self.current())

    def _drive(self, bars: progress.Bars) -> bool:
        """Reconcile and realise until the run is done; True when it was left running (--detach)."""
        idle = 0
        while True:
            resource = self.reconcile()
            job = self.job()
            if self._done(resource, job):
                return False
            offset = _size(self.log)
            did = realize.sync_job(self.ctx, job) if job is not None else "no job"
            if did in ("started", "running"):
                if self.ctx.detach:
                    verb = "started" if did == "started" else "already running"
                    self.ctx.console.print(f"{self.ref}: {verb}; see `flywheel get {self.noun}`")
                    self.reconcile()
                    return True
                if did == "running":
                    self.ctx.console.print(f"{self.ref}: already running, following it")
                self.reconcile()
                self._follow(bars, offset)
                idle = 0
            elif did == "finished":
                idle = 0
            else:  # waiting for a child to be put back, or a job being recreated
                idle += 1
                if idle > MAX_IDLE_ROUNDS:
                    raise RuntimeError(f"{self.ref} made no progress: {did}")
                time.sleep(WAIT)

    def _done(self, resource: Manifest, job: Manifest | None) -> bool:
        status = resource.get("status") or {}
        if job is not None and not jobstatus.owned_by(job, resource):
            return True  # the controller says JobNameConflict; nothing here can fix it
        if job is not None and not pytorchjob.job_state(job).terminal:
            return False  # a job still to run, or to run on (a stalled spec change keeps it going)
        if status.get("phase") in jobstatus.TERMINAL:
            return True
        stalled = plans.get_condition(status.get("conditions"), conditions.STALLED) or {}
        return stalled.get("status") == "True" and job is None

    def _follow(self, bars: progress.Bars, offset: int) -> None:
        """Follow the trainer's log until its processes end; events drive bars and status."""
        workload = realize.Workload(self.kind, self.name)
        info = self.ctx.supervisor.find(workload.kind, workload.name)
        if info is None:
            return
        for line in logview.tail(self.log, offset, lambda: self.ctx.supervisor.alive(info)):
            event = progress.parse_event(line)
            if event is not None and self.on_event(event, bars):
                self.reconcile()

    def _stop(self, message: str) -> None:
        """Stop the processes; the job is Suspended and the run says so (the controller's words)."""
        self.ctx.supervisor.stop(self.kind, self.name)
        job = self.job()
        if job is not None and not pytorchjob.job_state(job).terminal:
            realize.suspend(self.ctx, job, message)
            self.reconcile()

    def _outcome(self, resource: Manifest) -> bool:
        status = resource.get("status") or {}
        ready = plans.get_condition(status.get("conditions"), conditions.READY) or {}
        if ready.get("status") == "True":
            self.report(resource)
            return True
        message = status.get("message") or ready.get("message") or "see `flywheel get`"
        phase = str(status.get("phase") or "not ready").lower()
        if phase == "failed":
            message = f"{message} (see `flywheel logs {self.ref}`)"
        else:  # e.g. Succeeded, then Stalled by a spec change: say what the controller says
            phase = f"{phase}, not ready ({ready.get('reason')})"
        self.ctx.console.print(f"[red]{self.ref}: {phase}: {message}[/red]", highlight=False)
        return False


def observe(ctx: Context, manifest: Manifest, make: Callable[[Context, Manifest], JobRun]) -> Manifest:
    """`flywheel get`: notice what the processes did without a CLI following them (a finished
    detached run, a trainer gone with its killed CLI), then reconcile; starts nothing."""
    runner = make(ctx, manifest)
    job = runner.job()
    if job is None:
        return manifest
    did = realize.sync_job(ctx, job, start=False)
    if did in ("finished", "suspended") or not pytorchjob.job_state(job).terminal:
        return runner.reconcile()
    return manifest


def log_tail(path: Path, lines: int, max_bytes: int = 256 * 1024) -> str | None:
    """The last `lines` lines of a log (what the operator reads with tailLines), None when absent."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - max_bytes))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    return "\n".join(text.splitlines()[-lines:])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
