"""DriftMonitor decisions, pure: a challenger's verdict (or failure) into records, patches and events.

A decision is keyed by the challenger's name and recorded on durable objects in this order (the
order flywheel.drift.loop.apply and flywheel.kube.execute both keep):
1. on promotion, the Deployment: spec.champion = fromTrainingRun <challenger>, and the annotation
   ANNOTATION_PROMOTION (the decision as JSON, with the previous champion), in one write;
2. the challenger TrainingRun: the annotation ANNOTATION_DECISION and, when it was promoted, the
   monitor's ownerReference dropped in the same write: the Deployment serves it now, so deleting
   the monitor must not garbage-collect it (nor the rollback target, promoted the same way before);
3. the monitor's status (lastDecision, lastPromotion, rollbackTarget), then events.
`decide` reads these back, so whatever a step cut short left behind is completed, never re-decided.

Approval (promotion.autoPromote false): a challenger that won is recorded `pending`. A person approves
it by annotating the monitor, `flywheel.dev/approve: <challenger>` (`kubectl annotate`, a GitOps
manifest, or `flywheel approve` locally); the next step promotes it through the same three writes.
The annotation is level-based, never cleared: it is inert once its challenger is promoted, and it
may be set before the decision (it then applies when the decision comes out pending). It is refused,
and the Promoted condition says why, when the challenger is not this monitor's, was rejected, or was
evaluated against a champion that has been replaced since (it was never compared with the current
one: retrain instead).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

from flywheel.api import common, conditions, contract
from flywheel.api import driftmonitor as api
from flywheel.controllers import plans

ANNOTATION_DECISION = f"{contract.ANNOTATION_PREFIX}/decision"
ANNOTATION_PROMOTION = f"{contract.ANNOTATION_PREFIX}/promotion"
ANNOTATION_APPROVE = f"{contract.ANNOTATION_PREFIX}/approve"
DECISION_REASONS = {
    "promoted": conditions.R_PROMOTED,
    "rejected": conditions.R_REJECTED,
    "pending": conditions.R_AWAITING_APPROVAL,
}


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What evaluating one Succeeded challenger against the champion concluded (from decide.Verdict)."""

    challenger: str
    decision: str
    """promoted | rejected | pending (won, but promotion.autoPromote is off)."""
    reason: str
    metric: str
    champion_value: float | None = None
    challenger_value: float | None = None
    champion_version: str | None = None
    challenger_version: str | None = None
    data_rev: str | None = None
    rows: int | None = None
    interval: tuple[float, float] | None = None
    """The improvement's 95% interval from the paired test (flywheel.drift.paired)."""
    test: str | None = None
    rule: str | None = None
    shadow: dict[str, Any] | None = None
    """The comparison on labelled shadow traffic, as the check Job wrote it (api.LabelledShadow)."""

    @property
    def promote(self) -> bool:
        return self.decision == "promoted"


