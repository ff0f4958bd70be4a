"""`flywheel approve` and `flywheel rollback`: the two decisions a person takes in the closed loop,
on the local backend. In a cluster the same are one kubectl command each (docs/driftmonitor.md):

approve   `kubectl annotate driftmonitor NAME flywheel.dev/approve=CHALLENGER`: promote a challenger
          that won but waits for a person (promotion.autoPromote false). Here: the same annotation
          in the store, then one deciding reconcile of the monitor right away (no check Job, no training),
          which promotes through the Deployment runner's hot swap. A running monitor loop would do
          the same at its next step; both write the same idempotent records, so it promotes once.
rollback  `kubectl patch deployment.flywheel.dev NAME --type merge -p '{"spec":{"champion":...}}'`:
          serve the Deployment's status.rollbackTarget (the champion before the last promotion)
          again, hot-swapped with no failed request.
"""

from __future__ import annotations

import argparse

from flywheel import api, errors
from flywheel.api.common import Manifest
from flywheel.controllers import driftmonitor_claims as claims
from flywheel.controllers import driftmonitor_decisions as decisions
from flywheel.local import commands, runners


def approve(args: argparse.Namespace) -> int:
    ctx = runners.Context.create(args.home)
    monitor = _stored(ctx, api.DriftMonitor.KIND, args.ref, args.namespace)
    meta = monitor["metadata"]
    last = (monitor.get("status") or {}).get("lastDecision") or {}
    challenger = args.challenger or (last.get("challenger") if last.get("decision") == "pending" else None)
    if not challenger:
        said = f"its last decision is {last['decision']} ({last['challenger']})" if last else "it has none"
        raise errors.UserError(
            f"driftmonitor/{meta['name']} has no pending decision to approve ({said}); "
            "name the challenger: flywheel approve dm/NAME CHALLENGER"
        )
    owner = claims.claimed_by(monitor, ctx.store.list(api.DriftMonitor.KIND, args.namespace))
    if owner is not None:  # checked before the annotation is written: it would wait there, level-based
        raise errors.UserError(
            f"driftmonitor/{meta['name']} does not own its Deployment (driftmonitor/{owner} does) and "
            f"promotes nothing: approve on {owner}, or delete one of the two monitors"
        )
    annotations = {**(meta.get("annotations") or {}), decisions.ANNOTATION_APPROVE: challenger}
    monitor = ctx.store.put({**monitor, "metadata": {**meta, "annotations": annotations}})

    from flywheel.local.runners import driftmonitor as runner

    plan = runner.reconcile(ctx, monitor, work=False)
    decision = plan.status.get("lastDecision") or {}
    problem = decisions.approval_problem(monitor, _deployment(ctx, monitor), _runs(ctx, monitor))
    if problem:
        raise errors.UserError(problem)
    if decision.get("challenger") == challenger and decision.get("decision") == "promoted":
        ctx.console.print(f"driftmonitor/{meta['name']}: promoted {challenger}: {decision['reason']}")
    else:
        ctx.console.print(
            f"driftmonitor/{meta['name']}: approval of {challenger} recorded; it is promoted as soon "
            "as its decision is pending (see `flywheel get dm`)"
        )
    return 0


def rollback(args: argparse.Namespace) -> int:
    from flywheel.local.runners import deployment

    ctx = runners.Context.create(args.home)
    stored = _stored(ctx, api.Deployment.KIND, args.ref, args.namespace)
    name = stored["metadata"]["name"]
    # The runner records status.rollbackTarget when it swaps a serving model; a Deployment promoted
    # while not serving has only the DriftMonitor's record of the champion it replaced.
    promotion = decisions.promotion_of(stored)
    target = (stored.get("status") or {}).get("rollbackTarget") or promotion.get("previousChampion")
    if not target:
        raise errors.UserError(
            f"deployment/{name} has no status.rollbackTarget: it was never promoted since it started"
        )
    run = str(target).removeprefix("trainingrun/")
    champion = {"fromTrainingRun": run} if run != target else {"uri": str(target)}
    deployment.promote(ctx, name, args.namespace, champion)
    ctx.console.print(f"deployment/{name}: champion is {target} again")
    return 0


def _stored(ctx: runners.Context, kind: str, ref: str, namespace: str) -> Manifest:
    """The stored resource named by NAME or KIND/NAME (the kind must be `kind`)."""
    kind_text, sep, name = ref.rpartition("/")
    if sep and commands.resolve_kind(kind_text) != kind:
        raise errors.UserError(f"{ref!r}: this command takes a {kind}, e.g. {kind.lower()}/NAME")
    manifest = ctx.store.get(kind, name, namespace)
    if manifest is None:
        raise errors.UserError(f"{kind.lower()}/{name} is not in {ctx.home}; run it with `flywheel run -f`")
    return manifest


def _deployment(ctx: runners.Context, monitor: Manifest) -> Manifest | None:
    ref = (monitor.get("spec") or {}).get("deploymentRef")
    return ctx.store.get(api.Deployment.KIND, str(ref), monitor["metadata"].get("namespace") or "default")


def _runs(ctx: runners.Context, monitor: Manifest) -> list[Manifest]:
    from flywheel.controllers import driftmonitor as controller

    namespace = monitor["metadata"].get("namespace") or "default"
    return controller.challengers(monitor, ctx.store.list(api.TrainingRun.KIND, namespace))
