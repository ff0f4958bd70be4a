"""Deployment reconciler (deployments.flywheel.dev): a BentoML server per Deployment, pure.

The controller interface (observe_refs, plan, render_children); the parts live beside it:
deployment_models (ModelRef -> model directory), deployment_children and deployment_pods (the
ConfigMap, apps/v1 Deployment, Service, HPA, PDB), deployment_status (rollout, conditions).

- Until the champion's model exists nothing is rendered: Ready is Unknown and the plan requeues
  ("not yet"); a Failed TrainingRun makes Ready False. A challenger whose run is not done yet is
  left out (ChallengerReady=Unknown) and the champion serves alone until it is.
- A new champion (a promotion, or its TrainingRun retrained to a new model version: the version is
  in the serving config) changes the serving config, hence the pod template's hash: the pods
  roll with maxUnavailable 0, so no request fails. The previous champion URI becomes
  status.rollbackTarget and a ChampionChanged event says so.
- Pods that cannot serve make Ready False (deployment_status.rollout_failure): a rollout that gave
  up (the live Deployment's Progressing False, ProgressDeadlineExceeded: RolloutFailed) or a
  finished rollout whose pods are no longer available (ServingUnavailable).
- Status: endpoint, replicas and readyReplicas (from the live apps/v1 Deployment), champion and
  challenger URIs and versions (wanted), servedChampionUri/Version (what the ready pods serve:
  the wanted champion only once the rollout is done, deployment_status.served_fields), conditions
  Ready / ChampionReady / ChallengerReady. Ready is True only when the served champion is the
  wanted one.
"""

from __future__ import annotations

import datetime
from typing import Any

import pydantic

from flywheel.api import conditions
from flywheel.api import deployment as api
from flywheel.controllers import deployment_children as children
from flywheel.controllers import deployment_models as models
from flywheel.controllers import deployment_status as status_mod
from flywheel.controllers import plans, settings

REQUEUE_WAITING = 15.0
REQUEUE_ROLLING = 10.0


def observe_refs(resource: plans.Manifest, settings: settings.Settings) -> list[plans.Ref]:
    """The children, and the TrainingRuns that the models come from."""
    return children.refs(resource) + models.training_run_refs(resource)


def render_children(resource: plans.Manifest, settings: settings.Settings) -> list[plans.Manifest]:
    """The children for review (`flywheel render`): fromTrainingRun models appear as placeholders."""
    dep = validate(resource)
    champion = models.placeholder(dep.spec.champion)
    challenger = models.placeholder(dep.spec.challenger) if dep.spec.challenger else None
    return children.build(resource, dep, champion, challenger, settings)


def validate(resource: plans.Manifest) -> api.Deployment:
    """The resource as the author wrote it, validated (raises pydantic.ValidationError)."""
    return plans.validate_spec(api.Deployment, resource)


def plan(
    resource: plans.Manifest,
    observed: plans.Observed,
    now: datetime.datetime,
    settings: settings.Settings,
    model: api.Deployment | None = None,
) -> plans.Plan:
    """Children, status and events for a Deployment from what was observed (pure, idempotent).
    `model`: the resource already validated by the adapter (once per reconcile), else validated here."""
    current: dict[str, Any] = resource.get("status") or {}
    try:
        dep = model or validate(resource)
    except pydantic.ValidationError as exc:
        return status_mod.invalid(resource, current, exc, now)
    champion = models.resolve(dep.spec.champion, observed)
    if champion.model is None:
        rows = [*status_mod.waiting_rows(champion), status_mod.challenger_row(dep, observed, None)]
        out = status_mod.finish(resource, current, now, rows, conditions.PENDING, {})
        out.requeue_after = REQUEUE_WAITING
        return out
    challenger = models.resolve(dep.spec.challenger, observed).model if dep.spec.challenger else None
    wanted = children.build(resource, dep, champion.model, challenger, settings)
    name = children.child(dep.name)
    live = observed.get("Deployment", name)
    done, message = status_mod.rollout(dep, live, wanted[1])
    failure = None if done else status_mod.rollout_failure(live, wanted[1])
    served = status_mod.served_fields(champion.model, live, done, current)
    if failure is not None:
        rows = status_mod.failed_rows(*failure)
    else:
        rows = status_mod.serving_rows(champion.model, done, message, served["servedChampionUri"])
    rows.append(status_mod.challenger_row(dep, observed, challenger if done else None))
    live_status = (live or {}).get("status") or {}
    host = settings.service_host or f"{name}.{dep.namespace}.svc"
    fields = {
        "endpoint": f"http://{host}:{dep.spec.port}",
        "replicas": live_status.get("replicas", 0),
        "readyReplicas": live_status.get("readyReplicas", 0),
        **status_mod.model_fields(champion.model, challenger),
        "rollbackTarget": current.get("rollbackTarget"),
    }
    events: list[plans.Event] = []
    previous = current.get("championUri")
    if previous and previous != champion.model.uri:
        fields["rollbackTarget"] = previous
        message = f"champion {previous} -> {champion.model.uri}; rolling pods"
        events.append(plans.Event(conditions.R_CHAMPION_CHANGED, message))
    elif previous and current.get("championVersion") not in (None, champion.model.version):
        # A retrained run keeps its URI: the version says the model changed (no rollback target:
        # the directory now holds the new model).
        message = f"champion {current['championVersion']} -> {champion.model.version}; rolling pods"
        events.append(plans.Event(conditions.R_CHAMPION_CHANGED, message))
    phase = conditions.RUNNING if done else (conditions.FAILED if failure else conditions.PENDING)
    out = status_mod.finish(resource, current, now, rows, phase, fields)
    out.status.update(served)  # after finish, which drops None: a null here clears the field
    out.apply = wanted
    out.delete = children.stale(dep, observed)
    out.events = events + out.events
    waiting = dep.spec.challenger is not None and challenger is None
    out.requeue_after = None if done and not waiting else (REQUEUE_WAITING if waiting else REQUEUE_ROLLING)
    return out
