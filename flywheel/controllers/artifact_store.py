"""Where a resource's artifacts go on Kubernetes, and the refusal of a store that would lose them, pure.

`spec.artifacts.uri` defaults to file:///var/lib/flywheel/artifacts. On one machine that is the
home's artifact store (the local backend maps it to <home>/artifacts); in a pod nothing is mounted
there, so it is scratch space deleted with the pod, and a model written there is lost. So on
Kubernetes:

- the default means "the platform's store": the operator's settings (Helm value artifacts.uri,
  MinIO on kind) replace it, with the chart's credentials Secret unless the spec names one;
- a file:// store that remains (the default without a platform store, or one the author wrote) is
  refused before anything is created: Ready=False, reason EphemeralArtifacts, naming the field
  and the fix, and a permanent error until the spec (or the operator's settings) change.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

from flywheel.api import common, conditions
from flywheel.controllers import plans, settings

DEFAULT_URI = common.Artifacts().uri


def problem(uri: str) -> str | None:
    """Why `uri` cannot hold a pod's artifacts, or None."""
    return common.pod_scratch_problem(uri)


def effective_uri(uri: str | None, config: settings.Settings) -> str:
    """The store a spec's artifacts.uri means on Kubernetes: the platform's for the default (when the
    operator has one). For readers of another resource's artifacts, e.g. a DriftMonitor reading a
    Deployment's traffic log, which must look where that Deployment's pods write."""
    given = uri or DEFAULT_URI
    return config.artifacts_uri if given == DEFAULT_URI and config.artifacts_uri else given


def resolve(resource: plans.Manifest, config: settings.Settings) -> tuple[plans.Manifest, str | None]:
    """(the resource with its store filled in from the operator's settings, why it is refused or None).
    The input is not modified; a spec that is not a mapping is left to the controller's validation."""
    spec = resource.get("spec")
    if not isinstance(spec, dict):
        return resource, None
    given = spec.get("artifacts")
    artifacts: dict[str, Any] = given if isinstance(given, dict) else {}
    uri = artifacts.get("uri") or DEFAULT_URI
    if not isinstance(uri, str):
        return resource, None
    effective = effective_uri(uri, config)
    if effective != uri:
        out = copy.deepcopy(resource)
        filled = {**artifacts, "uri": effective}
        if config.artifacts_credentials_secret and not artifacts.get("credentialsSecret"):
            filled["credentialsSecret"] = config.artifacts_credentials_secret
        out["spec"]["artifacts"] = filled
        return out, problem(effective)
    return resource, problem(uri)


def refusal(resource: plans.Manifest, message: str, now: datetime.datetime) -> plans.Plan:
    """Ready=False EphemeralArtifacts (Stalled=True), phase Failed, a Warning event when Ready moves,
    a permanent error; nothing applied."""
    current: dict[str, Any] = resource.get("status") or {}
    generation = resource["metadata"].get("generation")
    conds = list(current.get("conditions") or [])
    ready = conditions.Condition(conditions.READY, "False", conditions.R_EPHEMERAL, message)
    conds = plans.set_conditions(conds, [ready, *plans.progress_rows(ready)], now, generation)
    status = {"phase": conditions.FAILED, "message": message, "conditions": conds}
    if generation is not None:
        status["observedGeneration"] = generation
    out = plans.Plan(status=status, permanent_error=message)
    old = plans.get_condition(current.get("conditions"), conditions.READY) or {}
    if (old.get("status"), old.get("reason")) != ("False", conditions.R_EPHEMERAL):
        out.events.append(plans.Event(conditions.R_EPHEMERAL, message, "Warning"))
    return out
