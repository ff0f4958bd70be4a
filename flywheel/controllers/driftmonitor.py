"""DriftMonitor, like its siblings: observe_refs -> pure plan -> the adapters apply it.

`observe_refs` names what a reconcile reads: the monitor's Deployment, its challenger TrainingRuns
(a list by owner label), the namespace's DriftMonitors (who owns the Deployment) and the last check
Job with its pod. `plan` decides, level-based from what exists, never from what happened last, and
schedules the next look with `requeue_after` (the check interval, or REQUEUE_ACTIVE while a Job or
a challenger is in flight):

- Check: when due (schedule.intervalSeconds after status.lastCheckTime) and the Deployment serves a
  champion, a check Job `<monitor>-check-<window>` (flywheel.controllers.driftcheck) runs the
  Evidently check and evaluates any challenger that finished, in the drift image; status.checkJob
  names it. Its outcome (the termination message) is folded into status once, by lastCheckTime.
  A Succeeded challenger outside a check gets its own Job `<monitor>-eval-<n>`. One Job at a time.
- Retrain: the latest check is drifted, it is newer than the last retrain, fewer than
  retrain.maxConcurrent challengers are undecided and the cooldown has passed. The challenger is a
  TrainingRun named `<monitor>-<n>` (n = one past the highest retrain seen), owned by the monitor,
  labelled with it, annotated with when and why it was started (so a restart that lost the status
  patch still sees the cooldown). Its data.rev is the template's: the trainer resolves it and pins
  the commit in the run's status.data.commit, which the decision records.
- Decision, keyed by the challenger's name (flywheel.controllers.driftmonitor_decisions): recorded
  on the Deployment with the promotion patch, then on the challenger, then in status. A challenger
  with a recorded decision is never evaluated again. Re-applying any write is a no-op, so an
  operator restarted anywhere in between converges to the same single decision.
- A Failed challenger is recorded as rejected, with its message; nothing is promoted.
- A `pending` win (promotion.autoPromote false) is promoted when the monitor carries the annotation
  ANNOTATION_APPROVE naming it; a refused approval is said in the Promoted condition.
- Rollback: when the Deployment stops serving the challenger the monitor last promoted, the monitor
  records status.rollbackHold; until a later promotion, a winner with the same model version or
  data revision is recorded `pending` (it needs the approval annotation), never promoted on its own.
- Conditions: Ready (always), DriftDetected, Retraining, Promoted.
- Ownership (flywheel.controllers.driftmonitor_claims): when an older DriftMonitor names the same
  Deployment, this one does nothing and says so: Ready False, reason DeploymentClaimed.
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
from flywheel.controllers import artifact_store, driftcheck, plans
from flywheel.controllers import driftmonitor_claims as claims
from flywheel.controllers import driftmonitor_decisions as decisions
from flywheel.controllers import settings as settings_mod

COMPONENT = "challenger"
ANNOTATION_DECISION = decisions.ANNOTATION_DECISION
ANNOTATION_PROMOTION = decisions.ANNOTATION_PROMOTION
ANNOTATION_TRIGGERED_AT = f"{contract.ANNOTATION_PREFIX}/triggered-at"
ANNOTATION_TRIGGER_REASON = f"{contract.ANNOTATION_PREFIX}/trigger-reason"
ANNOTATION_TRIGGER = f"{contract.ANNOTATION_PREFIX}/trigger"
"""Which retrain trigger started a challenger: featureDrift, predictionDrift or performanceDrop."""
ANNOTATION_RETRAIN_MODE = f"{contract.ANNOTATION_PREFIX}/retrain-mode"
REQUEUE_ACTIVE = 30.0
REQUEUE_JOB = 10.0
"""Seconds between looks while a check Job runs (its watch event usually comes first)."""
ANNOTATION_APPROVE = decisions.ANNOTATION_APPROVE
DECISION_REASONS = decisions.DECISION_REASONS
Evaluation = decisions.Evaluation
decision_of = decisions.decision_of
promotion_of = decisions.promotion_of
TRAINING_RUN_API = common.API_VERSION


@dataclasses.dataclass
class Facts:
    """What one reconcile knows, read from plans.Observed (see facts())."""

    deployment: plans.Manifest | None = None
    runs: list[plans.Manifest] = dataclasses.field(default_factory=list)
    """The monitor's challengers (TrainingRuns carrying its owner labels)."""
    monitors: list[plans.Manifest] | None = None
    """DriftMonitors in the monitor's namespace (who owns the Deployment); None: not observed."""
    job: plans.Manifest | None = None
    """The check Job status.checkJob names, when it exists."""
    outcome: driftcheck.Outcome | None = None
    """That Job's outcome once it finished."""
    check: dict[str, Any] | None = None
    """A check outcome not yet in status, as status fields (CheckResult.to_status)."""
    check_note: str | None = None
    """Why that check did not judge drift (e.g. too few rows)."""
    check_reason: str = conditions.R_NOT_ENOUGH_ROWS
    """The DriftDetected reason that goes with check_note."""
    evaluations: dict[str, decisions.Evaluation] = dataclasses.field(default_factory=dict)


