"""DriftMonitor on one machine: the controller's plan over the local store, on the monitor's schedule.

`flywheel run -f driftmonitor.yaml` runs the same observe -> plan -> apply as the operator
(flywheel.controllers.driftmonitor), with local adapters:

- read: the refs the controller names, read from the SQLite store (list refs by label);
- apply: children and patches into the store; a champion change is rolled out into the running
  server by the Deployment runner (flywheel.local.runners.deployment.promote); the check Job is
  realised like any batch/v1 Job (flywheel.local.realize.sync_batch_job, run_check_job: its
  container command `python -m flywheel.drift` as a supervised process keyed by the Job, logs in
  <home>/logs/job/<job>.log), which leaves a terminated Pod labelled job-name with the
  termination message and the Job Complete or Failed, as the Job controller and kubelet would;
- challengers the plan creates are trained here with the TrainingRun runner (torchrun).

- Foreground: rounds until Ctrl-C, sleeping until the plan's requeue_after.
- `--detach`: the same loop as a supervised background process (`python -m
  flywheel.local.runners.driftmonitor --home H NAME [NAMESPACE]`), logs in
  <home>/logs/driftmonitor/<name>.log; `flywheel get dm` shows its status.
- `run_once(ctx, manifest) -> Round`: reconciles until nothing is left to do now (a check Job,
  the training of any challenger, the evaluation Job and the decision). `flywheel demo` calls it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
import time
from pathlib import Path
from typing import Any

from flywheel import api
from flywheel.api import conditions
from flywheel.api.common import Manifest
from flywheel.controllers import driftcheck, plans
from flywheel.controllers import driftmonitor as controller
from flywheel.controllers import settings as settings_mod
from flywheel.local import realize, runners
from flywheel.local.runners import trainingrun as trainingrun_runner

KIND = api.DriftMonitor.KIND
TERMINAL = (conditions.SUCCEEDED, conditions.FAILED)
MAX_SLEEP = 5.0
"""Seconds between looks while waiting for the next check (Ctrl-C stays responsive)."""
MAX_ROUNDS = 8
"""Reconciles per run_once: check, retrain, evaluate, decide, with room for a retry."""
SETTINGS = settings_mod.Settings()


@dataclasses.dataclass
class Round:
    """What run_once did: the last plan, and the highlights for printing and the demo."""

    plan: plans.Plan
    check: dict[str, Any] | None = None
    """The status fields of a check folded in during this round (None: no check finished)."""
    check_note: str | None = None
    started: list[str] = dataclasses.field(default_factory=list)
    """Challenger TrainingRuns created in this round."""
    claimed_by: str | None = None


def read(ctx: runners.Context, refs: list[plans.Ref]) -> plans.Observed:
    """The refs, from the store; a list ref answers the objects whose labels match its selector
    (a check Job's Pod, as the realiser left it)."""
    observed = plans.Observed()
    for ref in refs:
        if ref.selector is not None:
            found = [o for o in ctx.store.list(ref.kind, ref.namespace) if _matches(o, ref.selector)]
            observed.objects[ref.key] = {"kind": "List", "items": found}
        elif (obj := ctx.store.get(ref.kind, ref.name, ref.namespace)) is not None:
            observed.objects[ref.key] = obj
    return observed


def _matches(obj: Manifest, selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    pairs = [p.split("=", 1) for p in selector.split(",") if p]
    return all(labels.get(k) == v for k, v in pairs)


def reconcile(ctx: runners.Context, manifest: Manifest, work: bool = True) -> plans.Plan:
    """observe -> plan -> apply, once. work=False (`flywheel approve`): decisions only, no Job."""
    plan = controller.plan(manifest, read(ctx, controller.observe_refs(manifest, SETTINGS)),
                           ctx.now(), SETTINGS)  # fmt: skip
    if not work:
        plan.apply = [m for m in plan.apply if m["kind"] not in ("Job", "ConfigMap")]
        plan.delete = []
        if plan.status.get("checkJob") != (manifest.get("status") or {}).get("checkJob"):
            plan.status.pop("checkJob", None)
    apply(ctx, manifest, plan)
    return plan


def apply(ctx: runners.Context, resource: Manifest, plan: plans.Plan) -> None:
    """The plan in the adapters' order: deletes, children (the check Job runs to its end here),
    patches of other resources, status, events."""
    for manifest in plan.delete:
        meta = manifest["metadata"]
        ctx.store.delete(manifest["kind"], meta["name"], meta.get("namespace") or "default")
    configs = {m["metadata"]["name"]: m for m in plan.apply if m["kind"] == "ConfigMap"}
    for manifest in plan.apply:
        meta = manifest["metadata"]
        namespace = meta.get("namespace") or "default"
        if ctx.store.get(manifest["kind"], meta["name"], namespace) is not None:
            continue  # 409 semantics: an existing object is left as it is
        stored = ctx.store.put(manifest)
        if manifest["kind"] == driftcheck.KIND:
            run_check_job(ctx, stored, configs.get(meta["name"]))
    for patch in plan.patch_resources:
        _patch(ctx, patch)
    meta = resource["metadata"]
    namespace = meta.get("namespace") or "default"
    ctx.store.patch_status(KIND, meta["name"], plan.status, namespace)
    for event in plan.events:
        ctx.store.add_event(KIND, meta["name"], event.reason, event.message, event.type, namespace)


def _patch(ctx: runners.Context, patch: Manifest) -> None:
    """Merge metadata and spec into the stored resource in one transaction; a champion change is
    then hot-swapped into a running server by the Deployment runner."""
    meta = patch["metadata"]
    namespace = meta.get("namespace") or "default"
    live = ctx.store.get(patch["kind"], meta["name"], namespace)
    if live is None:
        raise KeyError(f"{patch['kind']}/{meta['name']} is not in {ctx.home}")
    body = {k: v for k, v in patch.items() if k in ("metadata", "spec")}
    merged = plans.merge_patch({k: v for k, v in live.items() if k != "status"}, body)
    if merged != {k: v for k, v in live.items() if k != "status"}:
        ctx.store.put(merged)
    champion = (patch.get("spec") or {}).get("champion")
    if patch["kind"] == api.Deployment.KIND and champion is not None:
        from flywheel.local.runners import deployment

        deployment.promote(ctx, meta["name"], namespace, merged["spec"]["champion"])


def run_check_job(ctx: runners.Context, job: Manifest, config_map: Manifest | None) -> None:
    """Realise the stored check Job to its end (the realiser starts its pod's process, waits, and
    records its Pod and verdict); the monitor's next reconcile reads the outcome from them.
    `config_map` (the Job's, already in the store) is what the pod mounts."""
    meta = job["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    extra = {
        "FLYWHEEL_CACHE_DIR": str(ctx.home / "cache"),  # downloaded models, shared with the server's
        "FLYWHEEL_NOW": plans.now_rfc3339(ctx.now()),  # the monitor's clock (injected in tests)
    }
    workload = realize.job_workload(job)
    while (current := ctx.store.get(driftcheck.KIND, name, namespace)) is not None:
        did = realize.sync_batch_job(ctx, current, extra_env=extra)
        if did in ("finished", "terminal"):
            return
        info = ctx.supervisor.find(workload.kind, workload.name)
        if did in ("started", "running") and info is not None:
            ctx.supervisor.wait(info)
        elif did == "gone":  # ended without a word, not under this CLI: a failed attempt
            record_outcome(ctx, current, -1, "")
        else:
            raise RuntimeError(f"check Job {name} cannot run: {did}")


def record_outcome(ctx: runners.Context, job: Manifest, code: int, message: str) -> None:
    """What the Job controller and the kubelet report of a finished check Job: its Pod, terminated
    with `message` as the termination message, and the Job Complete (code 0) or Failed."""
    end = realize.PodEnd(code, message or None)
    realize.finish_batch_job(ctx, job, end, datetime.datetime.now(datetime.UTC))


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
    exited = conditions.Condition(conditions.READY, "False", conditions.R_LOOP_EXITED, message)
    conds = plans.set_condition(
        list(status.get("conditions") or []), exited, ctx.now(), meta.get("generation")
    )
    update = {"phase": conditions.PENDING, "message": message, "conditions": conds}
    ctx.store.patch_status(KIND, name, update, namespace)
    ctx.store.add_event(KIND, name, conditions.R_LOOP_EXITED, message, "Warning", namespace)
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


def run_once(ctx: runners.Context, manifest: Manifest) -> Round:
    """Reconcile until nothing is left to do now: a check Job, the retrain it asks for (trained
    here), the evaluation Job and the decision; at most MAX_ROUNDS reconciles."""
    meta = manifest["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    out = Round(plans.Plan())
    for _ in range(MAX_ROUNDS):
        stored = ctx.store.get(KIND, name, namespace) or manifest
        out.plan = reconcile(ctx, stored)
        _note(ctx, out, stored)
        owner = (plans.get_condition(out.plan.status.get("conditions"), conditions.READY) or {}).get("reason")
        if owner == conditions.R_CLAIMED or out.plan.permanent_error:
            out.claimed_by = _owner_of(out.plan) if owner == conditions.R_CLAIMED else None
            return out
        trained = _train_challengers(ctx, stored)
        created = [m for m in out.plan.apply if m["kind"] in (driftcheck.KIND, api.TrainingRun.KIND)]
        if not trained and not created:
            return out
    return out


def _note(ctx: runners.Context, out: Round, before: Manifest) -> None:
    """Record and print what this reconcile folded in or started."""
    name = f"driftmonitor/{before['metadata']['name']}"
    status = out.plan.status
    if status.get("lastCheckTime") and status.get("lastCheckTime") != (before.get("status") or {}).get(
        "lastCheckTime"
    ):
        out.check = {k: status[k] for k in ("lastCheckTime", "rowsChecked", "datasetDriftShare", "drifted",
                                            "driftedColumns", "reportUri") if k in status}  # fmt: skip
        drift = plans.get_condition(status.get("conditions"), conditions.DRIFT_DETECTED) or {}
        out.check_note = drift.get("message") if drift.get("status") == "Unknown" else None
        if out.check_note:
            ctx.console.print(f"{name}: check skipped: {out.check_note}", highlight=False)
        else:
            verdict = "[red]drifted[/red]" if status.get("drifted") else "no drift"
            ctx.console.print(f"{name}: drift share {status.get('datasetDriftShare', 0):.2f} over "
                              f"{status.get('rowsChecked')} rows: {verdict}")  # fmt: skip
    for child in out.plan.apply:
        if child["kind"] == api.TrainingRun.KIND:
            out.started.append(child["metadata"]["name"])
            ctx.console.print(f"{name}: started challenger trainingrun/{child['metadata']['name']}")
    for event in out.plan.events:
        if event.reason in controller.DECISION_REASONS.values() or event.reason in (
            conditions.R_CHALLENGER_FAILED,
            conditions.R_ROLLED_BACK,
        ):
            ctx.console.print(f"{name}: {event.message}", highlight=False)


def _owner_of(plan: plans.Plan) -> str | None:
    ready = plans.get_condition(plan.status.get("conditions"), conditions.READY) or {}
    text = str(ready.get("message") or "")
    marker = "driftmonitor/"
    return text.split(marker, 1)[1].split(maxsplit=1)[0].strip(".,;:)") if marker in text else None


def _train_challengers(ctx: runners.Context, manifest: Manifest) -> bool:
    """Drive every unfinished challenger of this monitor with the TrainingRun runner; True if any ran."""
    namespace = manifest["metadata"].get("namespace") or "default"
    runs = controller.challengers(manifest, ctx.store.list(api.TrainingRun.KIND, namespace))
    pending = [r for r in runs if (r.get("status") or {}).get("phase") not in TERMINAL]
    for run in pending:
        ctx.console.print(f"[bold]Training challenger[/bold] trainingrun/{run['metadata']['name']}")
        trainingrun_runner.run(ctx, run)
    return bool(pending)


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
