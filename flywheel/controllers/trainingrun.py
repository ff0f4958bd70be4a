"""TrainingRun reconciler: one PyTorchJob (plus its config ConfigMap) per run, status from the job.

A TrainingRun is a run, not a service: it trains once. So:
- the job is applied only while it is missing; a running or finished job is never patched (an
  operator upgrade with a new trainer image must not mix images inside one job), and a run whose
  job was garbage-collected after finishing (ttlSecondsAfterFinished) keeps its final status;
- spec changes after the job exists: the job records a hash of the spec it was rendered from. If
  the job has not started pods yet (only Created, or Suspended by Kueue) it is deleted and
  recreated from the new spec. Once it has started, the run goes on with the spec it started
  with and reports the edit (jobstatus: condition SpecDiverged; a running run is also Stalled, a
  finished one stays what it was); putting the spec back clears it.
- results come from the Master pod's termination message (contract.TERMINATION_LOG): a JSON
  summary {"phase", "message", "metrics", "model", "data", "checkpoint", "validation"} that rank 0
  writes; "validation": {"success": false, ...} marks a failed data gate. A missing or garbled
  message is tolerated and said in status.message.
"""

from __future__ import annotations

import datetime
from typing import Any

import pydantic

from flywheel.api import conditions, contract
from flywheel.api import trainingrun as api
from flywheel.controllers import jobstatus, launchers, plans, pytorchjob, settings, trainingresult

COMPONENT = "trainer"
TERMINAL = jobstatus.TERMINAL
REQUEUE_ACTIVE = 300.0
"""Seconds before an active run is looked at again with no event. A safety net only: the job's
watch brings every change of the job (a restart too, which is when a lost ConfigMap is put
back), so the shared 30 s (jobstatus) would only re-read 500 active runs at 67 requests/s."""
REQUEUE_RECREATE = jobstatus.REQUEUE_RECREATE


def observe_refs(resource: plans.Manifest, settings: settings.Settings) -> list[plans.Ref]:
    """The job (PyTorchJob or TrainJob: spec.launcher), its ConfigMap and the rank 0 pod (whose
    termination message carries the result)."""
    meta = resource["metadata"]
    ns = meta.get("namespace") or "default"
    launch = launchers.of(resource)
    job = launch.job_name(meta["name"])
    return [
        plans.Ref(launch.API_VERSION, launch.KIND, job, ns),
        plans.Ref("v1", "ConfigMap", launch.config_map_name(meta["name"]), ns),
        launch.rank0_pod_ref(job, ns),
    ]


def render_children(resource: plans.Manifest, settings: settings.Settings) -> list[plans.Manifest]:
    """[ConfigMap, job] for a TrainingRun manifest; pydantic.ValidationError when invalid."""
    job, config_map = _render(resource, validate(resource), settings)
    return [config_map, job]


def workload_config(resource: plans.Manifest, run: api.TrainingRun) -> dict[str, Any]:
    """What the trainer reads from contract.CONFIG_PATH (flywheel.training.config.Config): the run's
    name and namespace, its spec with every default filled in, and its own artifact root."""
    meta = resource["metadata"]
    namespace = meta.get("namespace") or "default"
    root = contract.run_root(run.spec.artifacts.uri, namespace, api.TrainingRun.PLURAL, meta["name"])
    return {
        "name": meta["name"],
        "namespace": namespace,
        "spec": run.spec.to_dict(),
        "artifactsUri": root,
    }


def _render(
    resource: plans.Manifest, run: api.TrainingRun, settings: settings.Settings
) -> tuple[plans.Manifest, plans.Manifest]:
    spec = run.spec
    return launchers.of(resource).render_job(
        resource,
        resources=spec.resources,
        networking=spec.networking,
        scheduling=spec.scheduling,
        run_policy=spec.run_policy,
        artifacts=spec.artifacts,
        image=(spec.trainer and spec.trainer.image) or spec.resources.image or settings.trainer_image,
        module=contract.TRAINER_MODULE,
        config=workload_config(resource, run),
        component=COMPONENT,
        settings=settings,
        secrets=(spec.data.credentials_secret,) if spec.data.credentials_secret else (),
        env=tuple((e.name, e.value) for e in spec.trainer.env) if spec.trainer else (),
    )


def validate(resource: plans.Manifest) -> api.TrainingRun:
    """The resource as the author wrote it, validated (raises pydantic.ValidationError)."""
    return plans.validate_spec(api.TrainingRun, resource)


def plan(
    resource: plans.Manifest,
    observed: plans.Observed,
    now: datetime.datetime,
    settings: settings.Settings,
    model: api.TrainingRun | None = None,
) -> plans.Plan:
    """Decide children, status and events for a TrainingRun from what was observed (pure).
    `model`: the resource already validated by the adapter (once per reconcile), else validated here."""
    out = _plan(resource, observed, now, settings, model)
    if out.requeue_after == jobstatus.REQUEUE_ACTIVE:  # jobstatus.finish's, for any active run
        out.requeue_after = REQUEUE_ACTIVE
    return out