def validate(resource: plans.Manifest) -> api.DriftMonitor:
    """The resource as the author wrote it, validated (raises pydantic.ValidationError)."""
    return plans.validate_spec(api.DriftMonitor, resource)


def _where(resource: plans.Manifest) -> tuple[str, str]:
    meta = resource["metadata"]
    return meta["name"], meta.get("namespace") or "default"


def observe_refs(resource: plans.Manifest, settings: settings_mod.Settings) -> list[plans.Ref]:
    """The Deployment, the challengers, the namespace's monitors and the last check Job + pods."""
    name, ns = _where(resource)
    ref = str((resource.get("spec") or {}).get("deploymentRef") or "")
    owned = f"{contract.LABEL_OWNER_KIND}={api.DriftMonitor.KIND},{contract.LABEL_OWNER_NAME}={name}"
    refs = [
        plans.list_ref(TRAINING_RUN_API, tr_api.TrainingRun.KIND, "", ns, owned),
        plans.list_ref(common.API_VERSION, api.DriftMonitor.KIND, "", ns, ""),
    ]
    if ref:
        refs.insert(0, plans.Ref(common.API_VERSION, "Deployment", ref, ns))
    job = (resource.get("status") or {}).get("checkJob")
    if job:
        refs += [plans.Ref(driftcheck.API_VERSION, driftcheck.KIND, job, ns), driftcheck.pods_ref(job, ns)]
    return refs


def facts(resource: plans.Manifest, observed: plans.Observed) -> Facts:
    """Facts from what the adapter observed (the refs of observe_refs)."""
    status = resource.get("status") or {}
    ref = str((resource.get("spec") or {}).get("deploymentRef") or "")
    out = Facts(
        deployment=observed.get("Deployment", ref) if ref else None,
        runs=challengers(resource, plans.items(observed, tr_api.TrainingRun.KIND, "")),
        monitors=plans.items(observed, api.DriftMonitor.KIND, ""),
    )
    for run in out.runs:  # nothing to evaluate: decided without a Job
        model = ((run.get("status") or {}).get("model") or {}).get("cardUri")
        if decisions.phase(run) == conditions.SUCCEEDED and decision_of(run) is None and not model:
            name, metric = run["metadata"]["name"], _metric(resource)
            out.evaluations[name] = decisions.Evaluation(
                name, "rejected", "the challenger exported no model", metric
            )
    job_name = status.get("checkJob")
    if job_name:
        out.job = observed.get(driftcheck.KIND, job_name)
        if out.job is not None:
            pods = [p for p in plans.items(observed, "Pod", job_name) if driftcheck.of_job(p, job_name)]
            out.outcome = driftcheck.finished(out.job, pods)
    if out.outcome is None or job_name == status.get("checkJobRead"):
        return out  # nothing finished, or its outcome is already in status
    result = out.outcome.result or {}
    check = result.get("check")
    if isinstance(check, dict):
        out.check, out.check_note = check, result.get("note")
        out.check_reason = str(result.get("reason") or conditions.R_NOT_ENOUGH_ROWS)
    elif out.outcome.error and driftcheck.is_check(str(job_name)):
        # the Job itself failed: said in DriftDetected, tried again at the next interval
        done = (out.job or {}).get("status", {}).get("completionTime") or _job_time(out.job)
        out.check = {"lastCheckTime": done, "rowsChecked": 0}
        out.check_note, out.check_reason = out.outcome.error, conditions.R_CHECK_FAILED
    undecided = {r["metadata"]["name"] for r in out.runs if decision_of(r) is None}
    for item in result.get("evaluations") or []:
        if isinstance(item, dict) and item.get("challenger") in undecided:
            out.evaluations[item["challenger"]] = _evaluation(item)
    failed = driftcheck.evaluated_by(str(job_name), resource["metadata"]["name"])
    # Its own evaluation Job failed: say why, once.
    if out.outcome.error and failed is not None and failed in undecided:
        why = f"the challenger could not be evaluated: {out.outcome.error}"
        out.evaluations[failed] = decisions.Evaluation(failed, "rejected", why, _metric(resource))
    return out


