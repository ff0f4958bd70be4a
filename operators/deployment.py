"""Deployment operator: the Deployment controller bound to kopf, watching its serving Deployments.

Only the apps/v1 Deployment is watched as a child: its status (updated and ready replicas) is what
moves the Deployment's Ready condition and readyReplicas. The ConfigMap, Service, HPA and PDB change
only when this operator writes them. TrainingRuns are not owned by a Deployment: a champion that is
still training is looked at again after flywheel.controllers.deployment.REQUEUE_WAITING, and a
`@kopf.on.event` on TrainingRuns requeues the namespace's Deployments when a run succeeds with a
model version not seen before (a retrain), so the Deployment rolls to the model its reference now
resolves to (the version is in the serving config, hence in the pod template's hash).
"""

from __future__ import annotations

from typing import Any

import kopf

from flywheel.api import common, conditions
from flywheel.api import trainingrun as tr_api
from flywheel.controllers import deployment
from flywheel.controllers import settings as settings_mod
from operators import reconcile

KIND = "Deployment"
CHILDREN = (reconcile.Child("apps", "v1", "deployments"),)


def register(
    registry: kopf.OperatorRegistry, settings: settings_mod.Settings | None = None
) -> reconcile.Binding:
    binding = reconcile.register(
        deployment, kind=KIND, children=CHILDREN, registry=registry, settings=settings
    )
    seen: dict[tuple[str, str], str] = {}  # (namespace, run) -> the last Succeeded model version

    async def on_training_run(body: kopf.Body, type: str | None, **_: Any) -> None:
        meta, status = body.get("metadata") or {}, body.get("status") or {}
        key = (meta.get("namespace") or "default", meta.get("name", ""))
        version = (status.get("model") or {}).get("version")
        if type == "DELETED" or status.get("phase") != conditions.SUCCEEDED or not version:
            return
        if seen.get(key) == version:  # later events of the same model: nothing to learn
            return
        seen[key] = version
        # Every Deployment of the namespace, not only those naming the run: their specs are not at
        # hand here, and a reconcile that finds nothing changed writes nothing.
        reconcile.requeue_namespace(binding, key[0])

    kopf.on.event(
        common.GROUP,
        common.VERSION,
        tr_api.TrainingRun.PLURAL,
        id="deployment-model-versions",
        registry=registry,
    )(on_training_run)
    return binding
