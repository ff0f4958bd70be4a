"""DriftMonitor on one machine: the closed loop over the local store, on the monitor's schedule.

`flywheel run -f driftmonitor.yaml` runs flywheel.drift.loop.step against this home (LocalBackend):
each step checks the Deployment's logged traffic when due, starts a challenger TrainingRun in the
store on drift and trains it here with the TrainingRun runner (torchrun, as `flywheel run` would),
then evaluates it against the champion and, when it wins, promotes it through the Deployment
runner's hot swap (flywheel.local.runners.deployment.promote).

- Foreground: steps until Ctrl-C, sleeping until the next check is due.
- `--detach`: the same loop as a supervised background process (`python -m
  flywheel.local.runners.driftmonitor --home H NAME [NAMESPACE]`), logs in
  <home>/logs/driftmonitor/<name>.log; `flywheel get dm` shows its status.
- `run_once(ctx, manifest) -> loop.StepResult`: exactly one round (a step; the training of any
  challenger it started or left unfinished; a second step that evaluates and decides). `flywheel
  demo` calls it.
- Two monitors on one Deployment: the store's other DriftMonitors are listed every step; one that
  does not own the Deployment (an older monitor names it) does nothing, trains none of its
  challengers, says why in Ready, and takes over at its next step once the owner is deleted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from flywheel import api, artifacts
from flywheel.api import conditions
from flywheel.api import trainingrun as tr_api
from flywheel.controllers import driftmonitor as controller
from flywheel.controllers import plans
from flywheel.drift import loop
from flywheel.local import paths, runners
from flywheel.local import store as store_mod
from flywheel.local.runners import trainingrun as trainingrun_runner

KIND = api.DriftMonitor.KIND
Manifest = dict[str, Any]
TERMINAL = (conditions.SUCCEEDED, conditions.FAILED)
MAX_SLEEP = 5.0
"""Seconds between looks while waiting for the next check (Ctrl-C stays responsive)."""
R_LOOP_EXITED = "MonitorNotRunning"


class LocalBackend:
    """flywheel.drift.loop.Backend over one local home: SQLite store, local artifacts, DVC."""

    def __init__(self, ctx: runners.Context) -> None:
        self.ctx = ctx

    def get(self, kind: str, name: str, namespace: str) -> Manifest | None:
        return self.ctx.store.get(kind, name, namespace)

    def list(self, kind: str, namespace: str) -> list[Manifest]:
        return self.ctx.store.list(kind, namespace)

    def create(self, manifest: Manifest) -> None:
        meta = manifest["metadata"]
        if self.ctx.store.get(manifest["kind"], meta["name"], meta.get("namespace") or "default") is None:
            self.ctx.store.put(manifest)  # 409 semantics: an existing object is left as it is

    def patch(self, patch: Manifest) -> None:
        """Merge metadata and spec into the stored resource in one transaction; a champion change
        is then hot-swapped into a running server by the Deployment runner."""
        meta = patch["metadata"]
        namespace = meta.get("namespace") or "default"
        live = self.ctx.store.get(patch["kind"], meta["name"], namespace)
        if live is None:
            raise KeyError(f"{patch['kind']}/{meta['name']} is not in {self.ctx.home}")
        body = {k: v for k, v in patch.items() if k in ("metadata", "spec")}
        merged = store_mod.merge_patch({k: v for k, v in live.items() if k != "status"}, body)
        if merged != {k: v for k, v in live.items() if k != "status"}:
            self.ctx.store.put(merged)
        champion = (patch.get("spec") or {}).get("champion")
        if patch["kind"] == api.Deployment.KIND and champion is not None:
            from flywheel.local.runners import deployment

            deployment.promote(self.ctx, meta["name"], namespace, merged["spec"]["champion"])

    def patch_status(self, resource: Manifest, status: dict[str, Any]) -> None:
        meta = resource["metadata"]
        self.ctx.store.patch_status(
            resource["kind"], meta["name"], status, meta.get("namespace") or "default"
        )

    def event(self, resource: Manifest, event: plans.Event) -> None:
        meta = resource["metadata"]
        namespace = meta.get("namespace") or "default"
        store = self.ctx.store
        store.add_event(resource["kind"], meta["name"], event.reason, event.message, event.type, namespace)

    def resolve_commit(self, data: tr_api.Data) -> str:
        from flywheel.data import resolve

        repo = paths.resolve(self.ctx.home, data.repo)  # against the home, as the TrainingRun runner
        resolved = resolve.resolve(data.model_copy(update={"repo": repo}), self.ctx.home / "cache" / "data")
        return str(resolved.lineage.commit)

    def model_dir(self, uri: str) -> Path:
        return artifacts.local_dir(uri, self.ctx.home / "cache" / "models")

    def traffic_sink(self, deployment: Manifest) -> str:
        from flywheel.local.runners import deployment as deployment_runner

        return deployment_runner.sink_uri(self.ctx, deployment)

    def cache_dir(self) -> Path:
        return self.ctx.home / "cache" / "drift"

    def artifacts_uri(self, uri: str) -> str:
        return self.ctx.artifacts_uri(uri)


def run(ctx: runners.Context, manifest: Manifest) -> bool:
    """Run the monitor: detached, start the background loop; in the foreground, loop until Ctrl-C."""
    meta = manifest["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    if ctx.detach:
        argv = [sys.executable, "-m", __name__, "--home", str(ctx.home), name, namespace]
        info = ctx.supervisor.start(KIND, name, argv, cwd=ctx.cwd, tie_to_parent=False)
        ctx.console.print(
            f"driftmonitor/{name}: monitoring in the background (pid {info.pid}); see `flywheel get dm`"
        )
        return True
    ctx.supervisor.stop(KIND, name)  # one loop per monitor: this one replaces a detached one
    ctx.supervisor.forget(KIND, name)  # so `flywheel get` does not take it for a dead detached loop
    try:
        forever(ctx, name, namespace)
    except KeyboardInterrupt:
        message = "stopped by Ctrl-C; run `flywheel run` again to keep monitoring"
        ctx.store.patch_status(KIND, name, {"message": message}, namespace)
        ctx.console.print(f"driftmonitor/{name}: {message}")
        raise
    return True


def observe(ctx: runners.Context, manifest: Manifest) -> Manifest:
    """Notice a detached loop that is gone (killed, crashed, a reboot): nothing monitors any more,
    so Ready turns False saying so, once. A status that already says why it stopped is kept."""
    meta = manifest["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    info = ctx.supervisor.find(KIND, name)
    status = manifest.get("status") or {}
    ready = plans.get_condition(status.get("conditions"), conditions.READY) or {}
    if info is None or ctx.supervisor.alive(info) or ready.get("status") == "False":
        return manifest
    message = (
        f"the background monitor (pid {info.pid}) is not running; see `flywheel logs "
        f"driftmonitor/{name}`, then start it again with `flywheel run -f FILE --detach`"
    )
    conds = plans.set_condition(
        list(status.get("conditions") or []), conditions.READY, "False", R_LOOP_EXITED, message,
        ctx.now(), meta.get("generation"),
    )  # fmt: skip
    update = {"phase": conditions.PENDING, "message": message, "conditions": conds}
    ctx.store.patch_status(KIND, name, update, namespace)
    ctx.store.add_event(KIND, name, R_LOOP_EXITED, message, "Warning", namespace)
    return ctx.store.get(KIND, name, namespace) or manifest


def forever(ctx: runners.Context, name: str, namespace: str) -> None:
    """Rounds on the schedule until interrupted (or the monitor is deleted from the store)."""
    said = None
    while (stored := ctx.store.get(KIND, name, namespace)) is not None:
        result = run_once(ctx, stored)
        message = result.plan.status.get("message")
        if message and message != said:  # what `flywheel get dm` would say, once per change
            ctx.console.print(f"driftmonitor/{name}: {message}", highlight=False)
            said = message
        if result.plan.permanent_error:
            ctx.console.print(f"[red]driftmonitor/{name}: {result.plan.permanent_error}[/red]")
            return
        wait = result.plan.requeue_after if result.plan.requeue_after is not None else MAX_SLEEP
        deadline = time.monotonic() + max(wait, 1.0)
        while time.monotonic() < deadline:
            time.sleep(min(MAX_SLEEP, max(0.0, deadline - time.monotonic())))


def run_once(
    ctx: runners.Context, manifest: Manifest, analysis: loop.Analysis | None = None
) -> loop.StepResult:
    """One round: a step, then training of unfinished challengers, then a deciding step."""
    backend = LocalBackend(ctx)
    first = loop.step(backend, manifest, ctx.now(), analysis)
    _print(ctx, manifest, first)
    if first.claimed_by is not None:  # an older monitor owns the Deployment: train nothing either
        return first
    if not _train_challengers(ctx, manifest):
        return first
    stored = ctx.store.get(
        KIND, manifest["metadata"]["name"], manifest["metadata"].get("namespace") or "default"
    )
    second = loop.step(backend, stored or manifest, ctx.now(), analysis)
    _print(ctx, manifest, second)
    second.started = first.started + second.started
    second.check = second.check or first.check
    return second


def _train_challengers(ctx: runners.Context, manifest: Manifest) -> bool:
    """Drive every unfinished challenger of this monitor with the TrainingRun runner; True if any ran."""
    namespace = manifest["metadata"].get("namespace") or "default"
    runs = controller.challengers(manifest, ctx.store.list(api.TrainingRun.KIND, namespace))
    pending = [r for r in runs if (r.get("status") or {}).get("phase") not in TERMINAL]
    for run in pending:
        ctx.console.print(f"[bold]Training challenger[/bold] trainingrun/{run['metadata']['name']}")
        trainingrun_runner.run(ctx, run)
    return bool(pending)


def _print(ctx: runners.Context, manifest: Manifest, result: loop.StepResult) -> None:
    name = f"driftmonitor/{manifest['metadata']['name']}"
    if result.check is not None:
        status = result.check.status
        if result.check.note:
            ctx.console.print(f"{name}: check skipped: {result.check.note}")
        else:
            share, rows = status.get("datasetDriftShare", 0), status.get("rowsChecked")
            verdict = "[red]drifted[/red]" if status.get("drifted") else "no drift"
            ctx.console.print(f"{name}: drift share {share:.2f} over {rows} rows: {verdict}")
    for started in result.plan.apply:
        ctx.console.print(f"{name}: started challenger trainingrun/{started['metadata']['name']}")
    for event in result.plan.events:
        if (
            event.reason in controller.DECISION_REASONS.values()
            or event.reason == controller.R_CHALLENGER_FAILED
        ):
            ctx.console.print(f"{name}: {event.message}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    """The detached loop's entry point."""
    parser = argparse.ArgumentParser(prog="python -m flywheel.local.runners.driftmonitor")
    parser.add_argument("--home", required=True)
    parser.add_argument("name")
    parser.add_argument("namespace", nargs="?", default="default")
    args = parser.parse_args(argv)
    ctx = runners.Context.create(args.home)
    ctx.cwd = Path.cwd()
    try:
        forever(ctx, args.name, args.namespace)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
