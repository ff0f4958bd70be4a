"""`flywheel stop` and `flywheel delete`: end a local resource's processes, keep or remove its state.

stop    the resource's driver (the `flywheel run` holding its lock, see flywheel.local.lock) gets
        SIGINT, as Ctrl-C in its terminal would send: it stops its workload and records Suspended
        itself. Whatever is still running afterwards (a --detach server or monitor, a trainer whose
        driver is gone) is stopped through the supervisor. The status then says Suspended
        (Ready False, JobSuspended); `flywheel run` of the same file resumes it (a TrainingRun from
        its last checkpoint).
delete  stop, then remove what the home holds of the resource: its store row and events, its run
        folder (<home>/runs/<kind>/<name>), its logs and its lock. Artifacts (models, checkpoints,
        traffic, reports) stay unless --purge-artifacts, so a Deployment serving a deleted run's
        model keeps working.

Resources are named like kubectl's: KIND/NAME..., KIND NAME..., or -f FILE. Exit codes like
kubectl's: 0 when every named resource was handled, 1 when one was not found (the others are still
handled) or a driver would not stop.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from flywheel import api, artifacts, errors
from flywheel.api import common, conditions, contract
from flywheel.api.common import Manifest
from flywheel.controllers import plans
from flywheel.local import lock as lock_mod
from flywheel.local import runners

DRIVER_GRACE = 30.0
"""Seconds a driver gets to stop its workload after SIGINT (the supervisor's own grace is 10 s)."""
STOPPED_MESSAGE = "stopped by `flywheel stop`; `flywheel run` of the same file resumes it"


@dataclasses.dataclass(frozen=True)
class Ref:
    kind: str
    name: str
    namespace: str = "default"

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


def stop(args: argparse.Namespace) -> int:
    ctx = runners.Context.create(args.home)
    wanted = refs(args, ctx, required=False)
    missing = 0
    for ref in wanted:
        manifest = ctx.store.get(ref.kind, ref.name, ref.namespace)
        if manifest is None:
            missing += _not_found(ref, ctx)
            continue
        ran = stop_and_suspend(ctx, ref)
        print(f"{ref} {'stopped' if ran else 'not running'}")
    if not wanted:
        print(f"No resources found in {ctx.home}.")
    return 1 if missing else 0


def delete(args: argparse.Namespace) -> int:
    ctx = runners.Context.create(args.home)
    missing = 0
    for ref in refs(args, ctx, required=True):
        manifest = ctx.store.get(ref.kind, ref.name, ref.namespace)
        if manifest is None:
            missing += _not_found(ref, ctx)
            continue
        lock = lock_mod.ResourceLock(ctx.home, ref.kind, ref.name, ref.namespace)
        stop_resource(ctx, ref)
        held = lock.acquire()  # keeps a `flywheel run` of it from starting while its state goes
        try:
            purged = _purge_artifacts(ctx, manifest) if args.purge_artifacts else []
            ctx.store.delete(ref.kind, ref.name, ref.namespace)
            shutil.rmtree(ctx.supervisor.run_dir(ref.kind, ref.name), ignore_errors=True)
            log = ctx.supervisor.log_path(ref.kind, ref.name)
            for path in [log, *log.parent.glob(f"{log.name}.*")]:  # with rotated backups
                path.unlink(missing_ok=True)
        finally:
            lock.release(remove=held)
        print(f"{ref} deleted")
        for path in purged:
            print(f"  removed {path}")
    return 1 if missing else 0


def stop_and_suspend(ctx: runners.Context, ref: Ref) -> bool:
    """`flywheel stop`: stop the resource and, when anything ran, mark it Suspended (a stopped
    server is not a crashed one); True when anything was running."""
    ran = stop_resource(ctx, ref)
    if ran:
        _suspend(ctx, ref)
    return ran


def stop_resource(ctx: runners.Context, ref: Ref) -> bool:
    """Stop the resource's driver and processes; True when anything was running."""
    lock = lock_mod.ResourceLock(ctx.home, ref.kind, ref.name, ref.namespace)
    ran = _stop_driver(lock, ref)
    info = ctx.supervisor.find(ref.kind, ref.name)
    ran = ran or (info is not None and ctx.supervisor.alive(info))
    ctx.supervisor.stop(ref.kind, ref.name)  # leftovers: detached workloads, orphans of a dead driver
    ctx.supervisor.forget(ref.kind, ref.name)  # so `flywheel get` does not take it for a crash
    return ran


def refs(args: argparse.Namespace, ctx: runners.Context, required: bool) -> list[Ref]:
    """The resources a command names: -f FILE..., KIND/NAME..., KIND NAME..., or KIND (all of that
    kind). None named: every resource of the home when not `required`, else an error."""
    from flywheel.local import commands

    namespace = getattr(args, "namespace", None) or "default"
    words: list[str] = list(args.refs or [])
    files: list[str] = list(getattr(args, "filename", None) or [])
    if files and words:
        raise errors.UserError("give either -f FILE or KIND/NAME, not both")
    if files:
        return [Ref(r.KIND, r.name, r.namespace) for r in commands.load_files(files)]
    if not words:
        if required and not getattr(args, "all", False):
            raise errors.UserError("name what to delete: KIND/NAME, KIND NAME, -f FILE, or KIND --all")
        return [_ref(m) for m in ctx.store.list(None, None)]
    if any("/" in w for w in words):
        out = []
        for word in words:
            kind, sep, name = word.partition("/")
            if not sep or not kind or not name:
                raise errors.UserError(f"{word!r}: give KIND/NAME (e.g. trainingrun/iris) or KIND NAME")
            out.append(Ref(commands.resolve_kind(kind), name, namespace))
        return out
    kind, names = commands.resolve_kind(words[0]), words[1:]
    if names:
        return [Ref(kind, name, namespace) for name in names]
    if required and not getattr(args, "all", False):
        raise errors.UserError(
            f"name the {kind} to delete ({kind.lower()} NAME), or delete all of them with --all"
        )
    return [_ref(m) for m in ctx.store.list(kind, None)]


def _stop_driver(lock: lock_mod.ResourceLock, ref: Ref) -> bool:
    """Interrupt the `flywheel run` that drives the resource, escalating like the supervisor does."""
    pid = lock.holder()
    if pid is None:
        return False
    for sig, wait in ((signal.SIGINT, DRIVER_GRACE), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        pid = lock.holder()
        if pid is None:
            return True
        if pid > 0 and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if lock.wait_released(wait):
            return True
    raise errors.UserError(f"{ref}: its `flywheel run` (pid {pid}) did not stop; kill it and retry")


def _suspend(ctx: runners.Context, ref: Ref) -> None:
    """Suspended, unless the driver already said so (it does on SIGINT) or the resource had ended."""
    manifest = ctx.store.get(ref.kind, ref.name, ref.namespace)
    if manifest is None:
        return
    status = manifest.get("status") or {}
    if status.get("phase") in (conditions.SUSPENDED, conditions.SUCCEEDED, conditions.FAILED):
        return
    stopped = conditions.Condition(conditions.READY, "False", conditions.R_JOB_SUSPENDED, STOPPED_MESSAGE)
    conds = plans.set_condition(
        list(status.get("conditions") or []), stopped, ctx.now(), manifest["metadata"].get("generation")
    )
    patch: dict[str, Any] = {"phase": conditions.SUSPENDED, "message": STOPPED_MESSAGE, "conditions": conds}
    if ref.kind == api.Deployment.KIND:
        patch["readyReplicas"] = 0
    ctx.store.patch_status(ref.kind, ref.name, patch, ref.namespace)
    ctx.store.add_event(
        ref.kind, ref.name, conditions.R_JOB_SUSPENDED, STOPPED_MESSAGE, "Warning", ref.namespace
    )


def _purge_artifacts(ctx: runners.Context, manifest: Manifest) -> list[Path]:
    """Remove the artifacts Flywheel placed for the resource under its artifacts.uri (local ones
    only; a Deployment's explicit logging.sink is the user's and stays). Returns what went."""
    kind, meta, spec = manifest["kind"], manifest["metadata"], manifest.get("spec") or {}
    name, namespace = meta["name"], meta.get("namespace") or "default"
    uri = ctx.artifacts_uri((spec.get("artifacts") or {}).get("uri") or common.Artifacts().uri)
    plural = api.KINDS[kind].PLURAL
    if kind == api.Deployment.KIND:
        sink = (spec.get("logging") or {}).get("sink")
        places = [] if sink else [artifacts.Store(contract.traffic_sink(uri, name))]
    elif kind == api.DriftMonitor.KIND:
        places = [artifacts.Store(uri).child(plural, name)]  # flywheel.drift.reports' layout
    else:
        places = [artifacts.Store(contract.run_root(uri, namespace, plural, name))]
    removed = []
    for place in places:
        if place.local_root is not None and place.local_root.exists():
            shutil.rmtree(place.local_root)
            removed.append(place.local_root)
    return removed


def _ref(manifest: Manifest) -> Ref:
    meta = manifest["metadata"]
    return Ref(manifest["kind"], meta["name"], meta.get("namespace") or "default")


def _not_found(ref: Ref, ctx: runners.Context) -> int:
    print(f"error: {ref} not found in {ctx.home} (see `flywheel get`)", file=sys.stderr)
    return 1
