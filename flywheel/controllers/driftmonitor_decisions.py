"""DriftMonitor decisions, pure: a challenger's verdict (or failure) into records, patches and events.

A decision is keyed by the challenger's name and recorded on durable objects in this order (the
order flywheel.drift.loop.apply and flywheel.kube.execute both keep):
1. on promotion, the Deployment: spec.champion = fromTrainingRun <challenger>, and the annotation
   ANNOTATION_PROMOTION (the decision as JSON, with the previous champion), in one write;
2. the challenger TrainingRun: the annotation ANNOTATION_DECISION;
3. the monitor's status (lastDecision, lastPromotion, rollbackTarget), then events.
`decide` reads these back, so whatever a step cut short left behind is completed, never re-decided.
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
R_PROMOTED = "Promoted"
R_REJECTED = "Rejected"
R_PENDING = "AwaitingApproval"
R_CHALLENGER_FAILED = "ChallengerFailed"
DECISION_REASONS = {"promoted": R_PROMOTED, "rejected": R_REJECTED, "pending": R_PENDING}


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
) -> list[dict[str, Any]]:
    """Every challenger's decision (recorded ones, and new ones put into `out`), oldest first."""
    promotion = promotion_of(deployment)
    active = (((resource.get("status") or {}).get("retrain")) or {}).get("active") or []
    done: list[dict[str, Any]] = []
    for run in runs:
        name = run["metadata"]["name"]
        recorded = decision_of(run)
        if recorded is not None:
            done.append({"decision": recorded, **_extra(promotion, name)})
            if name in active:  # decided by a step that stopped before its status and events
                out.events.append(_decision_event(recorded))
            continue
        if (promotion.get("decision") or {}).get("challenger") == name and deployment is not None:
            # A step that stopped after writing the Deployment: take its decision, re-apply its patch
            # (a no-op on the API server; the local backend re-tries the hot swap).
            decision, previous = promotion["decision"], promotion.get("previousChampion")
            out.patch_resources.append(_promotion_patch(deployment, name, decision, previous))
        elif phase(run) == conditions.FAILED:
            decision, previous = _failed(monitor, run, now), None
        elif name in evaluations and deployment is not None:
            decision = _decision(evaluations[name], now)
            previous = _champion_text(deployment)
            if decision["decision"] == "promoted":
                out.patch_resources.append(_promotion_patch(deployment, name, decision, previous))
        else:
            continue
        out.patch_resources.append(_annotate(run, ANNOTATION_DECISION, {"decision": decision}))
        out.events.append(_decision_event(decision))
        done.append({"decision": decision, "previousChampion": previous, "new": True})
    return done


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
    meta = obj["metadata"]
    return {
        "apiVersion": obj.get("apiVersion", common.API_VERSION),
        "kind": obj["kind"],
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace") or "default",
            "annotations": {key: json.dumps(value, sort_keys=True)},
        },
    }


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
    reason = R_CHALLENGER_FAILED if decision["reason"].startswith("the challenger failed") else None
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
        return R_CHALLENGER_FAILED
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