def _metric(resource: plans.Manifest) -> str:
    return str(((resource.get("spec") or {}).get("promotion") or {}).get("metric") or "accuracy")


def _job_time(job: plans.Manifest | None) -> str | None:
    """When a failed Job gave up (its Failed condition), else when it was created."""
    conds = ((job or {}).get("status") or {}).get("conditions") or []
    failed: dict[str, Any] = next((c for c in conds if c.get("type") == "Failed"), {})
    return failed.get("lastTransitionTime") or ((job or {}).get("metadata") or {}).get("creationTimestamp")


def _evaluation(item: dict[str, Any]) -> decisions.Evaluation:
    def number(key: str) -> float | None:
        value = item.get(key)
        return None if value is None else float(value)

    return decisions.Evaluation(
        challenger=str(item["challenger"]), decision=str(item.get("decision") or "rejected"),
        reason=str(item.get("reason") or "no reason given"), metric=str(item.get("metric") or ""),
        champion_value=number("championValue"), challenger_value=number("challengerValue"),
        champion_version=item.get("championVersion"), challenger_version=item.get("challengerVersion"),
        data_rev=item.get("dataRev"), rows=_int(item.get("rows")), interval=_pair(item.get("interval")),
        test=item.get("test"), rule=item.get("rule"), shadow=_shadow(item.get("shadow")),
    )  # fmt: skip


