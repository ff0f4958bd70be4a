"""DriftMonitor control flow, pure: from a check, a challenger and a verdict to one plan.

The impure half (flywheel.drift.loop.step) reads the monitor's Deployment and challengers, runs the
drift check when it is due, resolves the data commit when `retrain_reason` says a retrain starts,
evaluates each challenger `to_evaluate` names, and hands all of it here as `Observed`. `plan`
decides, level-based from what exists, never from what happened last:

- Retrain: the latest check is drifted, it is newer than the last retrain, fewer than
  retrain.maxConcurrent challengers are undecided and the cooldown has passed. The challenger is a
  TrainingRun named `<monitor>-<n>` (n = one past the highest retrain seen), owned by the monitor,
  labelled with it, its data.rev pinned to the commit resolved at trigger time, and annotated with
  when and why it was started (so a restart that lost the status patch still sees the cooldown).
- Decision, keyed by the challenger's name (flywheel.controllers.driftmonitor_decisions): recorded
  on the Deployment with the promotion patch, then on the challenger, then in status. A challenger
  with a recorded decision is never evaluated again, and one the Deployment already names was
  promoted by a step that stopped early: its decision is taken from there, not re-evaluated (the
  champion has changed meanwhile). Re-applying any write is a no-op, so an operator restarted
  anywhere in between converges to the same single decision.
- A Failed challenger is recorded as rejected, with its message; nothing is promoted.
- A `pending` win (promotion.autoPromote false) is promoted when the monitor carries the annotation
  ANNOTATION_APPROVE naming it (see driftmonitor_decisions); a refused approval is said in the
  Promoted condition and in one Warning event.
- Conditions: Ready (always), DriftDetected, Retraining, Promoted.
- Ownership (flywheel.controllers.driftmonitor_claims): when `Observed.monitors` shows an older
  DriftMonitor naming the same Deployment, this one does nothing (no retrain, no decision, no
  approval) and says so: Ready False, reason DeploymentClaimed, one Warning event per change.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from typing import Any

import pydantic

from flywheel.api import common, conditions, contract
from flywheel.api import driftmonitor as api
from flywheel.api import trainingrun as tr_api
from flywheel.controllers import driftmonitor_claims as claims
from flywheel.controllers import driftmonitor_decisions as decisions
from flywheel.controllers import plans

COMPONENT = "challenger"
ANNOTATION_DECISION = decisions.ANNOTATION_DECISION
ANNOTATION_PROMOTION = decisions.ANNOTATION_PROMOTION
ANNOTATION_TRIGGERED_AT = f"{contract.ANNOTATION_PREFIX}/triggered-at"
ANNOTATION_TRIGGER_REASON = f"{contract.ANNOTATION_PREFIX}/trigger-reason"
REQUEUE_ACTIVE = 30.0
R_MONITORING = "Monitoring"
R_NO_DEPLOYMENT = "DeploymentNotFound"
R_NO_CHECK = "NotCheckedYet"
R_NOT_ENOUGH_ROWS = "NotEnoughRows"
R_CHECK_FAILED = "CheckFailed"
R_DRIFTED = "Drifted"
R_NO_DRIFT = "NoDrift"
R_RETRAIN_STARTED = "RetrainStarted"
R_IDLE = "Idle"
R_DISABLED = "Disabled"
R_DATA_UNAVAILABLE = "DataUnavailable"
R_PROMOTED = decisions.R_PROMOTED
R_REJECTED = decisions.R_REJECTED
R_PENDING = decisions.R_PENDING
R_CHALLENGER_FAILED = decisions.R_CHALLENGER_FAILED
R_APPROVAL_IGNORED = "ApprovalIgnored"
R_CLAIMED = claims.R_CLAIMED
ANNOTATION_APPROVE = decisions.ANNOTATION_APPROVE
DECISION_REASONS = decisions.DECISION_REASONS
Evaluation = decisions.Evaluation
decision_of = decisions.decision_of
promotion_of = decisions.promotion_of


@dataclasses.dataclass
class Observed:
    """What the loop saw and computed for one step."""

    deployment: plans.Manifest | None = None
    runs: list[plans.Manifest] = dataclasses.field(default_factory=list)
    """TrainingRuns in the monitor's namespace (those the monitor owns are picked out here)."""
    check: dict[str, Any] | None = None
    """This step's check as status fields (CheckResult.to_status), None when none was due."""
    check_note: str | None = None
    """Why this step's check did not judge drift (e.g. too few rows)."""
    check_reason: str = R_NOT_ENOUGH_ROWS
    """The DriftDetected reason that goes with check_note."""
    commit: str | None = None
    """The data commit resolved for a retrain that retrain_reason announced."""
    commit_error: str | None = None
    """Why that commit could not be resolved (the retrain waits; Retraining says why)."""
    evaluations: dict[str, decisions.Evaluation] = dataclasses.field(default_factory=dict)
    monitors: list[plans.Manifest] | None = None
    """DriftMonitors in the monitor's namespace (who owns the Deployment); None: not observed."""


