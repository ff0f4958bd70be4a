"""What a PyTorchJob-backed run (TrainingRun, SelfPlayRun) reports: the shared status vocabulary.

A run's reconcile ends in a View (phase, Ready, reason, message, extra conditions, status fields);
`finish` turns it into the Plan's status patch (Ready, Reconciling, Stalled keyed by type, kstatus
compatible), transition events and the requeue. The ownership and spec-change checks of a job and
the invalid-spec plan are the same for every run kind, so they live here too.

A spec edited after the job started cannot reach the job (pod templates are immutable, a half
trained model cannot take new settings), so it is reported, never applied: the SpecDiverged
condition says whether the current spec differs from the one the job was started with (compared
by hash: putting the spec back clears it). While the job runs, the run is also Ready=False and
Stalled=True (reason SpecChangedAfterStart: what was asked for will not happen without a person);
a finished run keeps its phase and Ready (its result is real and may be served), so kstatus reads
it Current and the Argo CD health check Healthy. The CRD rejects such edits at admission once the
status says Running or Succeeded (flywheel.api.crds); this covers the rest (an edit made before
the status said so, a cluster without CEL).
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


@dataclasses.dataclass
class View:
    """The decision of one reconcile, before it becomes conditions."""

    phase: str
    ready: str
    reason: str
    message: str
    stalled: bool = False
    extra: list[conditions.Condition] = dataclasses.field(default_factory=list)
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    diverged: bool | None = None
    """Whether the spec differs from the job's (None: no job known, no SpecDiverged condition)."""
    diverged_message: str = ""


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
    """Whether the run's spec differs from the one the job was rendered from: by the spec hash
    the job records, or for a job rendered before it did, by generation (which never comes back)."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    recorded_hash = annotations.get(pytorchjob.ANNOTATION_SPEC_HASH)
    if recorded_hash is not None:
        return bool(recorded_hash != pytorchjob.spec_hash(resource))
    generation = resource["metadata"].get("generation")
    recorded = annotations.get(pytorchjob.ANNOTATION_GENERATION)
    return generation is not None and recorded is not None and recorded != str(generation)


def report_spec(
    view: View, job: plans.Manifest, resource: plans.Manifest, terminal: bool, job_kind: str = "PyTorchJob"
) -> None:
    """Say on `view` whether the spec still matches the job's (see the module docstring)."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    view.fields["jobSpecHash"] = annotations.get(pytorchjob.ANNOTATION_SPEC_HASH)
    view.diverged = spec_changed(job, resource)
    if not view.diverged:
        return
    kind, job_name = resource["kind"], job["metadata"]["name"]
    if terminal:
        view.diverged_message = (
            f"spec changed after {job_kind} {job_name} started; the run finished with the spec it "
            f"started with. Create a new {kind} to run the new spec, or put the spec back"
        )
        return
    view.ready, view.reason, view.stalled = "False", conditions.R_SPEC_CHANGED, True
    view.message = view.diverged_message = (
        f"spec changed after {job_kind} {job_name} started; it goes on with the spec it started "
        f"with. Create a new {kind} (or delete and re-apply this one) to use the new spec, or "
        "put the spec back"
    )


