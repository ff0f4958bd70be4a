"""A minimal controller with the TrainingRun controller's interface (observe_refs, plan), for glue
tests that must not depend on the real controller's rendering. It renders a ConfigMap and a
PyTorchJob, reads the job and its Master pod, and maps them to phases and a Ready condition."""

from __future__ import annotations

import datetime
import json
from typing import Any

from flywheel.controllers import plans, settings


def _names(resource: dict[str, Any]) -> tuple[str, str, str]:
    name = resource["metadata"]["name"]
    return plans.child_name(name, "config"), name, f"{name}-master-0"


def observe_refs(resource: dict[str, Any], _: settings.Settings) -> list[plans.Ref]:
    cm, job, pod = _names(resource)
    ns = resource["metadata"].get("namespace") or "default"
    return [
        plans.Ref("v1", "ConfigMap", cm, ns),
        plans.Ref("kubeflow.org/v1", "PyTorchJob", job, ns),
        plans.Ref("v1", "Pod", pod, ns),
    ]


def plan(
    resource: dict[str, Any], observed: plans.Observed, now: datetime.datetime, _: settings.Settings
) -> plans.Plan:
    conditions = (resource.get("status") or {}).get("conditions") or []
    gen = resource["metadata"].get("generation")
    epochs = resource["spec"].get("epochs", 1)
    if not isinstance(epochs, int) or epochs < 1:
        message = f"spec.epochs must be a positive integer, got {epochs!r}: set spec.epochs to 1 or more"
        conds = plans.set_condition(conditions, "Ready", "False", "InvalidSpec", message, now, gen)
        return plans.Plan(status={"phase": "Failed", "conditions": conds}, permanent_error=message)
    cm_name, job_name, pod_name = _names(resource)
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": plans.child_metadata(resource, cm_name, "config"),
          "data": {"config.json": json.dumps({"epochs": epochs}, sort_keys=True)}}  # fmt: skip
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
           "metadata": plans.child_metadata(resource, job_name, "trainer"),
           "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": {"spec": {
               "containers": [{"name": "pytorch", "image": "trainer"}]}}}}}}  # fmt: skip
    live = observed.get("PyTorchJob", job_name) or {}
    types = {c["type"]: c["status"] for c in (live.get("status") or {}).get("conditions", [])}
    status: dict[str, Any] = {"jobName": job_name}
    if types.get("Succeeded") == "True":
        pod = observed.get("Pod", pod_name) or {}
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        message = statuses[0].get("state", {}).get("terminated", {}).get("message") or "{}"
        status.update(phase="Succeeded", metrics=json.loads(message).get("metrics", {}))
        ready = ("True", "Succeeded", "training finished")
    elif types.get("Failed") == "True":
        status["phase"] = "Failed"
        ready = ("False", "Failed", "the PyTorchJob failed")
    elif types.get("Running") == "True":
        status["phase"] = "Running"
        ready = ("False", "JobRunning", "training")
    else:
        status["phase"] = "Pending"
        ready = ("False", "JobCreated", "waiting for the PyTorchJob to start")
    status["conditions"] = plans.set_condition(conditions, "Ready", *ready, now, gen)
    events = [plans.Event(ready[1], ready[2])] if plans.get_condition(conditions, "Ready") != status[
        "conditions"][0] else []  # fmt: skip
    return plans.Plan(apply=[cm, job], status=status, events=events)
