"""Carry out a Plan against the local store, and gather what a controller asked to observe.

The local twin of flywheel.kube.execute: the same pure controller plans, the same fixed order
(deletes, then children in the plan's order, then patches of other Flywheel resources, then this
resource's status with observedGeneration, and the events), the same skip-if-equal rule
(plans.contains), so executing a plan twice writes nothing the second time. Children are objects
in the SQLite store (flywheel.local.store); what turns them into processes and writes their status
is flywheel.local.realize, as the Training Operator and the kubelet do on a cluster.

No converge and no fresh path here: a store read is a local SQLite query, not a round trip, so the
local loop simply reconciles again after each change it makes.
"""

from __future__ import annotations

import dataclasses
import datetime
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flywheel import errors
from flywheel.controllers import plans
from flywheel.controllers import settings as settings_mod
from flywheel.local import store as store_mod


@dataclasses.dataclass
class Outcome:
    """What execute() wrote, as "verb Kind/name" lines (empty: the store already matched)."""

    writes: list[str] = dataclasses.field(default_factory=list)


def observe(store: store_mod.Store, refs: Iterable[plans.Ref]) -> plans.Observed:
    """Read every ref from the store (missing objects are simply absent)."""
    observed = plans.Observed()
    for ref in refs:
        obj = store.get(ref.kind, ref.name, ref.namespace)
        if obj is not None:
            observed.objects[ref.key] = obj
    return observed


def status_patch(resource: Mapping[str, Any], plan: plans.Plan) -> dict[str, Any]:
    """The plan's status patch plus observedGeneration: the generation this reconcile has seen."""
    patch = dict(plan.status)
    generation = (resource.get("metadata") or {}).get("generation")
    if generation is not None:
        patch["observedGeneration"] = generation
    return patch


def execute(
    store: store_mod.Store,
    resource: Mapping[str, Any],
    plan: plans.Plan,
    observed: plans.Observed | None = None,
) -> Outcome:
    """Apply `plan` for `resource` in the store (see the module docstring for the order)."""
    outcome = Outcome()
    seen = observed or plans.Observed()
    for manifest in plan.delete:
        meta = manifest["metadata"]
        if store.delete(manifest["kind"], meta["name"], meta.get("namespace") or "default"):
            outcome.writes.append(f"deleted {_key(manifest)}")
    for manifest in plan.apply:
        meta = manifest["metadata"]
        namespace = meta.get("namespace") or "default"
        current = seen.get(manifest["kind"], meta["name"]) or store.get(
            manifest["kind"], meta["name"], namespace
        )
        if current is not None and current.get("apiVersion") != manifest.get("apiVersion"):
            # The store keys objects by kind and name, not group: a Flywheel Deployment named like
            # another's serving child (<name>-serving) would be overwritten by it.
            raise errors.UserError(
                f"{_key(manifest)}: the name is taken by a {current.get('apiVersion')} object in "
                f"this home; rename {_key(resource)} or that object"
            )
        if current is not None and plans.contains(current, manifest):
            continue
        store.put(manifest)
        outcome.writes.append(f"{'patched' if current else 'created'} {_key(manifest)}")
    for patch in plan.patch_resources:
        if _patch_spec(store, patch):
            outcome.writes.append(f"patched {_key(patch)}")
    meta = resource["metadata"]
    namespace = meta.get("namespace") or "default"
    status = status_patch(resource, plan)
    if not plans.contains(resource.get("status") or {}, status):
        store.patch_status(resource["kind"], meta["name"], status, namespace)
        outcome.writes.append(f"status {_key(resource)}")
    for event in plan.events:
        store.add_event(resource["kind"], meta["name"], event.reason, event.message, event.type, namespace)
        outcome.writes.append(f"event {event.reason}")
    return outcome


def _patch_spec(store: store_mod.Store, patch: Mapping[str, Any]) -> bool:
    """Merge a spec/labels/annotations patch into another stored resource; False when it already
    said so. KeyError when it does not exist (as the API's 404)."""
    meta = patch["metadata"]
    namespace = meta.get("namespace") or "default"
    live = store.get(patch["kind"], meta["name"], namespace)
    if live is None:
        raise KeyError(f"{patch['kind']}/{meta['name']} does not exist in namespace {namespace}")
    wanted_meta = {k: v for k, v in meta.items() if k in ("labels", "annotations", "ownerReferences")}
    body = {"spec": patch.get("spec") or {}, "metadata": wanted_meta}
    if plans.contains(live, body):
        return False
    merged = plans.merge_patch({k: v for k, v in live.items() if k != "status"}, body)
    store.put(merged)
    return True


PlanFn = Callable[[Mapping[str, Any], plans.Observed], plans.Plan]


def reconcile_once(
    store: store_mod.Store,
    controller: types.ModuleType,
    resource: Mapping[str, Any],
    settings: settings_mod.Settings,
    now: datetime.datetime | None = None,
    plan_fn: PlanFn | None = None,
) -> tuple[plans.Plan, Outcome]:
    """observe -> plan -> execute, as operators.reconcile.reconcile_once does on Kubernetes.
    `plan_fn` replaces `controller.plan` when the adapter completes the observation first (a
    SelfPlayRun's log tail)."""
    at = now or datetime.datetime.now(datetime.UTC)
    observed = observe(store, controller.observe_refs(resource, settings))
    if plan_fn is not None:
        plan = plan_fn(resource, observed)
    else:
        plan = controller.plan(resource, observed, at, settings)
    return plan, execute(store, resource, plan, observed)


def _key(manifest: Mapping[str, Any]) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"