def finished_without_job(
    resource: plans.Manifest, current: dict[str, Any], now: datetime.datetime
) -> plans.Plan:
    """A finished run whose job was garbage-collected (ttlSecondsAfterFinished): its result is
    final; only SpecDiverged follows the spec, against the hash the status recorded from the job."""
    recorded = current.get("jobSpecHash")
    was = plans.get_condition(current.get("conditions"), conditions.SPEC_DIVERGED) or {}
    ready = plans.get_condition(current.get("conditions"), conditions.READY) or {}
    if recorded is not None:
        diverged = recorded != pytorchjob.spec_hash(resource)
    else:  # a status written before the hash was: a generation that moved on, once, is sticky
        generation = resource["metadata"].get("generation")
        moved = generation is not None and current.get("observedGeneration") not in (None, generation)
        diverged = moved or was.get("status") == "True" or ready.get("reason") == conditions.R_SPEC_CHANGED
    if str(diverged) == was.get("status") and ready.get("reason") != conditions.R_SPEC_CHANGED:
        return plans.Plan()
    phase = current["phase"]
    if ready.get("reason") == conditions.R_SPEC_CHANGED:  # written by an older operator: the outcome again
        succeeded = phase == conditions.SUCCEEDED
        reason = conditions.R_SUCCEEDED if succeeded else conditions.R_FAILED
        view = View(phase, "True" if succeeded else "False", reason, reason, stalled=not succeeded)
    else:
        view = View(phase, ready.get("status", "Unknown"), ready.get("reason", ""), ready.get("message", ""))
        view.stalled = (plans.get_condition(current.get("conditions"), conditions.STALLED) or {}).get(
            "status"
        ) == "True"
    view.message = current.get("message") or view.message
    view.diverged = diverged
    if diverged:
        view.diverged_message = (
            f"spec changed after the run finished; a finished {resource['kind']} does not run again. "
            f"Create a new {resource['kind']} to run the new spec, or put the spec back"
        )
    return finish(resource, current, now, view, current["jobName"])


def creating(job_name: str, current: dict[str, Any], job_kind: str = "PyTorchJob") -> str:
    """The message of a job's create; says so when a job of this run existed and is gone (a
    deleted job restarts the run, which a person should hear about)."""
    if current.get("jobName") and current.get("phase") not in (None, conditions.PENDING):
        return f"{job_kind} {job_name} is gone while {current['phase'].lower()}; creating it again"
    return f"creating {job_kind} {job_name}"


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
    view = View(conditions.PENDING, "Unknown", conditions.R_RECREATING, message)
    out = finish(resource, current, now, view, job["metadata"]["name"])
    out.requeue_after = REQUEUE_RECREATE
    if not job["metadata"].get("deletionTimestamp"):  # the delete is already on its way
        out.delete = list(rendered)
        out.events = [
            plans.Event(conditions.R_RECREATING, message)
        ]  # once, even when the phase stays Pending
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
        conditions.Condition(conditions.READY, view.ready, view.reason, view.message),
        conditions.Condition(
            conditions.RECONCILING, str(in_progress), view.reason, view.message if in_progress else ""
        ),
        conditions.Condition(
            conditions.STALLED, str(view.stalled), view.reason, view.message if view.stalled else ""
        ),
        *view.extra,
    ]
    if view.diverged is not None:
        why = conditions.R_SPEC_CHANGED if view.diverged else conditions.R_SPEC_MATCHES
        rows.append(
            conditions.Condition(conditions.SPEC_DIVERGED, str(view.diverged), why, view.diverged_message)
        )
    conds = plans.set_conditions(conds, rows, now, generation)
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
    # Which occurrence of a transition this is: the state it leaves (the job's startTime comes
    # from the server, so a retried reconcile keys the same event the same way, and the API's 409
    # drops the repeat; a job recreated after it ran leaves another startTime: a new event).
    occurrence = f"{current.get('phase')}@{current.get('startTime')}"
    if view.phase != current.get("phase") or (view.stalled and old_ready.get("reason") != view.reason):
        kind = "Warning" if view.phase == conditions.FAILED or view.stalled else "Normal"
        out.events.append(plans.Event(view.reason, view.message, kind, occurrence))
    was_diverged = (plans.get_condition(current.get("conditions"), conditions.SPEC_DIVERGED) or {}).get(
        "status"
    )
    if (
        view.diverged
        and was_diverged != "True"
        and all(e.reason != conditions.R_SPEC_CHANGED for e in out.events)
    ):
        out.events.append(
            plans.Event(conditions.R_SPEC_CHANGED, view.diverged_message, "Warning", occurrence)
        )
    out.requeue_after = None if view.phase in TERMINAL else REQUEUE_ACTIVE
    return out
