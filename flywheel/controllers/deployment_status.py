"""Status of a Deployment (deployments.flywheel.dev): rollout progress, conditions, events; pure.

Conditions: Ready, ChampionReady, ChallengerReady, Reconciling, Stalled. Ready is True only when
the live apps/v1 Deployment runs the desired template (its config-hash annotation) on every wanted
replica; while a new template rolls out, or the champion's model is not there yet, it is Unknown
and Reconciling is True (kstatus: InProgress); an invalid spec or a champion that failed makes
Ready False and Stalled True (kstatus: Failed). The local backend uses the same rows.
"""

from __future__ import annotations

import datetime
from typing import Any

import pydantic

from flywheel.api import conditions, contract
from flywheel.api import deployment as api
from flywheel.controllers import deployment_models as models
from flywheel.controllers import deployment_pods as pods
from flywheel.controllers import plans


def rollout(dep: api.Deployment, live: plans.Manifest | None, desired: plans.Manifest) -> tuple[bool, str]:
    """(done, message): the live Deployment runs the desired template on every wanted replica."""
    wanted = pods.wanted_replicas(dep)
    if live is None:
        return False, "creating the serving Deployment"
    meta, status = live.get("metadata") or {}, live.get("status") or {}
    want_hash = desired["metadata"]["annotations"][contract.ANNOTATION_CONFIG_HASH]
    if (meta.get("annotations") or {}).get(contract.ANNOTATION_CONFIG_HASH) != want_hash:
        return False, "rolling out a new serving config"
    generation = meta.get("generation")
    if generation is not None and status.get("observedGeneration", 0) < generation:
        return False, "waiting for the Deployment controller to see the new template"
    ready, updated = status.get("readyReplicas", 0), status.get("updatedReplicas", 0)
    if updated < wanted or ready < wanted or status.get("replicas", 0) > updated:
        return False, f"rolling out: {updated}/{wanted} updated, {ready}/{wanted} ready"
    return True, f"{ready}/{wanted} replicas ready"


def rollout_failure(live: plans.Manifest | None, desired: plans.Manifest) -> tuple[str, str] | None:
    """(reason, message) when the live apps/v1 Deployment says its pods of the desired template
    cannot serve, in the Deployment controller's words: Progressing False (ProgressDeadlineExceeded:
    the new pods never became ready) is RolloutFailed; Available False after the rollout had
    finished (Progressing says NewReplicaSetAvailable: the ready pods went away, e.g. crashed) is
    ServingUnavailable. None otherwise (creating, rolling, or serving). A status of an older
    template or generation does not count: the new rollout has not been looked at yet."""
    if live is None:
        return None
    meta, status = live.get("metadata") or {}, live.get("status") or {}
    want_hash = desired["metadata"]["annotations"][contract.ANNOTATION_CONFIG_HASH]
    if (meta.get("annotations") or {}).get(contract.ANNOTATION_CONFIG_HASH) != want_hash:
        return None
    generation = meta.get("generation")
    if generation is not None and status.get("observedGeneration", 0) < generation:
        return None
    progressing = plans.get_condition(status.get("conditions"), "Progressing") or {}
    available = plans.get_condition(status.get("conditions"), "Available") or {}
    if progressing.get("status") == "False":
        return conditions.R_ROLLOUT_FAILED, str(progressing.get("message") or progressing.get("reason"))
    if available.get("status") == "False" and progressing.get("reason") == "NewReplicaSetAvailable":
        return conditions.R_UNAVAILABLE, str(available.get("message") or available.get("reason"))
    return None


def failed_rows(reason: str, message: str) -> list[conditions.Condition]:
    """Ready and ChampionReady when the pods cannot serve (rollout_failure)."""
    return [
        conditions.Condition(conditions.READY, "False", reason, message),
        conditions.Condition(conditions.CHAMPION_READY, "False", reason, message),
    ]


def served_fields(
    champion: models.Model | None, live: plans.Manifest | None, done: bool, current: dict[str, Any]
) -> dict[str, Any]:
    """servedChampionUri/Version: which champion the ready pods serve, from the pods' readiness
    as the live apps/v1 Deployment reports it. `done` (every wanted replica ready on the current
    template) means the wanted champion. Mid-rollout the pods that answer are the previous
    template's (maxUnavailable 0 keeps them until the new ones are ready), so the champion served
    before stays. No ready pod (or no Deployment): none, written as null to clear it."""
    if done and champion is not None:
        return {"servedChampionUri": champion.uri, "servedChampionVersion": champion.version}
    if live is None or not ((live.get("status") or {}).get("readyReplicas") or 0):
        return {"servedChampionUri": None, "servedChampionVersion": None}
    return {key: current.get(key) for key in ("servedChampionUri", "servedChampionVersion")}