def validate(resource: plans.Manifest) -> api.DriftMonitor:
    return plans.validate_spec(api.DriftMonitor, resource)


def challengers(resource: plans.Manifest, runs: list[plans.Manifest]) -> list[plans.Manifest]:
    """The TrainingRuns this monitor started, oldest first (by their number)."""
    name, uid = resource["metadata"]["name"], resource["metadata"].get("uid")
    out = []
    for run in runs:
        meta = run.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get(contract.LABEL_OWNER_KIND) != api.DriftMonitor.KIND:
            continue
        if labels.get(contract.LABEL_OWNER_NAME) != name:
            continue
        refs = meta.get("ownerReferences") or []
        if uid and refs and not any(r.get("uid") == uid for r in refs):
            continue  # a namesake monitor's leftover
        out.append(run)
    return sorted(out, key=lambda r: _number(name, r["metadata"]["name"]))


def to_evaluate(resource: plans.Manifest, observed: Observed) -> list[plans.Manifest]:
    """Succeeded challengers that still need an evaluation (undecided, not already promoted)."""
    promoted = (promotion_of(observed.deployment).get("decision") or {}).get("challenger")
    return [
        run
        for run in challengers(resource, observed.runs)
        if decisions.phase(run) == conditions.SUCCEEDED and decision_of(run) is None
        if run["metadata"]["name"] != promoted
    ]


def retrain_reason(resource: plans.Manifest, observed: Observed, now: datetime.datetime) -> str | None:
    """Why a retrain starts now, or None: drifted, newer than the last retrain, room, cooled down."""
    spec = validate(resource).spec
    if not spec.retrain.enabled or observed.deployment is None:
        return None
    latest = {**(resource.get("status") or {}), **(observed.check or {})}
    if latest.get("drifted") is not True or not latest.get("lastCheckTime"):
        return None
    checked = plans.parse_rfc3339(latest["lastCheckTime"])
    runs = challengers(resource, observed.runs)
    started = _last_started(resource, runs)
    if started is not None and (
        checked <= started or now < started + _seconds(spec.retrain.cooldown_seconds)
    ):
        return None
    if len(_undecided(runs)) >= spec.retrain.max_concurrent:
        return None
    columns = ", ".join(c.get("column", "?") for c in latest.get("driftedColumns") or []) or "none listed"
    share = float(latest.get("datasetDriftShare") or 0.0)
    return (
        f"drift share {share:.2f} >= {spec.drift.dataset_drift_share:g} in the check at "
        f"{latest['lastCheckTime']} (drifted: {columns})"
    )


def plan(resource: plans.Manifest, observed: Observed, now: datetime.datetime) -> plans.Plan:
    """Status, events, the challenger to create and the patches of one step (pure, idempotent)."""
    current: dict[str, Any] = resource.get("status") or {}
    try:
        monitor = validate(resource)
    except pydantic.ValidationError as exc:
        return _invalid(resource, current, exc, now)
    owner = claims.claimed_by(resource, observed.monitors)
    if owner is not None:
        return claims.plan(resource, current, owner, now, REQUEUE_ACTIVE)
    out = plans.Plan()
    status: dict[str, Any] = dict(observed.check or {})
    runs = challengers(resource, observed.runs)
    reason = retrain_reason(resource, observed, now)
    if reason is not None and observed.commit:
        child = challenger_manifest(
            resource, monitor, _count(resource, runs) + 1, observed.commit, reason, now
        )
        out.apply.append(child)
        runs.append(child)
        out.events.append(
            plans.Event(
                R_RETRAIN_STARTED,
                f"started {child['metadata']['name']}: {reason}; "
                f"data {monitor.spec.retrain.template.data.path}@{observed.commit}",
            )
        )
    decided = decisions.decide(resource, monitor, observed.deployment, observed.evaluations, runs, now, out)
    status.update(decisions.fields(current, decided))
    undecided = _undecided(runs, decided)
    status["retrain"] = _retrain_status(resource, runs, undecided, reason if out.apply else None)
    _conditions(resource, monitor, observed, current, status, now, out)
    out.status = {k: v for k, v in status.items() if v is not None}
    if undecided:
        out.requeue_after = REQUEUE_ACTIVE
    else:
        out.requeue_after = _until_next_check(monitor.spec, {**current, **status}, now)
    return out


