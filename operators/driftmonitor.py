"""DriftMonitor operator: the DriftMonitor controller bound to kopf, watching its check Jobs and
challenger TrainingRuns (both carry the monitor's owner labels).

No timer and no finalizer: the controller's plan says when to look again (`requeue_after`: the
check interval, or sooner while a Job or a challenger is in flight), as for the other kinds. The
drift check and the evaluation run in the check Job (the drift image), not here: this process
imports no Evidently, scikit-learn, ONNX Runtime or torch.
"""

from __future__ import annotations

import kopf

from flywheel import api
from flywheel.controllers import driftmonitor
from flywheel.controllers import settings as settings_mod
from operators import reconcile

KIND = api.DriftMonitor.KIND
CHILDREN = (
    reconcile.Child("batch", "v1", "jobs"),
    reconcile.Child(api.GROUP, api.VERSION, api.TrainingRun.PLURAL),
)


def register(
    registry: kopf.OperatorRegistry, settings: settings_mod.Settings | None = None
) -> reconcile.Binding:
    return reconcile.register(
        driftmonitor, kind=KIND, children=CHILDREN, registry=registry, settings=settings
    )
