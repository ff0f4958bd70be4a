"""Which DriftMonitor owns a Deployment when several name it, pure.

Two DriftMonitors whose spec.deploymentRef names the same Deployment (a GitOps copy-paste, a renamed
monitor applied beside the old one) would both retrain on the same drift and both promote, fighting
over spec.champion. As Kubernetes does for two HPAs on one target, the conflict is reported, not
raced: among the monitors of one namespace that name the same Deployment, the oldest
(metadata.creationTimestamp, ties broken by name: timestamps have one-second resolution, so a
`kubectl apply -f dir/` often creates both in the same second) owns it. The others do nothing and
say who owns it in Ready (reason DeploymentClaimed); when the owner is deleted (or points elsewhere)
the next one owns it at its next step.

`claimed_by(resource, monitors)` says whether another monitor owns this one's Deployment;
`plan(...)` is the whole step of a monitor that waits (driftmonitor.plan returns it).

The rule reads only metadata and the raw spec.deploymentRef, so it is stable: a monitor whose other
fields are invalid still holds its claim (fixing it does not flip ownership), and a monitor being
deleted (deletionTimestamp set, e.g. waiting on a finalizer) no longer does.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterable
from typing import Any

from flywheel.api import conditions
from flywheel.controllers import driftmonitor_decisions as decisions
from flywheel.controllers import plans

_LATEST = datetime.datetime.max.replace(tzinfo=datetime.UTC)


def owner(resource: plans.Manifest, monitors: Iterable[plans.Manifest]) -> plans.Manifest:
    """The monitor that owns `resource`'s Deployment among `monitors` (possibly `resource` itself).

    `monitors` are the DriftMonitors as listed (this one included or not; other namespaces and other
    Deployments are ignored). `resource` itself always takes part, with its own metadata."""
    name, namespace, ref = _identity(resource)
    rivals = {name: resource}
    for other in monitors:
        other_name, other_namespace, other_ref = _identity(other)
        if other_name == name or other_namespace != namespace or other_ref != ref:
            continue
        if (other.get("metadata") or {}).get("deletionTimestamp"):
            continue  # going away: it no longer holds the Deployment
        rivals[other_name] = other
    return min(rivals.values(), key=_age)


def claimed_by(resource: plans.Manifest, monitors: Iterable[plans.Manifest] | None) -> str | None:
    """The name of the other monitor that owns this one's Deployment, or None when this one owns it
    (or when the other monitors were not observed)."""
    if monitors is None:
        return None
    first = owner(resource, monitors)
    name = first["metadata"]["name"]
    return None if name == resource["metadata"]["name"] else str(name)


def message(resource: plans.Manifest, owner_name: str) -> str:
    """Ready's message for a monitor that does not own its Deployment: who does, and the fix."""
    name, _, ref = _identity(resource)
    return (
        f"Deployment {ref} is monitored by driftmonitor/{owner_name} (the oldest DriftMonitor naming "
        f"it); driftmonitor/{name} does nothing while it does: delete one of them or point "
        "spec.deploymentRef elsewhere"
    )


def plan(
    resource: plans.Manifest, current: dict[str, Any], owner: str, now: datetime.datetime, requeue: float
) -> plans.Plan:
    """Another monitor owns the Deployment: only say so (the event once per owner), and look again
    after `requeue` seconds, so this one takes over shortly after the owner is deleted (the
    operator steps it sooner, from its index)."""
    said = message(resource, owner)
    owns = f"driftmonitor/{owner} owns the Deployment"
    generation = resource["metadata"].get("generation")
    conds = list(current.get("conditions") or [])
    claimed = conditions.R_CLAIMED
    rows = [
        conditions.Condition(conditions.READY, "False", claimed, said),
        conditions.Condition(conditions.DRIFT_DETECTED, "Unknown", claimed, f"not checking: {said}"),
        conditions.Condition(conditions.RETRAINING, "False", claimed, f"not retraining: {owns}"),
    ]
    promoted = plans.get_condition(conds, conditions.PROMOTED) or {}
    approval = decisions.approval_of(resource)
    if approval:  # a person may be waiting on it: say it is not carried out, and why
        note = f"{decisions.ANNOTATION_APPROVE}={approval} is not carried out: {owns}"
        rows.append(
            conditions.Condition(conditions.PROMOTED, promoted.get("status") or "False", claimed, note)
        )
    elif not promoted:
        no_decision = "no challenger decided yet"
        rows.append(conditions.Condition(conditions.PROMOTED, "False", conditions.R_NO_DECISION, no_decision))
    conds = plans.set_conditions(conds, rows, now, generation)
    status = {"observedGeneration": generation, "phase": conditions.PENDING, "message": said}
    status["conditions"] = conds
    out = plans.Plan(status={k: v for k, v in status.items() if v is not None}, requeue_after=requeue)
    old = plans.get_condition(current.get("conditions"), conditions.READY) or {}
    if old.get("reason") != conditions.R_CLAIMED or old.get("message") != said:
        out.events.append(plans.Event(conditions.R_CLAIMED, said, "Warning"))
    return out


def _identity(resource: plans.Manifest) -> tuple[str, str, str | None]:
    meta = resource.get("metadata") or {}
    ref = (resource.get("spec") or {}).get("deploymentRef")
    return str(meta.get("name")), str(meta.get("namespace") or "default"), None if ref is None else str(ref)


def _age(resource: plans.Manifest) -> tuple[datetime.datetime, str]:
    """Oldest first; a monitor without a creationTimestamp (not stored yet) is the newest."""
    meta = resource.get("metadata") or {}
    stamp = meta.get("creationTimestamp")
    created = _LATEST
    if stamp:
        with contextlib.suppress(ValueError):  # unreadable: counts as the newest
            created = plans.parse_rfc3339(stamp)
    return created, str(meta.get("name"))