def challenger_manifest(
    resource: plans.Manifest,
    monitor: api.DriftMonitor,
    number: int,
    commit: str,
    reason: str,
    now: datetime.datetime,
) -> plans.Manifest:
    """The challenger TrainingRun: the template, data.rev pinned to `commit`, owned by the monitor."""
    name = plans.child_name(monitor.name, str(number))
    meta = plans.child_metadata(resource, name, COMPONENT)
    meta["labels"][contract.LABEL_ROLE] = "challenger"
    meta["annotations"] = {ANNOTATION_TRIGGERED_AT: plans.now_rfc3339(now), ANNOTATION_TRIGGER_REASON: reason}
    spec = monitor.spec.retrain.template.to_dict()
    spec["data"]["rev"] = commit
    return {"apiVersion": common.API_VERSION, "kind": tr_api.TrainingRun.KIND, "metadata": meta, "spec": spec}


# --- retrain bookkeeping ---------------------------------------------------------------------------
def _retrain_status(
    resource: plans.Manifest, runs: list[plans.Manifest], undecided: list[str], reason: str | None
) -> dict[str, Any]:
    current = (resource.get("status") or {}).get("retrain") or {}
    started = _last_started(resource, runs)
    out = {
        "active": undecided,
        "count": _count(resource, runs),
        "lastStarted": plans.now_rfc3339(started) if started else None,
        "lastReason": reason or current.get("lastReason"),
    }
    return {k: v for k, v in out.items() if v is not None}


def _undecided(runs: list[plans.Manifest], decided: Sequence[dict[str, Any]] = ()) -> list[str]:
    """Challengers without a decision (recorded on them, or made in this step)."""
    done = {d["decision"]["challenger"] for d in decided}
    return [
        r["metadata"]["name"] for r in runs if decision_of(r) is None and r["metadata"]["name"] not in done
    ]


def _last_started(resource: plans.Manifest, runs: list[plans.Manifest]) -> datetime.datetime | None:
    stamps = [((resource.get("status") or {}).get("retrain") or {}).get("lastStarted")]
    stamps += [((r["metadata"].get("annotations") or {}).get(ANNOTATION_TRIGGERED_AT)) for r in runs]
    times = [plans.parse_rfc3339(s) for s in stamps if s]
    return max(times) if times else None


def _count(resource: plans.Manifest, runs: list[plans.Manifest]) -> int:
    """Retrains started: the status count, or more when a challenger exists whose count was lost."""
    recorded = int((((resource.get("status") or {}).get("retrain") or {}).get("count")) or 0)
    name = resource["metadata"]["name"]
    return max([recorded, *(_number(name, r["metadata"]["name"]) for r in runs)])


def _number(monitor: str, name: str) -> int:
    tail = name.removeprefix(f"{monitor}-")
    return int(tail) if tail.isdigit() else 0


