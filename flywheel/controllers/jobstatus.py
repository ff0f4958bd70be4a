"""What a PyTorchJob-backed run (TrainingRun, SelfPlayRun) reports: the shared status vocabulary.

A run's reconcile ends in a View (phase, Ready, reason, message, extra conditions, status fields);
`finish` turns it into the Plan's status patch (Ready, Reconciling, Stalled keyed by type, kstatus
compatible), transition events and the requeue. The ownership and spec-change checks of a job and
the invalid-spec plan are the same for every run kind, so they live here too.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pydantic

from flywheel.api import conditions, contract
from flywheel.controllers import plans, pytorchjob

TERMINAL = (conditions.SUCCEEDED, conditions.FAILED)
REQUEUE_ACTIVE = 30.0
REQUEUE_RECREATE = 5.0
R_CREATING = "CreatingJob"
R_RECREATING = "RecreatingJob"
R_SPEC_CHANGED = "SpecChangedAfterStart"
R_NAME_CONFLICT = "JobNameConflict"


@dataclasses.dataclass
class View:
    """The decision of one reconcile, before it becomes conditions."""

    phase: str
    ready: str
    reason: str
    message: str
    stalled: bool = False
    extra: list[tuple[str, str, str, str]] = dataclasses.field(default_factory=list)
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)


def owned_by(job: plans.Manifest, resource: plans.Manifest) -> bool:
    """Whether the job is this run's (owner labels, and owner uid when both sides carry one)."""
    meta = resource["metadata"]
    job_meta = job.get("metadata") or {}
    labels = job_meta.get("labels") or {}
    if labels.get(contract.LABEL_OWNER_KIND) != resource["kind"]:
        return False
    if labels.get(contract.LABEL_OWNER_NAME) != meta["name"]:
        return False
    uid = meta.get("uid")
    refs = job_meta.get("ownerReferences") or []
    return not (uid and refs) or any(r.get("uid") == uid for r in refs)


def spec_changed(job: plans.Manifest, resource: plans.Manifest) -> bool:
    """Whether the run's generation moved on since the job was rendered (the job records it)."""
    generation = resource["metadata"].get("generation")
    recorded = ((job.get("metadata") or {}).get("annotations") or {}).get(pytorchjob.ANNOTATION_GENERATION)
    return generation is not None and recorded is not None and recorded != str(generation)


def invalid(
    resource: plans.Manifest, current: dict[str, Any], exc: pydantic.ValidationError, now: datetime.datetime
) -> plans.Plan:
    message = plans.spec_problems(resource, exc) + "; fix the field and re-apply (nothing was created)"
    view = View(conditions.FAILED, "False", conditions.R_INVALID_SPEC, message, stalled=True)
    out = finish(resource, current, now, view, None)
    out.permanent_error = message
    out.requeue_after = None
    return out


def recreate(
    resource: plans.Manifest,
    current: dict[str, Any],
    now: datetime.datetime,
    job: plans.Manifest,
    rendered: tuple[plans.Manifest, ...],
    message: str,
) -> plans.Plan:
    """The spec changed before the job started any pod: delete what was rendered, then create anew."""
    view = View(conditions.PENDING, "Unknown", R_RECREATING, message)
    out = finish(resource, current, now, view, job["metadata"]["name"])
    out.requeue_after = REQUEUE_RECREATE
    if not job["metadata"].get("deletionTimestamp"):  # the delete is already on its way
        out.delete = list(rendered)
        out.events = [plans.Event(R_RECREATING, message)]  # once, even when the phase stays Pending
    return out


def finish(
    resource: plans.Manifest,
    current: dict[str, Any],
    now: datetime.datetime,
    view: View,
    job_name: str | None,
    apply: list[plans.Manifest] | None = None,
) -> plans.Plan:
    """Turn a view into the plan: conditions, status fields, transition events, requeue."""
    generation = resource["metadata"].get("generation")
    conds = list(current.get("conditions") or [])
    in_progress = view.ready == "Unknown"
    rows = [
        (conditions.READY, view.ready, view.reason, view.message),
        (conditions.RECONCILING, str(in_progress), view.reason, view.message if in_progress else ""),
        (conditions.STALLED, str(view.stalled), view.reason, view.message if view.stalled else ""),
        *view.extra,
    ]
    for type_, value, reason, message in rows:
        conds = plans.set_condition(conds, type_, value, reason, message, now, generation)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": view.phase,
        "message": view.message,
        "jobName": job_name,
        "conditions": conds,
        **view.fields,
    }
    out = plans.Plan(apply=apply or [], status={k: v for k, v in status.items() if v is not None})
    old_ready = plans.get_condition(current.get("conditions"), conditions.READY) or {}
    if view.phase != current.get("phase") or (view.stalled and old_ready.get("reason") != view.reason):
        kind = "Warning" if view.phase == conditions.FAILED or view.stalled else "Normal"
        out.events.append(plans.Event(view.reason, view.message, kind))
    out.requeue_after = None if view.phase in TERMINAL else REQUEUE_ACTIVE
    return out
