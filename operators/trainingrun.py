"""TrainingRun operator: the TrainingRun controller bound to kopf, watching its PyTorchJobs and
TrainJobs (spec.launcher)."""

from __future__ import annotations

import kopf

from flywheel.controllers import settings as settings_mod
from flywheel.controllers import trainingrun, trainjob
from operators import reconcile

KIND = "TrainingRun"
CHILDREN = (
    reconcile.Child("kubeflow.org", "v1", "pytorchjobs"),
    reconcile.Child("trainer.kubeflow.org", "v1alpha1", trainjob.PLURAL),
)


def register(
    registry: kopf.OperatorRegistry, settings: settings_mod.Settings | None = None
) -> reconcile.Binding:
    return reconcile.register(trainingrun, kind=KIND, children=CHILDREN, registry=registry, settings=settings)