def _shadow(value: Any) -> dict[str, Any] | None:
    """The labelled-shadow comparison of a Job's outcome, or None when it is absent or garbled."""
    if not isinstance(value, dict):
        return None
    try:
        return api.LabelledShadow.model_validate(value).to_dict()
    except pydantic.ValidationError:
        return None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _pair(value: Any) -> tuple[float, float] | None:
    """[low, high] from the Job's outcome; anything else (a garbled message) is no interval."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        return float(value[0]), float(value[1])
    return None


def render_children(resource: plans.Manifest, settings: settings_mod.Settings) -> list[plans.Manifest]:
    """The children a first reconcile creates: none until the Deployment serves a champion (the
    check Job needs its model), so `flywheel render` shows none and says why on stderr."""
    validate(resource)
    return []


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


def to_evaluate(resource: plans.Manifest, seen: Facts) -> list[plans.Manifest]:
    """Succeeded challengers that still need an evaluation (undecided, not already promoted)."""
    promoted = (promotion_of(seen.deployment).get("decision") or {}).get("challenger")
    return [
        run
        for run in seen.runs
        if decisions.phase(run) == conditions.SUCCEEDED and decision_of(run) is None
        if run["metadata"]["name"] != promoted and run["metadata"]["name"] not in seen.evaluations
    ]


def retrain_trigger(
    resource: plans.Manifest, monitor: api.DriftMonitor, seen: Facts, now: datetime.datetime
) -> tuple[str, str] | None:
    """(trigger, reason) of the retrain that starts now, or None: a trigger spec.retrain.triggers
    acts on fired in the latest check, which is newer than the last retrain; there is room; the
    cooldown has passed."""
    spec = monitor.spec
    if not spec.retrain.enabled or seen.deployment is None:
        return None
    latest = {**(resource.get("status") or {}), **(seen.check or {})}
    if not latest.get("lastCheckTime"):
        return None
    # A status written before triggers existed says only `drifted`: feature drift.
    fired = latest.get("triggers")
    if fired is None:
        fired = [api.Trigger.FEATURE_DRIFT.value] if latest.get("drifted") is True else []
    acting = [t.value for t in spec.retrain.triggers if t.value in fired]
    if not acting:
        return None
    checked = plans.parse_rfc3339(latest["lastCheckTime"])
    started = _last_started(resource, seen.runs)
    if started is not None and (
        checked <= started or now < started + _seconds(spec.retrain.cooldown_seconds)
    ):
        return None
    if len(_undecided(seen.runs)) >= spec.retrain.max_concurrent:
        return None
    trigger = acting[0]
    return trigger, _trigger_text(trigger, spec, latest)


def _trigger_text(trigger: str, spec: api.DriftMonitorSpec, latest: dict[str, Any]) -> str:
    at = f"in the check at {latest['lastCheckTime']}"
    if trigger == api.Trigger.PREDICTION_DRIFT:
        drift = latest.get("predictionDrift") or {}
        return (
            f"prediction drift: {drift.get('method')} distance {float(drift.get('distance') or 0):.3f} "
            f">= {spec.performance.prediction_drift_threshold:g} {at}"
        )
    if trigger == api.Trigger.PERFORMANCE_DROP:
        perf = latest.get("performance") or {}
        return f"performance drop ({perf.get('metric')}): {perf.get('dropped')} {at}"
    columns = ", ".join(c.get("column", "?") for c in latest.get("driftedColumns") or []) or "none listed"
    share = float(latest.get("datasetDriftShare") or 0.0)
    return f"drift share {share:.2f} >= {spec.drift.dataset_drift_share:g} {at} (drifted: {columns})"


def plan(
    resource: plans.Manifest,
    observed: plans.Observed,
    now: datetime.datetime,
    settings: settings_mod.Settings | None = None,
    model: api.DriftMonitor | None = None,
) -> plans.Plan:
    """Status, events, the children to create and the patches of one reconcile (pure, idempotent).
    `model`: the resource already validated by the adapter (once per reconcile), else validated here."""
    settings = settings or settings_mod.Settings()
    current: dict[str, Any] = resource.get("status") or {}
    try:
        monitor = model or validate(resource)
    except pydantic.ValidationError as exc:
        return _invalid(resource, current, exc, now)
    seen = facts(resource, observed)
    owner = claims.claimed_by(resource, seen.monitors)
    if owner is not None:
        return claims.plan(resource, current, owner, now, REQUEUE_ACTIVE)
    out = plans.Plan()
    status: dict[str, Any] = dict(seen.check or {})
    if seen.outcome is not None:
        status["checkJobRead"] = current.get("checkJob")  # its outcome is folded in once
        dropped = ((seen.check or {}).get("performance") or {}).get("dropped")
        if dropped:  # once per check, as the outcome is folded in once
            out.events.append(
                plans.Event(
                    conditions.R_PERFORMANCE_DROPPED, f"live performance dropped: {dropped}", "Warning"
                )
            )
    runs = list(seen.runs)
    found = retrain_trigger(resource, monitor, seen, now)
    reason = None if found is None else found[1]
    if found is not None:
        champion_uri = (champion_model(seen.deployment) or ("", None))[0]
        child = challenger_manifest(
            resource,
            monitor,
            _count(resource, runs) + 1,
            found[1],
            now,
            trigger=found[0],
            champion=champion_uri,
        )
        out.apply.append(child)
        runs.append(child)
        data = monitor.spec.retrain.template.data
        started = f"started {child['metadata']['name']}: {reason}; data {data.path}@{data.rev}"
        out.events.append(plans.Event(conditions.R_RETRAIN_STARTED, started))
    hold = decisions.rollback_hold(current, seen.deployment, now)
    if hold is not None and hold != current.get("rollbackHold"):
        status["rollbackHold"] = hold
        out.events.append(plans.Event(conditions.R_ROLLED_BACK, decisions.hold_message(hold), "Warning"))
    decided = decisions.decide(resource, monitor, seen.deployment, seen.evaluations, runs, now, out,
                               hold=decisions.active_hold({**current, **status}))  # fmt: skip
    status.update(decisions.fields(current, decided))
    undecided = _undecided(runs, decided)
    status["retrain"] = _retrain_status(
        resource, runs, undecided, reason if found else None, found[0] if found else None
    )
    running = _check_job(resource, monitor, seen, {**current, **status}, now, settings, out, status)
    _conditions(resource, monitor, seen, current, status, now, out, running)
    out.status = {k: v for k, v in status.items() if v is not None}
    # kopf does not report changes of flywheel.dev/ annotations (its own prefix): an approval of a
    # pending decision is found by looking again, every REQUEUE_ACTIVE while one waits.
    awaiting = ({**current, **status}.get("lastDecision") or {}).get("decision") == "pending"
    if running or undecided or awaiting:
        out.requeue_after = REQUEUE_JOB if running else REQUEUE_ACTIVE
    else:
        out.requeue_after = _until_next_check(monitor.spec, {**current, **status}, now)
    return out


def _check_job(
    resource: plans.Manifest,
    monitor: api.DriftMonitor,
    seen: Facts,
    merged: dict[str, Any],
    now: datetime.datetime,
    settings: settings_mod.Settings,
    out: plans.Plan,
    status: dict[str, Any],
) -> str | None:
    """The check Job in flight, or the one started now (its name), or None: one at a time."""
    if seen.job is not None and seen.outcome is None:
        return str(seen.job["metadata"]["name"])
    champion = champion_model(seen.deployment)
    if champion is None:
        return None
    due = _until_next_check(monitor.spec, merged, now) <= 0
    pending = to_evaluate(resource, seen)
    if not due and not pending:
        return None
    name = (
        driftcheck.check_name(monitor.name, monitor.spec.schedule.interval_seconds, now)
        if due
        else driftcheck.eval_name(monitor.name, pending[0]["metadata"]["name"])
    )
    if name == merged.get("checkJob"):
        return None  # that Job ran and its outcome is in; the next window gets a new one
    config = job_config(resource, monitor, seen.deployment, champion, due, pending, settings)
    out.apply.extend(driftcheck.render(resource, name, config, monitor.spec.artifacts, settings))
    if seen.job is not None:  # the last Job's outcome is in status now: it can go
        old = seen.job["metadata"]
        where = {"name": old["name"], "namespace": old.get("namespace")}
        for api_version, kind in (("v1", "ConfigMap"), (driftcheck.API_VERSION, driftcheck.KIND)):
            out.delete.append({"apiVersion": api_version, "kind": kind, "metadata": where})
    status["checkJob"] = name
    return name


def champion_model(deployment: plans.Manifest | None) -> tuple[str, str | None] | None:
    """(model URI, version) the Deployment serves (its status), or None while it has none."""
    if deployment is None:
        return None
    status = deployment.get("status") or {}
    uri = status.get("championUri") or ((deployment.get("spec") or {}).get("champion") or {}).get("uri")
    return (str(uri), status.get("championVersion")) if uri else None


def job_config(
    resource: plans.Manifest,
    monitor: api.DriftMonitor,
    deployment: plans.Manifest | None,
    champion: tuple[str, str | None],
    check: bool,
    runs: list[plans.Manifest],
    settings: settings_mod.Settings | None = None,
) -> dict[str, Any]:
    """The check Job's config (flywheel/drift/job.py reads it): no clock reading, so the same
    window renders the same Job. The traffic sink is where the Deployment's pods write: a defaulted
    store is the platform's (artifact_store.effective_uri), as the Deployment's operator made it."""
    dep = deployment or {}
    spec = dep.get("spec") or {}
    root = (spec.get("artifacts") or {}).get("uri") or common.Artifacts().uri
    root = artifact_store.effective_uri(root, settings or settings_mod.Settings())
    sink = (spec.get("logging") or {}).get("sink") or contract.traffic_sink(root, dep["metadata"]["name"])
    items = []
    for run in runs:
        status = run.get("status") or {}
        model = status.get("model") or {}
        if not model.get("cardUri"):
            continue  # Succeeded without a model: decided as rejected by nobody; see to_evaluate
        items.append({
            "name": run["metadata"]["name"], "modelUri": str(model["cardUri"]).rsplit("/", 1)[0],
            "version": model.get("version"), "target": str(run["spec"]["model"]["target"]),
            "dataRev": (status.get("data") or {}).get("commit") or run["spec"]["data"].get("rev"),
        })  # fmt: skip
    return {
        "monitor": monitor.name,
        "namespace": monitor.namespace,
        "spec": monitor.spec.to_dict(),
        "check": check,
        "championUri": champion[0],
        "championVersion": champion[1],
        "trafficSink": str(sink),
        "challengers": items,
    }


def challenger_manifest(
    resource: plans.Manifest,
    monitor: api.DriftMonitor,
    number: int,
    reason: str,
    now: datetime.datetime,
    trigger: str = api.Trigger.FEATURE_DRIFT.value,
    champion: str = "",
) -> plans.Manifest:
    """The challenger TrainingRun: the template (the trainer pins data.rev's commit), owned by the
    monitor, naming the trigger; with retrain.mode fineTune it starts from `champion` (model.initFrom)."""
    name = plans.child_name(monitor.name, str(number))
    meta = plans.child_metadata(resource, name, COMPONENT)
    meta["labels"][contract.LABEL_ROLE] = "challenger"
    mode = monitor.spec.retrain.mode
    meta["annotations"] = {
        ANNOTATION_TRIGGERED_AT: plans.now_rfc3339(now),
        ANNOTATION_TRIGGER_REASON: reason,
        ANNOTATION_TRIGGER: trigger,
        ANNOTATION_RETRAIN_MODE: mode.value,
    }
    spec = monitor.spec.retrain.template.to_dict()
    if mode == api.RetrainMode.FINE_TUNE and champion:
        spec["model"]["initFrom"] = champion
    return {"apiVersion": common.API_VERSION, "kind": tr_api.TrainingRun.KIND, "metadata": meta, "spec": spec}


# --- retrain bookkeeping ---------------------------------------------------------------------------
def _retrain_status(
    resource: plans.Manifest,
    runs: list[plans.Manifest],
    undecided: list[str],
    reason: str | None,
    trigger: str | None = None,
) -> dict[str, Any]:
    current = (resource.get("status") or {}).get("retrain") or {}
    started = _last_started(resource, runs)
    out = {
        "active": undecided,
        "count": _count(resource, runs),
        "lastStarted": plans.now_rfc3339(started) if started else None,
        "lastReason": reason or current.get("lastReason"),
        "lastTrigger": trigger or current.get("lastTrigger"),
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
    observed: Facts,
    current: dict[str, Any],
    status: dict[str, Any],
    now: datetime.datetime,
    out: plans.Plan,
    running: str | None = None,
) -> None:
    """Ready, DriftDetected, Retraining and Promoted from the merged status; events on drift."""
    merged = {**current, **status}
    drift = _drift_row(monitor, observed, merged)
    Row = conditions.Condition
    if observed.deployment is None:
        missing = f"Deployment {monitor.spec.deployment_ref} (deployments.flywheel.dev) does not exist in "
        fix = "this namespace; create it or fix spec.deploymentRef"
        ready = Row(conditions.READY, "False", conditions.R_NO_DEPLOYMENT, missing + fix)
    elif not merged.get("lastCheckTime") and running:
        ready = Row(
            conditions.READY, "Unknown", conditions.R_CHECKING, f"the first drift check runs in Job {running}"
        )
    elif not merged.get("lastCheckTime"):
        wait = "the Deployment to serve a champion" if champion_model(observed.deployment) is None else "it"
        said = f"waiting for the first drift check (waiting for {wait})"
        ready = Row(conditions.READY, "Unknown", conditions.R_NO_CHECK, said)
    else:
        ready = Row(conditions.READY, "True", conditions.R_MONITORING, drift.message)
    active = (merged.get("retrain") or {}).get("active") or []
    if not monitor.spec.retrain.enabled:
        retraining = Row(
            conditions.RETRAINING, "False", conditions.R_DISABLED, "spec.retrain.enabled is false"
        )
    elif active:
        said = f"challengers in progress: {', '.join(active)}"
        retraining = Row(conditions.RETRAINING, "True", conditions.R_RETRAIN_STARTED, said)
    else:
        retraining = Row(conditions.RETRAINING, "False", conditions.R_IDLE, "no challenger in progress")
    last = merged.get("lastDecision") or {}
    if not last:
        promoted = Row(conditions.PROMOTED, "False", conditions.R_NO_DECISION, "no challenger decided yet")
    else:
        decided = "True" if last["decision"] == "promoted" else "False"
        said = f"{last['challenger']}: {last['reason']}"
        promoted = Row(conditions.PROMOTED, decided, decisions.reason_of(last), said)
    hold = decisions.active_hold(merged)
    if hold is not None:
        promoted = promoted._replace(message=f"{promoted.message}; {decisions.hold_message(hold)}")
    problem = decisions.approval_problem(resource, observed.deployment, observed.runs)
    if problem:
        promoted = promoted._replace(message=f"{promoted.message}; {problem}")
        old_promoted = plans.get_condition(current.get("conditions"), conditions.PROMOTED) or {}
        if old_promoted.get("message") != promoted.message:
            out.events.append(plans.Event(conditions.R_APPROVAL_IGNORED, problem, "Warning"))
    generation = resource["metadata"].get("generation")
    rows = [ready, drift, retraining, promoted, *plans.progress_rows(ready)]
    status.update(
        observedGeneration=generation,
        phase=conditions.RUNNING if ready.status == "True" else conditions.PENDING,
        message=ready.message,
        conditions=plans.set_conditions(list(current.get("conditions") or []), rows, now, generation),
    )
    old = plans.get_condition(current.get("conditions"), conditions.READY) or {}
    if old.get("status") != ready.status or old.get("reason") != ready.reason:
        kind = "Warning" if ready.status == "False" else "Normal"
        out.events.insert(0, plans.Event(ready.reason, ready.message, kind))
    if observed.check and observed.check.get("drifted") is True:
        out.events.insert(0, plans.Event(conditions.R_DRIFTED, drift.message, "Warning"))


def _drift_row(monitor: api.DriftMonitor, observed: Facts, merged: dict[str, Any]) -> conditions.Condition:
    def row(status: str, reason: str, message: str) -> conditions.Condition:
        return conditions.Condition(conditions.DRIFT_DETECTED, status, reason, message)

    if observed.check is not None and observed.check_note:
        return row("Unknown", observed.check_reason, observed.check_note)
    said = plans.get_condition(merged.get("conditions"), conditions.DRIFT_DETECTED) or {}
    if observed.check is None and said.get("reason") in (
        conditions.R_CHECK_FAILED,
        conditions.R_NOT_ENOUGH_ROWS,
    ):
        return row("Unknown", str(said["reason"]), str(said.get("message")))  # until the next check says more
    if merged.get("drifted") is None:
        return row("Unknown", conditions.R_NO_CHECK, "no drift check has judged the traffic yet")
    share = float(merged.get("datasetDriftShare") or 0.0)
    columns = [c.get("column", "?") for c in merged.get("driftedColumns") or []]
    text = (
        f"drift share {share:.2f} (threshold {monitor.spec.drift.dataset_drift_share:g}) over "
        f"{merged.get('rowsChecked', '?')} rows at {merged.get('lastCheckTime')}; "
        f"drifted: {', '.join(columns) or 'none'}"
    )
    return (
        row("True", conditions.R_DRIFTED, text)
        if merged["drifted"]
        else row("False", conditions.R_NO_DRIFT, text)
    )


def _invalid(
    resource: plans.Manifest, current: dict[str, Any], exc: pydantic.ValidationError, now: datetime.datetime
) -> plans.Plan:
    message = plans.spec_problems(resource, exc) + "; fix the field and re-apply"
    generation = resource["metadata"].get("generation")
    ready = conditions.Condition(conditions.READY, "False", conditions.R_INVALID_SPEC, message)
    conds = plans.set_conditions(
        list(current.get("conditions") or []), [ready, *plans.progress_rows(ready)], now, generation
    )
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
