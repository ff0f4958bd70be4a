"""trainingrun.plan: job conditions and the trainer's termination message -> TrainingRun status.

The PyTorchJob status and the Master pod are written here the way the Training Operator v1.9.4
and the kubelet write them (no cluster exists in unit tests); the trainer's message is produced
by the trainer's own result module, so the two sides of the contract are tested together.
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

from flywheel.api import conditions
from flywheel.controllers import plans, pytorchjob, settings, trainingrun
from flywheel.training import result as trainer_result
from tests.unit.controllers import upstream

SETTINGS = settings.Settings()
T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
JOB = "iris"
POD = "iris-master-0"


merge = plans.merge_patch  # what the adapters send for .status


def applied(resource: dict[str, Any], plan: plans.Plan) -> dict[str, Any]:
    return {**resource, "status": merge(resource.get("status") or {}, plan.status)}


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = plans.get_condition(status["conditions"], type_)
    assert found is not None, type_
    return found


def job_with(
    resource: dict[str, Any], *conds: tuple[str, str], message: str = "", **status: Any
) -> dict[str, Any]:
    _, job = trainingrun.render_children(resource, SETTINGS)
    job["status"] = {
        "conditions": [
            {"type": t, "status": s, "reason": f"PyTorchJob{t}", "message": message or f"job is {t}"}
            for t, s in conds
        ],
        **status,
    }
    return job


def pod(message: str | None, key: str = "state") -> dict[str, Any]:
    terminated = {"exitCode": 0, "reason": "Completed"} | ({"message": message} if message else {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD},
        "status": {"containerStatuses": [{"name": "pytorch", key: {"terminated": terminated}}]},
    }


def observed(*objects: dict[str, Any]) -> plans.Observed:
    return plans.Observed({f"{o['kind']}/{o['metadata']['name']}": o for o in objects})


def world(
    resource: dict[str, Any], job: dict[str, Any] | None, master: dict[str, Any] | None = None
) -> plans.Observed:
    config_map, _ = trainingrun.render_children(resource, SETTINGS)
    return observed(*[o for o in (job, config_map, master) if o is not None])


SUCCESS = trainer_result.Result(
    phase="Succeeded",
    message="trained iris-3f2a",
    metrics={"accuracy": 0.96, "f1": 0.95},
    model={"version": "iris-3f2a", "fp32Uri": "s3://b/m/fp32.pt", "quantizedUri": "s3://b/m/int8.onnx"},
    data={"repo": "r", "rev": "v1", "commit": "abc123", "hash": "d41d8", "rows": 150},
    checkpoint={"uri": "s3://b/ckpt/step-40.pt", "step": 40},
    validation={"success": True, "evaluated": 7},
)
RUNNING = [("Created", "True"), ("Running", "True")]
DONE = [("Created", "True"), ("Running", "False"), ("Succeeded", "True")]
FAILED = [("Created", "True"), ("Running", "False"), ("Failed", "True")]


def test_observe_refs() -> None:
    refs = trainingrun.observe_refs(upstream.trainingrun(), SETTINGS)
    assert [(r.api_version, r.key, r.namespace) for r in refs] == [
        ("kubeflow.org/v1", "PyTorchJob/iris", "ml"),
        ("v1", "ConfigMap/iris-config", "ml"),
        ("v1", "Pod/iris-master-0", "ml"),
    ]


def test_invalid_spec_is_a_permanent_error_naming_the_field() -> None:
    resource = upstream.trainingrun(resources={"gpusPerReplica": -1})
    plan = trainingrun.plan(resource, plans.Observed(), T0, SETTINGS)
    assert plan.apply == [] and plan.requeue_after is None
    assert plan.permanent_error and "spec.resources.gpusPerReplica" in plan.permanent_error
    ready = cond(plan.status, conditions.READY)
    assert (ready["status"], ready["reason"]) == ("False", conditions.R_INVALID_SPEC)
    assert "fix the field" in ready["message"]
    assert plan.status["phase"] == conditions.FAILED
    assert cond(plan.status, conditions.STALLED)["status"] == "True"
    assert [e.type for e in plan.events] == ["Warning"]


def test_creates_job_and_config_map_when_missing() -> None:
    resource = upstream.trainingrun()
    plan = trainingrun.plan(resource, plans.Observed(), T0, SETTINGS)
    assert plan.apply == trainingrun.render_children(resource, SETTINGS)
    assert plan.status["phase"] == conditions.PENDING
    assert plan.status["jobName"] == JOB and plan.status["observedGeneration"] == 1
    assert cond(plan.status, conditions.READY)["status"] == "Unknown"  # never False for progress
    assert cond(plan.status, conditions.RECONCILING)["status"] == "True"
    assert plan.requeue_after == trainingrun.REQUEUE_ACTIVE
    assert len(plan.events) == 1


def test_phase_follows_job_conditions_and_ready_stays_unknown() -> None:
    resource = upstream.trainingrun()
    cases = {
        (("Created", "True"),): (conditions.PENDING, conditions.R_JOB_CREATED),
        tuple(RUNNING): (conditions.RUNNING, conditions.R_JOB_RUNNING),
        (("Created", "True"), ("Running", "False"), ("Restarting", "True")): (
            conditions.RUNNING,
            conditions.R_JOB_RESTARTING,
        ),
        (("Created", "True"), ("Suspended", "True")): (conditions.SUSPENDED, conditions.R_JOB_SUSPENDED),
    }
    for conds, (phase, reason) in cases.items():
        job = job_with(resource, *conds, startTime="2026-01-01T12:00:05Z")
        plan = trainingrun.plan(resource, world(resource, job), T0, SETTINGS)
        assert plan.status["phase"] == phase, conds
        ready = cond(plan.status, conditions.READY)
        assert (ready["status"], ready["reason"]) == ("Unknown", reason)
        assert cond(plan.status, conditions.TRAINED)["status"] == "Unknown"
        assert plan.status["startTime"] == "2026-01-01T12:00:05Z"
        assert plan.apply == [] and plan.requeue_after == trainingrun.REQUEUE_ACTIVE


def test_success_records_the_trainers_result() -> None:
    resource = upstream.trainingrun()
    job = job_with(resource, *DONE, startTime="2026-01-01T12:00:05Z", completionTime="2026-01-01T12:09:00Z")
    master = pod(trainer_result.compact(SUCCESS))
    plan = trainingrun.plan(resource, world(resource, job, master), T0, SETTINGS)
    status = plan.status
    assert status["phase"] == conditions.SUCCEEDED and plan.requeue_after is None
    assert status["metrics"] == {"accuracy": 0.96, "f1": 0.95}
    assert status["model"]["quantizedUri"] == "s3://b/m/int8.onnx"
    assert status["data"]["commit"] == "abc123" and status["checkpoint"] == {
        "uri": "s3://b/ckpt/step-40.pt",
        "step": 40,
    }
    assert status["validation"] == {"success": True, "evaluated": 7}
    assert status["completionTime"] == "2026-01-01T12:09:00Z"
    for type_ in (conditions.READY, conditions.TRAINED, conditions.DATA_VALIDATED, conditions.EXPORTED):
        assert cond(status, type_)["status"] == "True", type_
    assert cond(status, conditions.RECONCILING)["status"] == "False"
    assert cond(status, conditions.STALLED)["status"] == "False"
    assert [e.reason for e in plan.events] == [conditions.R_SUCCEEDED]
    # The status it writes is what the API accepts (the CRD is generated from these models).
    from flywheel.api import trainingrun as api

    api.TrainingRunStatus.model_validate(status)


def test_failed_job_reports_the_operator_message() -> None:
    resource = upstream.trainingrun()
    job = job_with(resource, *FAILED, message="PyTorchJob iris is failed because 1 Master replica(s) failed.")
    plan = trainingrun.plan(resource, world(resource, job, pod(None)), T0, SETTINGS)
    ready = cond(plan.status, conditions.READY)
    assert (ready["status"], ready["reason"]) == ("False", conditions.R_FAILED)
    assert ready["message"].startswith("PyTorchJob iris is failed because 1 Master")
    assert "no result" in plan.status["message"]  # the missing message is said, not hidden
    assert cond(plan.status, conditions.STALLED)["status"] == "True"
    assert [e.type for e in plan.events] == ["Warning"] and plan.requeue_after is None


def test_failed_data_gate_sets_data_validated_false() -> None:
    resource = upstream.trainingrun()
    gate = trainer_result.Result(
        phase="Failed",
        message="data validation failed: nothing was trained",
        validation={"success": False, "failed": ["expect_column_values_to_not_be_null"]},
    )
    job = job_with(resource, *FAILED)
    plan = trainingrun.plan(resource, world(resource, job, pod(trainer_result.compact(gate))), T0, SETTINGS)
    assert plan.status["phase"] == conditions.FAILED
    validated = cond(plan.status, conditions.DATA_VALIDATED)
    assert (validated["status"], validated["reason"]) == ("False", conditions.R_VALIDATION_FAILED)
    assert cond(plan.status, conditions.TRAINED)["reason"] == conditions.R_VALIDATION_FAILED
    assert cond(plan.status, conditions.READY)["message"] == "data validation failed: nothing was trained"


def test_result_saying_failed_overrides_a_succeeded_job() -> None:
    resource = upstream.trainingrun()
    failed = trainer_result.Result(phase="Failed", message="holdout accuracy is NaN")
    job = job_with(resource, *DONE)
    plan = trainingrun.plan(resource, world(resource, job, pod(trainer_result.compact(failed))), T0, SETTINGS)
    assert plan.status["phase"] == conditions.FAILED
    assert cond(plan.status, conditions.READY)["message"] == "holdout accuracy is NaN"
    assert plans.get_condition(plan.status["conditions"], conditions.DATA_VALIDATED) is None


def test_garbled_or_previous_run_message() -> None:
    resource = upstream.trainingrun()
    job = job_with(resource, *DONE)
    plan = trainingrun.plan(resource, world(resource, job, pod('{"phase": "Succ')), T0, SETTINGS)
    assert plan.status["phase"] == conditions.SUCCEEDED
    assert "not a JSON result" in plan.status["message"] and "metrics" not in plan.status
    odd = json.dumps(
        {"phase": "Succeeded", "metrics": {"acc": "high", "loss": 0.1, "nan": float("nan")}, "model": 3}
    )
    plan = trainingrun.plan(resource, world(resource, job, pod(odd, key="lastState")), T0, SETTINGS)
    assert plan.status["metrics"] == {"loss": 0.1} and "model" not in plan.status
    odd = json.dumps({"phase": "Succeeded", "validation": {"success": True, "ratio": float("inf")}})
    plan = trainingrun.plan(resource, world(resource, job, pod(odd)), T0, SETTINGS)
    json.dumps(plan.status, allow_nan=False)  # what the API server accepts
    assert plan.status["validation"] == {"success": True, "ratio": None}


def test_reconciling_twice_is_a_no_op() -> None:
    """Every stage: plan, apply the status, plan again later -> identical status, no events, no apply."""
    fresh = upstream.trainingrun()
    stages = [
        (job_with(fresh, ("Created", "True")), None),
        (job_with(fresh, *RUNNING), None),
        (job_with(fresh, *DONE), pod(trainer_result.compact(SUCCESS))),
        (job_with(fresh, *FAILED), pod(None)),
        (job_with(fresh, *DONE), pod("garbled")),
    ]
    for job, master in stages:
        # From nothing: the first plan creates what the world then holds.
        resource = applied(fresh, trainingrun.plan(fresh, plans.Observed(), T0, SETTINGS))
        now = world(resource, job, master)
        resource = applied(resource, trainingrun.plan(resource, now, T0, SETTINGS))
        second = trainingrun.plan(resource, now, T0 + datetime.timedelta(minutes=5), SETTINGS)
        assert merge(resource["status"], second.status) == resource["status"], job["status"]
        assert second.events == [] and second.apply == [] and second.delete == []


def test_finished_run_whose_job_was_garbage_collected_is_final() -> None:
    resource = upstream.trainingrun()
    job = job_with(resource, *DONE)
    resource = applied(
        resource,
        trainingrun.plan(resource, world(resource, job, pod(trainer_result.compact(SUCCESS))), T0, SETTINGS),
    )
    plan = trainingrun.plan(resource, plans.Observed(), T0, SETTINGS)  # ttlSecondsAfterFinished passed
    assert plan.apply == [] and plan.status == {} and plan.events == []
    # ... and its pod disappearing does not erase the recorded result either.
    assert trainingrun.plan(resource, world(resource, job), T0, SETTINGS).status == {}
    # A metadata-only bump of the generation is no spec change; an edit of the spec is reported
    # on SpecDiverged against the hash the status recorded from the job, without failing the run.
    bumped = copy.deepcopy(resource)
    bumped["metadata"]["generation"] = 2
    assert trainingrun.plan(bumped, plans.Observed(), T0, SETTINGS).status == {}
    edited = edit(resource)
    plan = trainingrun.plan(edited, plans.Observed(), T0, SETTINGS)
    assert plan.apply == []
    assert cond(plan.status, conditions.SPEC_DIVERGED)["status"] == "True"
    assert plan.status["phase"] == conditions.SUCCEEDED
    assert_current(applied(edited, plan))
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", conditions.R_SPEC_CHANGED)]
    again = trainingrun.plan(applied(edited, plan), plans.Observed(), T0, SETTINGS)
    assert merge(applied(edited, plan)["status"], again.status) == applied(edited, plan)["status"]
    assert again.events == []
    reverted = {**applied(edited, plan), "spec": resource["spec"]}
    back = trainingrun.plan(reverted, plans.Observed(), T0, SETTINGS)
    assert cond(back.status, conditions.SPEC_DIVERGED)["status"] == "False"
    assert_current(applied(reverted, back))


def edit(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource after `kubectl edit` changed the epochs (the API server bumps generation)."""
    edited = copy.deepcopy(resource)
    edited["metadata"]["generation"] = resource["metadata"].get("generation", 1) + 1
    edited["spec"]["training"] = {**edited["spec"].get("training", {}), "epochs": 50}
    return edited


