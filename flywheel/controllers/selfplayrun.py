"""SelfPlayRun reconciler: a PyTorchJob running `flywheel.selfplay`, walled off from the network.

Children: the job and its config ConfigMap (rendered by pytorchjob.render_job, shared with
TrainingRun: non-root pods, read-only root, RuntimeDefault seccomp, no service-account token) and
a NetworkPolicy for the run's pods. Self-play executes model-written programs, so its pods get no
egress except what the run itself needs: the other pods of the same run (DDP rendezvous and
collectives) and DNS when there are several pods, and HTTPS / MinIO ports when artifacts live on
s3://. Ingress is allowed only from the run's own pods.

Lifecycle and status follow TrainingRun (jobstatus is shared): the job is created once, a spec
change before any pod started recreates it, after that the run goes on and says so. Per-step
progress (step, buffers, valid-proposal and solve rates, proposer reward, checkpoint) comes from
the newest step event in the Master pod's log tail, which the operator adapter reads and passes
in as `log_tail`; the final result from the Master pod's termination message (selfplayresult).
"""

from __future__ import annotations

import datetime
from typing import Any

import pydantic

from flywheel.api import conditions, contract
from flywheel.api import selfplayrun as api
from flywheel.controllers import (
    jobstatus,
    launchers,
    plans,
    podspec,
    pytorchjob,
    selfplayresult,
    settings,
    trainingrun,
)

COMPONENT = "selfplay"
PLURAL = api.SelfPlayRun.PLURAL
NETWORK_POLICY = "NetworkPolicy"
NETWORKING_API = "networking.k8s.io/v1"
S3_PORTS = (443, 80, 9000)  # HTTPS, plain HTTP endpoints, MinIO's default
LOG_TAIL_LINES = 40
"""Lines of the Master pod's log the operator reads for progress (a step event is one line)."""


def network_policy_name(owner_name: str) -> str:
    return plans.child_name(owner_name, "sandbox")


def observe_refs(resource: plans.Manifest, settings: settings.Settings) -> list[plans.Ref]:
    """The job, its ConfigMap, the Master pod (termination message) and the NetworkPolicy."""
    meta = resource["metadata"]
    ns = meta.get("namespace") or "default"
    return [
        *trainingrun.observe_refs(resource, settings),
        plans.Ref(NETWORKING_API, NETWORK_POLICY, network_policy_name(meta["name"]), ns),
    ]


def validate(resource: plans.Manifest) -> api.SelfPlayRun:
    """The resource as the author wrote it, validated (raises pydantic.ValidationError)."""
    return plans.validate_spec(api.SelfPlayRun, resource)


def render_children(resource: plans.Manifest, settings: settings.Settings) -> list[plans.Manifest]:
    """[NetworkPolicy, ConfigMap, job]; pydantic.ValidationError when the spec is invalid.
    The policy comes first so the pods never run unfenced."""
    run = validate(resource)
    job, config_map = _render(resource, run, settings)
    if run.spec.executor.user_namespace:  # PyTorchJob only: validation refuses it for a TrainJob
        for replica in job["spec"]["pytorchReplicaSpecs"].values():
            replica["template"]["spec"]["hostUsers"] = False
    return [network_policy(resource, run), config_map, job]


def workload_config(resource: plans.Manifest, run: api.SelfPlayRun) -> dict[str, Any]:
    """What flywheel.selfplay reads from FLYWHEEL_CONFIG: name, namespace, the full spec with
    defaults, and this run's artifact root (<root>/<namespace>/selfplayruns/<name>)."""
    meta = resource["metadata"]
    ns = meta.get("namespace") or "default"
    return {
        "name": meta["name"],
        "namespace": ns,
        "spec": run.spec.to_dict(),
        "artifactsUri": contract.run_root(run.spec.artifacts.uri, ns, PLURAL, meta["name"]),
    }


def network_policy(resource: plans.Manifest, run: api.SelfPlayRun) -> plans.Manifest:
    """Deny egress (and foreign ingress) for the run's pods, selected by their labels."""
    meta = resource["metadata"]
    selector = {"matchLabels": _pod_labels(resource)}
    peers = [{"podSelector": selector}]
    egress: list[dict[str, Any]] = []
    multi = run.spec.resources.replicas > 1
    s3 = run.spec.artifacts.uri.startswith("s3://")
    if multi:
        egress.append({"to": peers})
    if multi or s3:
        dns = [{"protocol": p, "port": 53} for p in ("UDP", "TCP")]
        egress.append({"to": [{"namespaceSelector": {}, "podSelector": _DNS}], "ports": dns})
    if s3:
        egress.append({"ports": [{"protocol": "TCP", "port": p} for p in S3_PORTS]})
    return {
        "apiVersion": NETWORKING_API,
        "kind": NETWORK_POLICY,
        "metadata": plans.child_metadata(resource, network_policy_name(meta["name"]), COMPONENT),
        "spec": {
            "podSelector": selector,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": peers}],
            "egress": egress,
        },
    }


_DNS = {"matchLabels": {"k8s-app": "kube-dns"}}


def _pod_labels(resource: plans.Manifest) -> dict[str, str]:
    name = resource["metadata"]["name"]
    every = plans.labels(resource["kind"], name, COMPONENT)
    keys = (contract.LABEL_OWNER_KIND, contract.LABEL_OWNER_NAME, contract.LABEL_COMPONENT)
    return {k: every[k] for k in keys}