def decision_of(run: plans.Manifest) -> dict[str, Any] | None:
    """The decision recorded on a challenger (ANNOTATION_DECISION), or None while undecided."""
    raw = ((run.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_DECISION)
    return _json(raw).get("decision") if raw else None


def promotion_of(deployment: plans.Manifest | None) -> dict[str, Any]:
    """The last promotion recorded on the Deployment (ANNOTATION_PROMOTION), or {}."""
    raw = (((deployment or {}).get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_PROMOTION)
    return _json(raw) if raw else {}


def decide(
    resource: plans.Manifest,
    monitor: api.DriftMonitor,
    deployment: plans.Manifest | None,
    evaluations: dict[str, Evaluation],
    runs: list[plans.Manifest],
    now: datetime.datetime,
    out: plans.Plan,
    hold: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every challenger's decision (recorded ones, and new ones put into `out`), oldest first.
    `hold` (active_hold): a win that repeats a rolled-back model is recorded pending, not promoted."""
    promotion = promotion_of(deployment)
    active = (((resource.get("status") or {}).get("retrain")) or {}).get("active") or []
    done: list[dict[str, Any]] = []
    approved = approval_of(resource)
    last = str((((resource.get("status") or {}).get("lastDecision")) or {}).get("time") or "")
    for run in runs:
        name = run["metadata"]["name"]
        recorded = decision_of(run)
        promoted_here = (promotion.get("decision") or {}).get("challenger") == name
        pending = recorded is not None and recorded["decision"] == "pending"
        if pending and promoted_here:
            recorded = None  # an approval cut short after its Deployment write: complete it below
        previous: str | None
        if (
            pending
            and recorded
            and approved == name
            and deployment
            and not refusal(name, recorded, promotion)
        ):
            decision, previous = _approved(recorded, now), _champion_text(deployment)
            out.patch_resources.append(_promotion_patch(deployment, name, decision, previous))
        elif recorded is not None:
            done.append({"decision": recorded, **_extra(promotion, name)})
            if recorded["decision"] == "promoted" and _owned(run, resource):  # promoted by an older release
                out.patch_resources.append(_released(run, resource, _ref(run)))
            if name in active or str(recorded["time"]) > last:  # a step stopped before status and events
                out.events.append(_decision_event(recorded))
            continue
        elif promoted_here and deployment is not None:
            # A step that stopped after writing the Deployment: take its decision, re-apply its patch
            # (a no-op on the API server; the local backend re-tries the hot swap).
            decision, previous = promotion["decision"], promotion.get("previousChampion")
            out.patch_resources.append(_promotion_patch(deployment, name, decision, previous))
        elif phase(run) == conditions.FAILED:
            decision, previous = _failed(monitor, run, now), None
        elif name in evaluations and deployment is not None:
            decision = _held(_decision(evaluations[name], now), hold)
            previous = _champion_text(deployment)
            if decision["decision"] == "promoted":
                out.patch_resources.append(_promotion_patch(deployment, name, decision, previous))
        else:
            continue
        record = _annotate(run, ANNOTATION_DECISION, {"decision": decision})
        out.patch_resources.append(
            _released(run, resource, record) if decision["decision"] == "promoted" else record
        )
        out.events.append(_decision_event(decision))
        done.append({"decision": decision, "previousChampion": previous, "new": True})
    # newest last: an approval is a later decision than those of challengers started after it
    return sorted(done, key=lambda d: str(d["decision"]["time"]))


def rollback_hold(
    current: dict[str, Any], deployment: plans.Manifest | None, now: datetime.datetime
) -> dict[str, Any] | None:
    """The rollback to honour: the Deployment's last recorded promotion (ANNOTATION_PROMOTION)
    names a challenger it no longer serves, so a person put another champion back. The record
    already in status is kept as is (its time is when the monitor first saw the rollback)."""
    decision = promotion_of(deployment).get("decision") or {}
    name = decision.get("challenger")
    champion = ((deployment or {}).get("spec") or {}).get("champion") or {}
    if not name or decision.get("decision") != "promoted" or champion.get("fromTrainingRun") == name:
        return current.get("rollbackHold")
    held = current.get("rollbackHold") or {}
    if held.get("challenger") == name and str(held.get("time")) >= str(decision.get("time")):
        return held
    out = {
        "challenger": name,
        "time": plans.now_rfc3339(now),
        "version": decision.get("challengerVersion"),
        "dataRev": decision.get("dataRev"),
        "champion": _champion_text(deployment) if deployment else None,
    }
    return {k: v for k, v in out.items() if v is not None}


def active_hold(status: dict[str, Any]) -> dict[str, Any] | None:
    """status.rollbackHold while no promotion came after it (a new winner ends the hold)."""
    hold = status.get("rollbackHold")
    if not hold or str(status.get("lastPromotion") or "") > str(hold.get("time")):
        return None
    return dict(hold)


def hold_message(hold: dict[str, Any]) -> str:
    what = f"model {hold['version']}" if hold.get("version") else "its model"
    return (
        f"{hold['challenger']} was rolled back at {hold['time']}: a challenger with {what} or data "
        f"rev {hold.get('dataRev') or '?'} waits for {ANNOTATION_APPROVE} instead of being promoted"
    )


def _held(decision: dict[str, Any], hold: dict[str, Any] | None) -> dict[str, Any]:
    """A promoted decision that repeats the rolled-back model (same version or data) -> pending."""
    if hold is None or decision["decision"] != "promoted":
        return decision
    same = [
        what
        for what, key in (("model version", "version"), ("data rev", "dataRev"))
        if hold.get(key) and decision.get("challengerVersion" if key == "version" else key) == hold[key]
    ]
    if decision["challenger"] != hold["challenger"] and not same:
        return decision
    why = f"the same {' and '.join(same)} as {hold['challenger']}" if same else "it"
    return {**decision, "decision": "pending",
            "reason": f"{decision['reason']}; held: {why} was rolled back at {hold['time']} "
                      f"(approve with {ANNOTATION_APPROVE}={decision['challenger']})"}  # fmt: skip


def approval_of(resource: plans.Manifest) -> str | None:
    """The challenger named by the monitor's ANNOTATION_APPROVE, or None."""
    value = ((resource.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_APPROVE)
    return str(value).strip() or None if value is not None else None


def refusal(name: str, recorded: dict[str, Any] | None, promotion: dict[str, Any]) -> str | None:
    """Why approving challenger `name` cannot promote it (None: it can, or it is already promoted,
    or it is undecided and the approval waits for its decision)."""
    if recorded is None or recorded["decision"] == "promoted":
        return None
    if recorded["decision"] == "rejected":
        return f"it was rejected ({recorded['reason']}); only a pending decision can be approved"
    since = (promotion.get("decision") or {}).get("time")
    if since and str(since) > str(recorded["time"]):
        return (
            f"the champion was replaced at {since}, after {name} was evaluated at {recorded['time']}; "
            "it was never compared with the current champion: let the monitor retrain instead"
        )
    return None


def approval_problem(
    resource: plans.Manifest, deployment: plans.Manifest | None, runs: list[plans.Manifest]
) -> str | None:
    """What is wrong with the monitor's approval annotation, for the Promoted condition, or None."""
    name = approval_of(resource)
    if name is None:
        return None
    run = next((r for r in runs if r["metadata"]["name"] == name), None)
    if run is None:
        names = ", ".join(r["metadata"]["name"] for r in runs) or "none yet"
        why = f"it is not a challenger of this monitor (challengers: {names})"
    else:
        why = refusal(name, decision_of(run), promotion_of(deployment)) or ""
    return f"{ignored(name)}: {why}" if why else None


def ignored(name: str) -> str:
    """How a refused approval of `name` starts, in the Promoted condition's message."""
    return f"{ANNOTATION_APPROVE}={name} is ignored"


def _approved(recorded: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    """The pending decision, now promoted by a person: same comparison, new time and reason."""
    reason = str(recorded["reason"]).replace(" (autoPromote is false: recorded, not applied)", "")
    return {**recorded, "decision": "promoted", "time": plans.now_rfc3339(now),
            "reason": f"{reason}; approved ({ANNOTATION_APPROVE})"}  # fmt: skip


def _decision(ev: Evaluation, now: datetime.datetime) -> dict[str, Any]:
    decision = api.Decision(
        time=plans.now_rfc3339(now),
        challenger=ev.challenger,
        decision=ev.decision,
        reason=ev.reason,
        metric=ev.metric,
        champion_value=ev.champion_value,
        challenger_value=ev.challenger_value,
        champion_version=ev.champion_version,
        challenger_version=ev.challenger_version,
        data_rev=ev.data_rev,
        rows=ev.rows,
        interval=None if ev.interval is None else [round(v, 6) for v in ev.interval],
        test=ev.test,
        rule=ev.rule,
        shadow=api.LabelledShadow.model_validate(ev.shadow) if ev.shadow else None,
    )
    return decision.to_dict()


def _failed(monitor: api.DriftMonitor, run: plans.Manifest, now: datetime.datetime) -> dict[str, Any]:
    status = run.get("status") or {}
    message = str(status.get("message") or "no message")
    decision = api.Decision(
        time=plans.now_rfc3339(now),
        challenger=run["metadata"]["name"],
        decision="rejected",
        reason=f"the challenger failed: {message}"[:500],
        metric=monitor.spec.promotion.metric.value,
        data_rev=(status.get("data") or {}).get("commit") or run["spec"]["data"].get("rev"),
    )
    return decision.to_dict()


def _extra(promotion: dict[str, Any], name: str) -> dict[str, Any]:
    if (promotion.get("decision") or {}).get("challenger") == name:
        return {"previousChampion": promotion.get("previousChampion")}
    return {}


def _promotion_patch(
    deployment: plans.Manifest, challenger: str, decision: dict[str, Any], previous: str | None
) -> plans.Manifest:
    """spec.champion := the challenger, and the decision recorded on the Deployment in the same write."""
    spec: dict[str, Any] = {"champion": {"fromTrainingRun": challenger, "uri": None}}
    if ((deployment.get("spec") or {}).get("challenger") or {}).get("fromTrainingRun") == challenger:
        spec.update(challenger=None, traffic={"challengerPercent": 0})  # it is the champion now
    patch = _annotate(deployment, ANNOTATION_PROMOTION, {"decision": decision, "previousChampion": previous})
    patch["spec"] = spec
    return patch


def _annotate(obj: plans.Manifest, key: str, value: dict[str, Any]) -> plans.Manifest:
    patch = _ref(obj)
    patch["metadata"]["annotations"] = {key: json.dumps(value, sort_keys=True)}
    return patch


def _ref(obj: plans.Manifest) -> plans.Manifest:
    """The start of a patch to `obj`: what names it."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj.get("apiVersion", common.API_VERSION),
        "kind": obj["kind"],
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace") or "default"},
    }


def _owned(run: plans.Manifest, monitor: plans.Manifest) -> bool:
    uid = monitor["metadata"].get("uid")
    return any(ref.get("uid") == uid for ref in run["metadata"].get("ownerReferences") or [])


def _released(run: plans.Manifest, monitor: plans.Manifest, patch: plans.Manifest) -> plans.Manifest:
    """`patch` that also drops the monitor's ownerReference from `run` (None: the field goes)."""
    uid = monitor["metadata"].get("uid")
    kept = [ref for ref in run["metadata"].get("ownerReferences") or [] if ref.get("uid") != uid]
    patch["metadata"]["ownerReferences"] = kept or None
    return patch


def _champion_text(deployment: plans.Manifest) -> str:
    """The serving champion as one string: its model URI when known, else trainingrun/<name>."""
    status, champion = deployment.get("status") or {}, (deployment.get("spec") or {}).get("champion") or {}
    if status.get("championUri"):
        return str(status["championUri"])
    return str(champion.get("uri") or f"trainingrun/{champion.get('fromTrainingRun')}")


def _decision_event(decision: dict[str, Any]) -> plans.Event:
    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{float(value):.4f}"

    text = (
        f"{decision['decision']} challenger {decision['challenger']} "
        f"(model {decision.get('challengerVersion') or '?'}) "
        f"vs champion {decision.get('championVersion') or '?'}: "
        f"{decision['metric']} {fmt(decision.get('championValue'))} "
        f"-> {fmt(decision.get('challengerValue'))}; "
        f"data rev {decision.get('dataRev') or '?'}; {decision['reason']}"
    )
    warning = decision["decision"] == "rejected"
    reason = (
        conditions.R_CHALLENGER_FAILED if decision["reason"].startswith("the challenger failed") else None
    )
    return plans.Event(
        reason or DECISION_REASONS[decision["decision"]], text, "Warning" if warning else "Normal"
    )


def fields(current: dict[str, Any], decided: list[dict[str, Any]]) -> dict[str, Any]:
    """lastDecision is the newest decision; lastPromotion/rollbackTarget follow the newest promotion."""
    if not decided:
        return {}
    newest = decided[-1]["decision"]
    fields: dict[str, Any] = {}
    if (current.get("lastDecision") or {}) != newest:
        fields["lastDecision"] = newest
    promoted = [d for d in decided if d["decision"]["decision"] == "promoted"]
    if promoted and promoted[-1]["decision"]["time"] != current.get("lastPromotion"):
        fields["lastPromotion"] = promoted[-1]["decision"]["time"]
        if promoted[-1].get("previousChampion"):
            fields["rollbackTarget"] = promoted[-1]["previousChampion"]
    return fields


def reason_of(decision: dict[str, Any]) -> str:
    if decision["reason"].startswith("the challenger failed"):
        return conditions.R_CHALLENGER_FAILED
    return DECISION_REASONS[decision["decision"]]


def phase(run: plans.Manifest) -> str | None:
    phase = (run.get("status") or {}).get("phase")
    return str(phase) if phase else None


def _json(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
