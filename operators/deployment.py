"""Deployment operator: the Deployment controller bound to kopf, watching its serving Deployments.

Only the apps/v1 Deployment is watched: its status (updated and ready replicas) is what moves the
Deployment's Ready condition and readyReplicas. The ConfigMap, Service, HPA and PDB change only
when this operator writes them. TrainingRuns are not owned by a Deployment, so a champion that is
still training is looked at again after flywheel.controllers.deployment.REQUEUE_WAITING.
"""

from __future__ import annotations

import kopf

from flywheel.controllers import deployment
from flywheel.controllers import settings as settings_mod
from operators import reconcile

KIND = "Deployment"
CHILDREN = (reconcile.Child("apps", "v1", "deployments"),)


def register(
    registry: kopf.OperatorRegistry, settings: settings_mod.Settings | None = None
) -> reconcile.Binding:
    return reconcile.register(deployment, kind=KIND, children=CHILDREN, registry=registry, settings=settings)
