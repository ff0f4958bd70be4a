"""SelfPlayRun operator: the SelfPlayRun controller bound to kopf, watching its PyTorchJobs and the
NetworkPolicies that fence its pods (a deleted fence comes back within one watch event).

Per-step progress: rank 0 prints one JSON step event per step, and its pod holds no API token to
write status itself. So while the job runs, this module reads the tail of the Master pod's log
(GET pods/<master>/log, `selfplayrun.LOG_TAIL_LINES` lines; RBAC: pods/log get) and hands it to
the pure controller, which takes the newest step event into status. kube.execute.observe reads
objects, not logs, so `plan` here first completes the observation, then plans; the log is read
again at every reconcile of a running job (job events and the 30 s requeue), never after it ended.
"""

from __future__ import annotations

import datetime
import json
import sys

import kopf

from flywheel.api import selfplayrun as api
from flywheel.controllers import launchers, plans, selfplayrun, trainjob
from flywheel.controllers import settings as settings_mod
from flywheel.kube import client
from operators import reconcile

KIND = "SelfPlayRun"
CHILDREN = (
    reconcile.Child("kubeflow.org", "v1", "pytorchjobs"),
    reconcile.Child("networking.k8s.io", "v1", "networkpolicies"),
    reconcile.Child("trainer.kubeflow.org", "v1alpha1", trainjob.PLURAL),
)


def observe_refs(resource: plans.Manifest, settings: settings_mod.Settings) -> list[plans.Ref]:
    return selfplayrun.observe_refs(resource, settings)


def validate(resource: plans.Manifest) -> api.SelfPlayRun:
    return selfplayrun.validate(resource)


def plan(
    resource: plans.Manifest,
    observed: plans.Observed,
    now: datetime.datetime,
    settings: settings_mod.Settings,
    model: api.SelfPlayRun | None = None,
) -> plans.Plan:
    """Read the Master pod's log tail while the job runs, then the pure plan."""
    tail = read_log_tail(resource, observed)
    return selfplayrun.plan(resource, observed, now, settings, log_tail=tail, model=model)


def read_log_tail(resource: plans.Manifest, observed: plans.Observed) -> str | None:
    """The end of the running Master pod's log; None when there is no running job or pod, or the
    API cannot give it yet (container still being created): progress is simply not updated."""
    launch = launchers.of(resource)
    job_name = launch.job_name(resource["metadata"]["name"])
    job = observed.get(launch.KIND, job_name)
    pod = launch.rank0_pod(observed.get("Pod", launch.rank0_pod_name(job_name)))
    if job is None or pod is None or launch.job_state(job).terminal:
        return None
    pod_name = pod["metadata"]["name"]
    namespace = resource["metadata"].get("namespace") or "default"
    query = f"?container={launch.CONTAINER}&tailLines={selfplayrun.LOG_TAIL_LINES}"
    try:
        text = client.request("GET", client.path("v1", "Pod", namespace, pod_name, "log") + query)
    except client.ApiError:
        return None
    if isinstance(text, bytes):
        return text.decode(errors="replace")
    if isinstance(text, dict | list):  # the client decodes a log that happens to be one JSON value
        return json.dumps(text)
    return text if isinstance(text, str) else None


def register(
    registry: kopf.OperatorRegistry, settings: settings_mod.Settings | None = None
) -> reconcile.Binding:
    this = sys.modules[__name__]  # observe_refs + plan above: the controller plus the log read
    return reconcile.register(this, kind=KIND, children=CHILDREN, registry=registry, settings=settings)