def waiting_rows(champion: models.Resolution) -> list[conditions.Condition]:
    """Ready and ChampionReady while the champion's model is not there (or never will be)."""
    state = "False" if champion.failed else "Unknown"
    reason = conditions.R_MODEL_FAILED if champion.failed else conditions.R_WAITING_MODEL
    return [
        conditions.Condition(conditions.READY, state, reason, f"champion: {champion.why}"),
        conditions.Condition(conditions.CHAMPION_READY, state, reason, str(champion.why)),
    ]


def serving_rows(
    champion: models.Model, done: bool, message: str, served: str | None = None
) -> list[conditions.Condition]:
    """Ready and ChampionReady once the champion resolved: True when served (the served champion is
    then the wanted one), else rolling out, saying what the ready pods serve meanwhile."""
    state, reason = ("True", conditions.R_AVAILABLE) if done else ("Unknown", conditions.R_ROLLING_OUT)
    if done:
        about = f"serving {champion.uri}"
    else:
        about = f"rolling out {champion.uri}; " + (f"pods serve {served}" if served else "no pod serves yet")
    return [
        conditions.Condition(conditions.READY, state, reason, message),
        conditions.Condition(conditions.CHAMPION_READY, state, reason, about),
    ]


def challenger_row(
    dep: api.Deployment, observed: plans.Observed, served: models.Model | None
) -> conditions.Condition:
    """ChallengerReady: True when `served` (the challenger the pods run), else why not."""
    ref = dep.spec.challenger
    if ref is None:
        return conditions.Condition(
            conditions.CHALLENGER_READY, "False", conditions.R_NO_CHALLENGER, "no challenger in spec"
        )
    if served is not None:
        message = f"{dep.spec.traffic.mode} traffic to {served.uri}"
        return conditions.Condition(conditions.CHALLENGER_READY, "True", conditions.R_AVAILABLE, message)
    resolved = models.resolve(ref, observed)
    if resolved.model is not None:  # resolvable but the pods do not serve it yet
        return conditions.Condition(
            conditions.CHALLENGER_READY,
            "Unknown",
            conditions.R_ROLLING_OUT,
            f"rolling out {resolved.model.uri}",
        )
    return conditions.Condition(
        conditions.CHALLENGER_READY,
        "False" if resolved.failed else "Unknown",
        conditions.R_MODEL_FAILED if resolved.failed else conditions.R_WAITING_MODEL,
        str(resolved.why),
    )


def model_fields(champion: models.Model, challenger: models.Model | None) -> dict[str, Any]:
    return {
        "championUri": champion.uri,
        "championVersion": champion.version,
        "challengerUri": challenger.uri if challenger else None,
        "challengerVersion": challenger.version if challenger else None,
    }


def invalid(
    resource: plans.Manifest, current: dict[str, Any], exc: pydantic.ValidationError, now: datetime.datetime
) -> plans.Plan:
    """Ready=False InvalidSpec with every problem named, and a permanent error."""
    message = plans.spec_problems(resource, exc) + "; fix the field and re-apply"
    rows = [conditions.Condition(conditions.READY, "False", conditions.R_INVALID_SPEC, message)]
    out = finish(resource, current, now, rows, conditions.FAILED, {}, stalled=True)
    out.permanent_error = message
    return out


def finish(
    resource: plans.Manifest,
    current: dict[str, Any],
    now: datetime.datetime,
    rows: list[conditions.Condition],
    phase: str,
    fields: dict[str, Any],
    stalled: bool = False,
) -> plans.Plan:
    """A plan whose status has the rows (Ready first), phase, fields; an event when Ready moved."""
    generation = resource["metadata"].get("generation")
    conds = list(current.get("conditions") or [])
    ready = rows[0]
    conds = plans.set_conditions(
        conds, [*rows, *plans.progress_rows(ready, stalled=stalled or None)], now, generation
    )
    status = {
        "observedGeneration": generation,
        "phase": phase,
        "message": ready.message,
        "conditions": conds,
        **fields,
    }
    out = plans.Plan(status={k: v for k, v in status.items() if v is not None})
    old = plans.get_condition(current.get("conditions"), conditions.READY) or {}
    if old.get("status") != ready.status or old.get("reason") != ready.reason:
        kind = "Warning" if ready.status == "False" or stalled else "Normal"
        out.events.append(plans.Event(ready.reason, ready.message, kind))
    return out