def assert_current(resource: dict[str, Any]) -> None:
    """kstatus reads it Current: Ready True, not Reconciling, not Stalled, generation observed."""
    status = resource["status"]
    assert status["observedGeneration"] == resource["metadata"]["generation"]
    assert cond(status, conditions.READY)["status"] == "True"
    assert cond(status, conditions.RECONCILING)["status"] == "False"
    assert cond(status, conditions.STALLED)["status"] == "False"


def test_spec_change_before_pods_started_recreates_the_job() -> None:
    resource = upstream.trainingrun()
    job = job_with(resource, ("Created", "True"), ("Suspended", "True"))  # Kueue has not admitted it
    edited = copy.deepcopy(resource)
    edited["metadata"]["generation"] = 2
    edited["spec"]["training"] = {"epochs": 50}
    plan = trainingrun.plan(edited, world(resource, job), T0, SETTINGS)
    assert [o["kind"] for o in plan.delete] == ["PyTorchJob", "ConfigMap"]
    assert plan.apply == [] and plan.requeue_after == trainingrun.REQUEUE_RECREATE
    assert [e.reason for e in plan.events] == [conditions.R_RECREATING]
    job["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:01Z"
    edited = applied(edited, plan)
    waiting = trainingrun.plan(edited, world(resource, job), T0, SETTINGS)
    assert waiting.delete == [] and waiting.events == []
    created = trainingrun.plan(edited, plans.Observed(), T0, SETTINGS)
    new_job = created.apply[1]
    assert new_job["metadata"]["annotations"][pytorchjob.ANNOTATION_GENERATION] == "2"
    new_config = json.loads(created.apply[0]["data"]["config.json"])
    assert new_config["spec"]["training"]["epochs"] == 50


def test_spec_change_after_start_keeps_the_job_and_says_so() -> None:
    resource = upstream.trainingrun()
    job = job_with(resource, *RUNNING)
    edited = edit(resource)
    plan = trainingrun.plan(edited, observed(job), T0, SETTINGS)  # ConfigMap missing too
    assert plan.apply == [] and plan.delete == []  # no patch of a running job, no new config
    ready = cond(plan.status, conditions.READY)
    assert (ready["status"], ready["reason"]) == ("False", conditions.R_SPEC_CHANGED)
    assert cond(plan.status, conditions.STALLED)["status"] == "True"
    assert cond(plan.status, conditions.SPEC_DIVERGED)["status"] == "True"
    assert plan.status["phase"] == conditions.RUNNING and plan.status["observedGeneration"] == 2
    assert [e.type for e in plan.events] == ["Warning"]
    again = trainingrun.plan(applied(edited, plan), observed(job), T0, SETTINGS)
    assert again.events == []


def test_spec_put_back_clears_the_stall() -> None:
    """The generation only grows, so the stall is decided by the spec hash the job records."""
    resource = upstream.trainingrun()
    job = job_with(resource, *RUNNING)
    edited = edit(resource)
    stalled = applied(edited, trainingrun.plan(edited, observed(job), T0, SETTINGS))
    reverted = {**stalled, "metadata": {**stalled["metadata"], "generation": 3}, "spec": resource["spec"]}
    plan = trainingrun.plan(reverted, observed(job), T0, SETTINGS)
    assert cond(plan.status, conditions.STALLED)["status"] == "False"
    assert cond(plan.status, conditions.SPEC_DIVERGED)["status"] == "False"
    assert cond(plan.status, conditions.RECONCILING)["status"] == "True"  # training goes on
    assert cond(plan.status, conditions.READY)["reason"] != conditions.R_SPEC_CHANGED


def test_succeeded_run_edited_stays_succeeded() -> None:
    """Ready and phase are the run's result (its model may be served); the edit is its own condition."""
    resource = upstream.trainingrun()
    job = job_with(resource, *DONE)
    master = pod(trainer_result.compact(SUCCESS))
    done = applied(resource, trainingrun.plan(resource, world(resource, job, master), T0, SETTINGS))
    edited = edit(done)
    plan = trainingrun.plan(edited, world(resource, job, master), T0, SETTINGS)
    after = applied(edited, plan)
    assert after["status"]["phase"] == conditions.SUCCEEDED
    assert_current(after)
    diverged = cond(after["status"], conditions.SPEC_DIVERGED)
    assert (diverged["status"], diverged["reason"]) == ("True", conditions.R_SPEC_CHANGED)
    assert "create a new trainingrun" in diverged["message"].lower()
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", conditions.R_SPEC_CHANGED)]


def test_a_job_recreated_after_it_ran_is_a_new_event() -> None:
    """The API dedupes events by content; the occurrence (the state left) tells two apart."""
    resource = upstream.trainingrun()
    first = trainingrun.plan(resource, plans.Observed(), T0, SETTINGS)
    running = applied(resource, first)
    job = job_with(resource, *RUNNING, startTime="2026-01-01T12:00:05Z")
    running = applied(running, trainingrun.plan(running, world(resource, job), T0, SETTINGS))
    gone = trainingrun.plan(running, plans.Observed(), T0, SETTINGS)  # someone deleted the job
    assert [o["kind"] for o in gone.apply] == ["ConfigMap", "PyTorchJob"]
    [event] = [e for e in gone.events if e.reason == conditions.R_CREATING]
    assert "gone" in event.message
    assert event.occurrence != first.events[0].occurrence
    again = applied(running, gone)
    job2 = job_with(resource, *RUNNING, startTime="2026-01-01T13:00:00Z")
    again = applied(again, trainingrun.plan(again, world(resource, job2), T0, SETTINGS))
    gone2 = trainingrun.plan(again, plans.Observed(), T0, SETTINGS)
    [event2] = [e for e in gone2.events if e.reason == conditions.R_CREATING]
    assert (event2.message, event2.reason) == (event.message, event.reason)
    assert event2.occurrence != event.occurrence


def test_missing_config_map_is_restored_while_running() -> None:
    resource = upstream.trainingrun()
    job = job_with(resource, *RUNNING)
    plan = trainingrun.plan(resource, observed(job), T0, SETTINGS)
    assert plan.apply == [trainingrun.render_children(resource, SETTINGS)[0]]


def test_a_job_of_the_same_name_owned_by_something_else_is_not_adopted() -> None:
    resource = upstream.trainingrun()
    job = job_with(resource, *RUNNING)
    job["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    plan = trainingrun.plan(resource, world(resource, job), T0, SETTINGS)
    ready = cond(plan.status, conditions.READY)
    assert (ready["status"], ready["reason"]) == ("False", conditions.R_NAME_CONFLICT)
    assert plan.apply == [] and plan.delete == []
