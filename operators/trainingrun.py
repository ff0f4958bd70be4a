"""TrainingRun operator: the TrainingRun controller bound to kopf, watching its PyTorchJobs."""

from __future__ import annotations

import kopf

from flywheel.controllers import settings as settings_mod
from flywheel.controllers import trainingrun
from operators import reconcile

KIND = "TrainingRun"
CHILDREN = (reconcile.Child("kubeflow.org", "v1", "pytorchjobs"),)


def register(
    registry: kopf.OperatorRegistry, settings: settings_mod.Settings | None = None
) -> reconcile.Binding:
    return reconcile.register(trainingrun, kind=KIND, children=CHILDREN, registry=registry, settings=settings)
