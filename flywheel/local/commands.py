"""`flywheel run`, `flywheel get` and `flywheel logs`: the local backend's command line.

run   validate the files (all of them, before anything starts), put each resource in the store, and
      hand it to its kind's runner; exit 0 when every resource ended healthy, else 1. The runner
      drives the resource under its lock (flywheel.local.lock): a second `flywheel run` of a
      resource that another one drives attaches to it instead (prints its log as it grows, waits
      for it to end, and counts its result), so it never stops the first one's workload.
get   list resources like kubectl: a table (NAME, READY, PHASE, a key field per kind, AGE), or the
      stored objects as YAML or JSON. Kinds are matched case-insensitively by kind, plural, singular
      or short name (tr, spr, mdep, dm).
logs  print a workload's log (<home>/logs/<kind>/<name>.log) with JSON event lines made readable
      (flywheel.local.logview; -o json: as written); -f follows it while the workload runs.

`flywheel stop` and `flywheel delete` are in flywheel.local.lifecycle.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pydantic
import yaml

from flywheel import api, errors
from flywheel.api import common
from flywheel.api import conditions as conds
from flywheel.api.common import Manifest
from flywheel.controllers import plans
from flywheel.local import lock as lock_mod
from flywheel.local import logview, runners
from flywheel.local import paths as paths_mod
from flywheel.local import supervisor as supervisor_mod

# kind -> (column header, status path) of the one field that says most about a resource.
KEY_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "TrainingRun": ("MODEL", ("model", "version")),
    "SelfPlayRun": ("STEP", ("step",)),
    "Deployment": ("CHAMPION", ("championVersion",)),
    "DriftMonitor": ("DRIFT", ("datasetDriftShare",)),
}


def run(args: argparse.Namespace) -> int:
    resources = load_files(args.filename)
    missing = sorted({r.KIND for r in resources if runners.runner(r.KIND) is None})
    if missing:
        raise errors.UserError(
            f"the local backend cannot run {', '.join(missing)} yet; "
            f"it runs {', '.join(sorted(runners.RUNNERS))}"
        )
    ctx = runners.Context.create(args.home, detach=getattr(args, "detach", False))
    outcomes: list[tuple[str, bool]] = []
    for resource in resources:
        lock = lock_mod.ResourceLock(ctx.home, resource.KIND, resource.name, resource.namespace)
        driver = _take(lock)
        if driver is not None:
            ok = _attach(ctx, resource, lock, driver)
        else:
            with lock:
                manifest = ctx.store.put(resource.to_manifest())
                module = runners.runner(resource.KIND)
                assert module is not None
                ok = bool(module.run(ctx, manifest))
        outcomes.append((f"{resource.KIND.lower()}/{resource.name}", ok))
    for ref, ok in outcomes:
        ctx.console.print(f"{ref}: {'[green]ok[/green]' if ok else '[red]failed[/red]'}")
    return 0 if all(ok for _, ok in outcomes) else 1


def get(args: argparse.Namespace) -> int:
    kind = resolve_kind(args.kind) if args.kind else None
    items = _observed(Path(args.home), kind)
    if args.name:
        items = [m for m in items if m["metadata"]["name"] == args.name]
        if not items:
            raise errors.UserError(
                f"{kind.lower() if kind else 'resource'}/{args.name} not found in {args.home}"
            )
    output = getattr(args, "output", "table")
    if output == "table":
        print(table(items, with_kind=kind is None) if items else f"No resources found in {args.home}.")
        return 0
    doc: Any = items[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": items}
    if output == "json":
        print(json.dumps(doc, indent=2, sort_keys=False))
    else:
        print(yaml.safe_dump(doc, sort_keys=False), end="")
    return 0


JOB_NAMES = ("job", "jobs", "job.batch", "jobs.batch")
"""How `flywheel logs` names a batch Job (kubectl's names), e.g. `job/shuttle-check-29944770`."""


def logs(args: argparse.Namespace) -> int:
    if getattr(args, "name", None):
        kind_text, sep, name = args.ref, "/", args.name
    else:
        kind_text, sep, name = args.ref.partition("/")
    if not sep or not kind_text or not name:
        raise errors.UserError(f"{args.ref!r}: give KIND/NAME, e.g. trainingrun/iris")
    # A DriftMonitor's check Job runs under its own name (flywheel.local.realize.job_workload).
    kind = "Job" if kind_text.lower() in JOB_NAMES else resolve_kind(kind_text)
    home = Path(args.home).resolve()
    sup = supervisor_mod.Supervisor(home)
    lock = lock_mod.ResourceLock(home, kind, name, getattr(args, "namespace", None) or "default")

    def running() -> bool:
        """The workload runs, or a `flywheel run` drives it (e.g. still resolving its data)."""
        info = sup.find(kind, name)
        return (info is not None and sup.alive(info)) or lock.holder() is not None

    follow = bool(getattr(args, "follow", False))
    path = sup.log_path(kind, name)
    if not path.exists() and not (follow and running()):
        raise errors.UserError(f"no logs for {kind.lower()}/{name} in {home}; run it with `flywheel run -f`")
    raw = getattr(args, "output", "text") == "json"
    try:
        for line in logview.tail(path, 0, running if follow else lambda: False):
            sys.stdout.write((line if raw else logview.render(line)) + "\n")
            if follow:
                sys.stdout.flush()  # a reader at the other end of a pipe sees each line as it comes
        sys.stdout.flush()
    except BrokenPipeError:  # `flywheel logs ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit either
    return 0


def resolve_kind(text: str) -> str:
    """The kind named by `text`: kind, plural, singular or short name, any case."""
    wanted = text.lower().removesuffix(f".{common.GROUP}")
    for kind, cls in api.KINDS.items():
        if wanted in {kind.lower(), cls.PLURAL, *cls.SHORT_NAMES}:
            return kind
    names = ", ".join(f"{k} ({'/'.join(c.SHORT_NAMES)})" for k, c in api.KINDS.items())
    raise errors.UserError(f"{text!r} is not a Flywheel kind; use one of {names}")


def table(items: list[Manifest], with_kind: bool, now: datetime.datetime | None = None) -> str:
    """kubectl-style columns, one block per kind (a key field differs by kind)."""
    now = now or datetime.datetime.now(datetime.UTC)
    blocks = []
    for kind in [k for k in api.KINDS if any(m["kind"] == k for m in items)]:
        header, path = KEY_FIELDS[kind]
        rows = [["NAME", "READY", "PHASE", header, "AGE"]]
        for m in (m for m in items if m["kind"] == kind):
            status = m.get("status") or {}
            ready = plans.get_condition(status.get("conditions"), conds.READY)
            name = (
                f"{kind.lower()}.{common.GROUP}/{m['metadata']['name']}"
                if with_kind
                else m["metadata"]["name"]
            )
            rows.append(
                [
                    name,
                    ready["status"] if ready else "-",
                    status.get("phase") or "-",
                    _text(_dig(status, path)),
                    age(m["metadata"].get("creationTimestamp"), now),
                ]
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        blocks.append(
            "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
        )
    return "\n\n".join(blocks)


def age(timestamp: str | None, now: datetime.datetime) -> str:
    """kubectl's AGE: 45s, 12m, 3h, 2d."""
    if not timestamp:
        return "-"
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _take(lock: lock_mod.ResourceLock) -> int | None:
    """Take the resource's lock: None when this process now drives it, else the driver's pid."""
    for _ in range(100):
        if lock.acquire():
            return None
        driver = lock.holder()
        if driver is not None:
            return driver
        time.sleep(0.02)  # released between our try and our look: try again
    raise errors.UserError(f"could not take {lock.path}; is another `flywheel` starting it?")


def _attach(ctx: runners.Context, resource: common.Resource, lock: lock_mod.ResourceLock, pid: int) -> bool:
    """Follow the `flywheel run` (pid) that drives `resource` until it ends; True when it ended
    healthy. Ctrl-C here stops following, not the run (that is `flywheel stop`)."""
    ref = f"{resource.KIND.lower()}/{resource.name}"
    stored = ctx.store.get(resource.KIND, resource.name, resource.namespace)
    if stored is not None and not _same_spec(resource, stored):
        raise errors.UserError(
            f"{ref} is being run by another `flywheel run` (pid {pid}) with a different spec; "
            f"wait for it to end, or `flywheel stop {ref}` and run again"
        )
    if ctx.detach:
        ctx.console.print(f"{ref}: already being run by `flywheel run` (pid {pid}); not starting it again")
        return True
    ctx.console.print(
        f"{ref}: already being run by `flywheel run` (pid {pid}); following it "
        "(Ctrl-C stops following, not the run)",
        highlight=False,
    )
    log = ctx.supervisor.log_path(resource.KIND, resource.name)
    offset = log.stat().st_size if log.exists() else 0
    for line in logview.tail(log, offset, lambda: lock.holder() is not None):
        ctx.console.print(logview.render(line), highlight=False, markup=False)
    final = ctx.store.get(resource.KIND, resource.name, resource.namespace) or {}
    status = final.get("status") or {}
    ok = _healthy(status)
    why = f": {status['message']}" if status.get("message") and not ok else ""
    ctx.console.print(f"{ref}: {status.get('phase') or 'deleted'}{why}", highlight=False, markup=False)
    return ok


def _same_spec(resource: common.Resource, stored: Manifest) -> bool:
    """Whether the stored object has the file's spec, both with defaults filled (a runner or a
    DriftMonitor may have stored it without them)."""
    try:
        other = type(resource).model_validate({k: v for k, v in stored.items() if k != "status"})
    except pydantic.ValidationError:
        return False
    return other.to_manifest().get("spec") == resource.to_manifest().get("spec")


def _healthy(status: dict[str, Any]) -> bool:
    if status.get("phase") == conds.SUCCEEDED:
        return True
    ready = plans.get_condition(status.get("conditions"), conds.READY)
    return bool(ready and ready.get("status") == "True")


def load_files(paths: list[str]) -> list[common.Resource]:
    from flywheel.api import loading

    resources: list[common.Resource] = []
    for path in paths:
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        for item in loading.load_file(path):
            resource = item if isinstance(item, common.Resource) else loading.parse(item, str(path))
            resources.append(paths_mod.code_paths(resource, folder))
    seen: set[tuple[str, str, str]] = set()
    for r in resources:
        key = (r.KIND, r.namespace, r.name)
        if key in seen:
            raise errors.UserError(f"{r.KIND}/{r.name} appears twice; give each resource its own name")
        seen.add(key)
    return resources


def _observed(home: Path, kind: str | None) -> list[Manifest]:
    """Stored resources, each refreshed by its runner's observe (e.g. a trainer that died)."""
    if not (home / "state.db").exists():
        return []
    ctx = runners.Context.create(home)
    items = []
    for manifest in ctx.store.list(kind):
        module = runners.runner(manifest["kind"])
        observe = getattr(module, "observe", None)
        items.append(observe(ctx, manifest) if observe else manifest)
    return items


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
