"""Typed models of the four kinds; they double as the Python SDK.

from flywheel import api
run = api.TrainingRun(metadata={"name": "iris"}, spec={...})
yaml.safe_dump(run.to_manifest())
"""

from flywheel.api.common import API_VERSION, GROUP, VERSION, Condition, ObjectMeta, Resource
from flywheel.api.deployment import Deployment
from flywheel.api.driftmonitor import DriftMonitor
from flywheel.api.selfplayrun import SelfPlayRun
from flywheel.api.trainingrun import TrainingRun

KINDS: dict[str, type[Resource]] = {
    cls.KIND: cls for cls in (TrainingRun, SelfPlayRun, Deployment, DriftMonitor)
}

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "Condition",
    "Deployment",
    "DriftMonitor",
    "ObjectMeta",
    "Resource",
    "SelfPlayRun",
    "TrainingRun",
]