# --- conditions ------------------------------------------------------------------------------------
def _conditions(
    resource: plans.Manifest,
    monitor: api.DriftMonitor,
    observed: Observed,
    current: dict[str, Any],
    status: dict[str, Any],
    now: datetime.datetime,
    out: plans.Plan,
) -> None:
    """Ready, DriftDetected, Retraining and Promoted from the merged status; events on drift."""
    merged = {**current, **status}
    drift = _drift_row(monitor, observed, merged)
    if observed.deployment is None:
        missing = f"Deployment {monitor.spec.deployment_ref} (deployments.flywheel.dev) does not exist in "
        ready = ("False", R_NO_DEPLOYMENT, missing + "this namespace; create it or fix spec.deploymentRef")
    elif not merged.get("lastCheckTime"):
        ready = ("Unknown", R_NO_CHECK, "waiting for the first drift check")
    else:
        ready = ("True", R_MONITORING, drift[2])
    active = (merged.get("retrain") or {}).get("active") or []
    if not monitor.spec.retrain.enabled:
        retraining = ("False", R_DISABLED, "spec.retrain.enabled is false")
    elif observed.commit_error and not active:
        retraining = ("False", R_DATA_UNAVAILABLE, f"cannot start a retrain: {observed.commit_error}")
        out.events.append(plans.Event(R_DATA_UNAVAILABLE, retraining[2], "Warning"))
    elif active:
        retraining = ("True", R_RETRAIN_STARTED, f"challengers in progress: {', '.join(active)}")
    else:
        retraining = ("False", R_IDLE, "no challenger in progress")
    last = merged.get("lastDecision") or {}
    promoted = (
        ("False", "NoDecision", "no challenger decided yet")
        if not last
        else (
            "True" if last["decision"] == "promoted" else "False",
            decisions.reason_of(last),
            f"{last['challenger']}: {last['reason']}",
        )
    )
    problem = decisions.approval_problem(resource, observed.deployment, challengers(resource, observed.runs))
    if problem:
        promoted = (promoted[0], promoted[1], f"{promoted[2]}; {problem}")
        old_promoted = plans.get_condition(current.get("conditions"), conditions.PROMOTED) or {}
        if old_promoted.get("message") != promoted[2]:
            out.events.append(plans.Event(R_APPROVAL_IGNORED, problem, "Warning"))
    generation = resource["metadata"].get("generation")
    conds = list(current.get("conditions") or [])
    rows = [
        (conditions.READY, *ready),
        (conditions.DRIFT_DETECTED, *drift),
        (conditions.RETRAINING, *retraining),
        (conditions.PROMOTED, *promoted),
        *plans.progress_rows(*ready),
    ]
    for type_, value, reason, message in rows:
        conds = plans.set_condition(conds, type_, value, reason, message, now, generation)
    status.update(
        observedGeneration=generation,
        phase=conditions.RUNNING if ready[0] == "True" else conditions.PENDING,
        message=ready[2],
        conditions=conds,
    )
    old = plans.get_condition(current.get("conditions"), conditions.READY) or {}
    if old.get("status") != ready[0] or old.get("reason") != ready[1]:
        out.events.insert(0, plans.Event(ready[1], ready[2], "Warning" if ready[0] == "False" else "Normal"))
    if observed.check and observed.check.get("drifted") is True:
        out.events.insert(0, plans.Event(R_DRIFTED, drift[2], "Warning"))


def _drift_row(monitor: api.DriftMonitor, observed: Observed, merged: dict[str, Any]) -> tuple[str, str, str]:
    if observed.check is not None and observed.check_note:
        return "Unknown", observed.check_reason, observed.check_note
    if merged.get("drifted") is None:
        return "Unknown", R_NO_CHECK, "no drift check has judged the traffic yet"
    share = float(merged.get("datasetDriftShare") or 0.0)
    columns = [c.get("column", "?") for c in merged.get("driftedColumns") or []]
    text = (
        f"drift share {share:.2f} (threshold {monitor.spec.drift.dataset_drift_share:g}) over "
        f"{merged.get('rowsChecked', '?')} rows at {merged.get('lastCheckTime')}; "
        f"drifted: {', '.join(columns) or 'none'}"
    )
    return ("True", R_DRIFTED, text) if merged["drifted"] else ("False", R_NO_DRIFT, text)


def _invalid(
    resource: plans.Manifest, current: dict[str, Any], exc: pydantic.ValidationError, now: datetime.datetime
) -> plans.Plan:
    message = plans.spec_problems(resource, exc) + "; fix the field and re-apply"
    generation = resource["metadata"].get("generation")
    conds = list(current.get("conditions") or [])
    rows = [(conditions.READY, "False", conditions.R_INVALID_SPEC, message)]
    for type_, value, reason, text in [
        *rows,
        *plans.progress_rows("False", conditions.R_INVALID_SPEC, message),
    ]:
        conds = plans.set_condition(conds, type_, value, reason, text, now, generation)
    status = {
        "observedGeneration": generation,
        "phase": conditions.FAILED,
        "message": message,
        "conditions": conds,
    }
    out = plans.Plan(status={k: v for k, v in status.items() if v is not None}, permanent_error=message)
    old = plans.get_condition(current.get("conditions"), conditions.READY) or {}
    if old.get("reason") != conditions.R_INVALID_SPEC:
        out.events.append(plans.Event(conditions.R_INVALID_SPEC, message, "Warning"))
    return out


# --- small helpers ---------------------------------------------------------------------------------
def _until_next_check(spec: api.DriftMonitorSpec, status: dict[str, Any], now: datetime.datetime) -> float:
    last = status.get("lastCheckTime")
    if not last:
        return 0.0
    due = plans.parse_rfc3339(last) + _seconds(spec.schedule.interval_seconds)
    return max(0.0, (due - now).total_seconds())


def _seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)
