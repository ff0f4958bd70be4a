"""Runners: one module per kind that drives a stored resource to its end state on this machine.

The interface a runner module implements (flywheel/local/runners/<kind lower>.py, registered in
RUNNERS below):

    def run(ctx: Context, manifest: Manifest) -> bool
        Drive the resource (already put in the store, with metadata.generation set) to its end
        state, or, when ctx.detach is set and it is long-running, start it and return. Write status
        only through ctx.store.patch_status (merge patch, camelCase keys, conditions from
        flywheel.api.conditions via plans.set_condition, Ready always present, observedGeneration
        set), events through ctx.store.add_event, processes only through ctx.supervisor (so logs
        land in <home>/logs/<kind>/<name>.log and nothing is orphaned). Return True when the
        resource ended (or, detached, started) healthy; False when it failed: the reason is in status,
        not raised. Idempotent: a resource already done for its generation returns at once. On
        KeyboardInterrupt stop your processes (ctx.supervisor.stop), record it in status and re-raise.
        Raise errors.UserError only for mistakes a person fixes in the manifest or the command line.

    def observe(ctx: Context, manifest: Manifest) -> Manifest        (optional)
        Refresh status from processes and artifacts without starting anything (`flywheel get`
        calls it), e.g. notice that a workload process is gone because the CLI was killed. Return
        the manifest as stored afterwards.

Runners print through ctx.console (rich), never to stdout directly, so commands can silence them.

TrainingRun, SelfPlayRun and Deployment write no status themselves (but Suspended on Ctrl-C):
runners.jobrun and runners.deployment run their controllers (observe -> plan ->
flywheel.local.execute) over children in the store, which flywheel.local.realize and
realize_serving turn into processes, so their status is the operator's. DriftMonitor runs its
controller with adapters of its own (runners.driftmonitor).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from rich import console as rich_console

from flywheel.api import common
from flywheel.local import store as store_mod
from flywheel.local import supervisor as supervisor_mod

# kind -> module implementing run(ctx, manifest) (and optionally observe(ctx, manifest)).
RUNNERS: dict[str, str] = {
    "TrainingRun": "flywheel.local.runners.trainingrun",
    "SelfPlayRun": "flywheel.local.runners.selfplayrun",
    "Deployment": "flywheel.local.runners.deployment",
    "DriftMonitor": "flywheel.local.runners.driftmonitor",
}


@dataclasses.dataclass
class Context:
    """What a runner gets: the home and its store, the process supervisor, where to print."""

    home: Path
    store: store_mod.Store
    supervisor: supervisor_mod.Supervisor
    console: rich_console.Console
    detach: bool = False
    cwd: Path = dataclasses.field(default_factory=Path.cwd)
    """Working directory of the workload processes. Relative paths in manifests resolve against
    the home instead (flywheel.local.paths), never against this."""
    now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)

    @classmethod
    def create(
        cls, home: str | Path, console: rich_console.Console | None = None, detach: bool = False
    ) -> Context:
        path = Path(home).resolve()
        return cls(
            home=path,
            store=store_mod.Store(path),
            supervisor=supervisor_mod.Supervisor(path),
            console=console or rich_console.Console(stderr=True),
            detach=detach,
        )

    def artifacts_uri(self, uri: str) -> str:
        """A manifest's artifacts.uri on this machine: the in-cluster default (a PVC no one mounts
        here) means <home>/artifacts."""
        return f"file://{self.home / 'artifacts'}" if uri == common.Artifacts().uri else uri

    def cores(self) -> int:
        """CPU cores this process may use (the affinity mask, not the machine's count)."""
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def runner(kind: str) -> ModuleType | None:
    """The runner module of a kind, or None when the local backend cannot run it yet."""
    target = RUNNERS.get(kind)
    return importlib.import_module(target) if target else None