def _plan(
    resource: plans.Manifest,
    observed: plans.Observed,
    now: datetime.datetime,
    settings: settings.Settings,
    model: api.TrainingRun | None,
) -> plans.Plan:
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
        if current.get("phase") in TERMINAL and current.get("jobName"):
            return jobstatus.finished_without_job(resource, current, now)
        job_manifest, config_map = _render(resource, run, settings)
        view = jobstatus.View(
            conditions.PENDING,
            "Unknown",
            conditions.R_CREATING,
            jobstatus.creating(name, current, launch.KIND),
        )
        return jobstatus.finish(resource, current, now, view, name, apply=[config_map, job_manifest])
    if not jobstatus.owned_by(job, resource):
        message = f"a {launch.KIND} named {name} exists but belongs to something else; rename this run"
        view = jobstatus.View(conditions.PENDING, "False", conditions.R_NAME_CONFLICT, message, stalled=True)
        return jobstatus.finish(resource, current, now, view, name)
    state = launch.job_state(job)
    if jobstatus.spec_changed(job, resource) and not state.started:
        message = f"spec changed before {launch.KIND} {name} started any pod; replacing it"
        return jobstatus.recreate(resource, current, now, job, _render(resource, run, settings), message)
    maybe_view = _job_view(state, observed, launch, name, current)
    if maybe_view is None:  # finished, result already recorded, pod gone: the status is final
        return jobstatus.finished_without_job(resource, current, now)
    view = maybe_view
    jobstatus.report_spec(view, job, resource, state.terminal, launch.KIND)
    changed = bool(view.diverged)
    apply: list[plans.Manifest] = []
    missing = observed.get("ConfigMap", launch.config_map_name(meta["name"])) is None
    if missing and not state.terminal and not changed:
        apply = [_render(resource, run, settings)[1]]  # restarted pods need their config back
    return jobstatus.finish(resource, current, now, view, name, apply=apply)


def _job_view(
    state: pytorchjob.JobState,
    observed: plans.Observed,
    launch: launchers.Launcher,
    name: str,
    current: dict[str, Any],
) -> jobstatus.View | None:
    times = {"startTime": state.start_time, "completionTime": state.completion_time}
    if not state.terminal:
        view = jobstatus.View(state.phase, "Unknown", state.reason, state.message)
        view.extra.append(conditions.Condition(conditions.TRAINED, "Unknown", state.reason, state.message))
        view.fields.update(times)
        return view
    # The pod is looked at only now: an observation may read it on demand (flywheel.kube.execute).
    raw = launch.termination_message(observed.get("Pod", launch.rank0_pod_name(name)))
    if raw is None and current.get("phase") in TERMINAL:
        return None
    fields, result, note = trainingresult.parse(raw)
    view = _outcome(state, result)
    if note:
        view.message = f"{view.message}; {note}"
    view.fields.update(times)
    view.fields.update(fields)
    return view


def _outcome(state: pytorchjob.JobState, result: dict[str, Any] | None) -> jobstatus.View:
    """Terminal phase and conditions: the job's verdict, overridden by a result that says Failed."""
    result = result or {}
    validation = result.get("validation") if isinstance(result.get("validation"), dict) else None
    # GX names the verdict `success`; `passed` is accepted too.
    verdict = None if validation is None else validation.get("success", validation.get("passed"))
    gate_failed = verdict is False
    failed = state.phase == conditions.FAILED or result.get("phase") == conditions.FAILED or gate_failed
    message = str(result.get("message") or "")
    if not failed:
        view = jobstatus.View(
            conditions.SUCCEEDED, "True", conditions.R_SUCCEEDED, message or trainingresult.summary(result)
        )
        view.extra.append(
            conditions.Condition(conditions.TRAINED, "True", conditions.R_SUCCEEDED, view.message)
        )
    else:
        reason = conditions.R_VALIDATION_FAILED if gate_failed else conditions.R_FAILED
        view = jobstatus.View(conditions.FAILED, "False", reason, message or state.message, stalled=True)
        view.extra.append(conditions.Condition(conditions.TRAINED, "False", reason, view.message))
    if verdict is not None:  # no verdict, no claim either way
        ok = "False" if gate_failed else "True"
        why = conditions.R_VALIDATION_FAILED if gate_failed else conditions.R_SUCCEEDED
        said = view.message if gate_failed else "the data passed the gate (details in status.validation)"
        view.extra.append(conditions.Condition(conditions.DATA_VALIDATED, ok, why, said))
    data = result.get("data")
    if isinstance(data, dict) and data.get("commit"):
        view.extra.append(
            conditions.Condition(
                conditions.DATA_RESOLVED, "True", conditions.R_SUCCEEDED, f"commit {data['commit']}"
            )
        )
    model = result.get("model")
    if isinstance(model, dict) and (model.get("fp32Uri") or model.get("quantizedUri")):
        uri = model.get("quantizedUri") or model.get("fp32Uri")
        view.extra.append(conditions.Condition(conditions.EXPORTED, "True", conditions.R_SUCCEEDED, str(uri)))
    return view