def _render(
    resource: plans.Manifest, run: api.SelfPlayRun, settings: settings.Settings
) -> tuple[plans.Manifest, plans.Manifest]:
    spec = run.spec
    return launchers.of(resource).render_job(
        resource,
        resources=spec.resources,
        networking=spec.networking,
        scheduling=spec.scheduling,
        run_policy=spec.run_policy,
        artifacts=spec.artifacts,
        image=spec.resources.image or settings.selfplay_image,
        module=contract.SELFPLAY_MODULE,
        config=workload_config(resource, run),
        component=COMPONENT,
        settings=settings,
        secrets=(spec.policy.credentials_secret,) if spec.policy.credentials_secret else (),
        storage=podspec.model_storage(spec.policy.model, spec.artifacts),
    )


def plan(
    resource: plans.Manifest,
    observed: plans.Observed,
    now: datetime.datetime,
    settings: settings.Settings,
    log_tail: str | None = None,
    model: api.SelfPlayRun | None = None,
) -> plans.Plan:
    """Decide children, status and events for a SelfPlayRun from what was observed (pure).
    `log_tail`: the end of the Master pod's log while the job runs (per-step progress), if read.
    `model`: the resource already validated by the adapter (once per reconcile), else validated here."""
    meta = resource["metadata"]
    current: dict[str, Any] = resource.get("status") or {}
    try:
        run = model or validate(resource)
    except pydantic.ValidationError as exc:
        return jobstatus.invalid(resource, current, exc, now)
    launch = launchers.of(resource)
    name = launch.job_name(meta["name"])
    job = observed.get(launch.KIND, name)
    if job is None:
        if current.get("phase") in jobstatus.TERMINAL and current.get("jobName"):
            return jobstatus.finished_without_job(resource, current, now)  # job garbage-collected
        job_manifest, config_map = _render(resource, run, settings)
        view = jobstatus.View(
            conditions.PENDING,
            "Unknown",
            conditions.R_CREATING,
            jobstatus.creating(name, current, launch.KIND),
        )
        children = [network_policy(resource, run), config_map, job_manifest]
        return jobstatus.finish(resource, current, now, view, name, apply=children)
    if not jobstatus.owned_by(job, resource):
        message = f"a {launch.KIND} named {name} exists but belongs to something else; rename this run"
        view = jobstatus.View(conditions.PENDING, "False", conditions.R_NAME_CONFLICT, message, stalled=True)
        return jobstatus.finish(resource, current, now, view, name)
    state = launch.job_state(job)
    changed = jobstatus.spec_changed(job, resource)
    if changed and not state.started:
        message = f"spec changed before {name} started any pod; replacing it"
        return jobstatus.recreate(resource, current, now, job, _render(resource, run, settings), message)
    pod = observed.get("Pod", launch.rank0_pod_name(name))
    maybe_view = _job_view(
        state, launch.termination_message(pod), current, run.spec.self_play.steps, log_tail
    )
    if maybe_view is None:  # finished, result already recorded, pod gone: the status is final
        return jobstatus.finished_without_job(resource, current, now)
    view = maybe_view
    jobstatus.report_spec(view, job, resource, state.terminal, launch.KIND)
    apply: list[plans.Manifest] = []
    if not state.terminal:
        if observed.get(NETWORK_POLICY, network_policy_name(meta["name"])) is None:
            apply.append(network_policy(resource, run))  # never let a running sandbox lose its fence
        if observed.get("ConfigMap", launch.config_map_name(meta["name"])) is None and not changed:
            apply.append(_render(resource, run, settings)[1])
    return jobstatus.finish(resource, current, now, view, name, apply=apply)


def _job_view(
    state: pytorchjob.JobState,
    raw: str | None,
    current: dict[str, Any],
    total: int,
    log_tail: str | None,
) -> jobstatus.View | None:
    times = {"startTime": state.start_time, "completionTime": state.completion_time}
    if not state.terminal:
        # No readable step this time (log not reachable, or rotated): keep what status says, so
        # the message does not flap between reconciles.
        step = selfplayresult.progress(log_tail) or selfplayresult.fields(current)
        message = f"{state.message}; {selfplayresult.summary(step, total)}" if step else state.message
        view = jobstatus.View(state.phase, "Unknown", state.reason, message)
        view.fields.update(times)
        view.fields.update(step)
        return view
    if raw is None and current.get("phase") in jobstatus.TERMINAL:
        return None
    fields, result, note = selfplayresult.parse(raw)
    failed = state.phase == conditions.FAILED or result.get("phase") == conditions.FAILED
    message = str(result.get("message") or "") or (
        state.message if failed else "self-play finished: " + selfplayresult.summary(result, total)
    )
    if failed:
        view = jobstatus.View(conditions.FAILED, "False", conditions.R_FAILED, message, stalled=True)
    else:
        view = jobstatus.View(conditions.SUCCEEDED, "True", conditions.R_SUCCEEDED, message)
    if note:
        view.message = f"{view.message}; {note}"
    view.fields.update(times)
    view.fields.update(fields)
    return view


def result_fields(result: dict[str, Any]) -> dict[str, Any]:
    """The SelfPlayRunStatus fields a trainer result carries (see selfplayresult.fields)."""
    return selfplayresult.fields(result)
