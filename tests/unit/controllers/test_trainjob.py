"""TrainJob launcher (spec.launcher: TrainJob): every rendered TrainJob passes the Trainer v2.3.0
TrainJob CRD (schema and CEL rules), references a runtime that passes the ClusterTrainingRuntime
CRD (the stock torch-distributed and the chart's flywheel-torch), and the pod the two make is a
valid Kubernetes Pod carrying the same presets as the PyTorchJob launcher's. Status mapping from
TrainJob conditions and the rank 0 result are checked on status shapes from the v2.3 API. No
cluster, Trainer controller or GPU is involved: manifests and status dicts only."""

from __future__ import annotations

import datetime
import functools
import json
from typing import Any

import pydantic
import pytest

from flywheel.api import conditions, contract
from flywheel.controllers import launchers, plans, pytorchjob, settings, trainingrun, trainjob
from tests.unit.controllers import upstream
from tests.unit.controllers import upstream_trainjob as v2
from tests.unit.controllers.test_pytorchjob import RDMA

SETTINGS = settings.Settings()
SCHEDULING: dict[str, dict[str, Any]] = {
    "none": {},
    "kueue": {"queueName": "team-a", "gang": {"enabled": True, "scheduler": "kueue"}},
    "volcano": {"queueName": "research", "gang": {"enabled": True, "scheduler": "volcano"}},
    "scheduler-plugins": {"gang": {"enabled": True, "scheduler": "scheduler-plugins"}},
}


@functools.cache
def chart_runtime() -> dict[str, Any]:
    from tests.unit.helm import test_trainjob_runtime

    return test_trainjob_runtime.runtime_doc()


def run(**spec: Any) -> dict[str, Any]:
    return upstream.trainingrun(launcher="TrainJob", **spec)


def render(
    manifest: dict[str, Any], s: settings.Settings = SETTINGS
) -> tuple[dict[str, Any], dict[str, Any]]:
    config_map, job = trainingrun.render_children(manifest, s)
    return job, config_map


def node(pod: dict[str, Any]) -> dict[str, Any]:
    [c] = [c for c in pod["spec"]["containers"] if c["name"] == "node"]
    return c


# RDMA without GPUs is refused by the spec validation (tested in test_pytorchjob): not in the matrix.
MATRIX = [
    (rdma, replicas, gpus, sched)
    for rdma in sorted(RDMA)
    for replicas, gpus in [(1, 0), (1, 1), (2, 8), (4, 8)]
    for sched in sorted(SCHEDULING)
    if rdma == "off" or gpus > 0
]


@pytest.mark.parametrize("rdma,replicas,gpus,sched", MATRIX)
def test_matrix_is_valid_upstream_and_shaped_as_asked(
    rdma: str, replicas: int, gpus: int, sched: str
) -> None:
    manifest = run(
        resources={"replicas": replicas, "gpusPerReplica": gpus},
        networking={"rdma": RDMA[rdma]},
        scheduling=SCHEDULING[sched],
    )
    job, config_map = render(manifest)
    upstream.validate_core(config_map)
    pod = v2.assert_valid(job, v2.stock_runtime())
    runtime = chart_runtime()
    v2.assert_valid(_against(job, runtime), runtime)
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (replicas, max(gpus, 1))
    amounts = trainer["resourcesPerNode"]["limits"]
    assert amounts == trainer["resourcesPerNode"]["requests"]
    assert amounts.get("nvidia.com/gpu") == (str(gpus) if gpus else None)
    env = {e["name"]: e.get("value") for e in node(pod)["env"]}
    caps = node(pod)["securityContext"]["capabilities"]
    annotations = pod["metadata"]["annotations"]
    if rdma == "off":
        assert not any(k.startswith("NCCL_") for k in env) and "add" not in caps
        assert contract.MULTUS_ANNOTATION not in annotations
    else:
        rdma_spec = RDMA[rdma]
        assert env["NCCL_IB_DISABLE"] == "0" and caps["add"] == ["IPC_LOCK"]
        assert annotations[contract.MULTUS_ANNOTATION] == ",".join(rdma_spec["networks"])
        assert amounts[rdma_spec.get("resourceName", "rdma/rdma_shared_device_a")] == "1"
        assert ("NCCL_IB_GID_INDEX" in env) == (rdma == "roce")
    labels, meta_annotations = job["metadata"]["labels"], job["metadata"].get("annotations", {})
    assert labels.get(contract.KUEUE_QUEUE_LABEL) == ("team-a" if sched == "kueue" else None)
    assert meta_annotations.get(trainjob.VOLCANO_QUEUE_ANNOTATION) == (
        "research" if sched == "volcano" else None
    )


def _against(job: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    """The same job pointed at another runtime (what FLYWHEEL_TRAINJOB_RUNTIME does)."""
    return {
        **job,
        "spec": {
            **job["spec"],
            "runtimeRef": {**job["spec"]["runtimeRef"], "name": runtime["metadata"]["name"]},
        },
    }


def test_same_pod_as_the_pytorchjob_launcher() -> None:
    """The contract a workload sees (env, mounts, security, resources, labels) does not depend on
    the launcher: the TrainJob's pod under the chart's runtime matches the PyTorchJob Master's."""
    spec = {"resources": {"replicas": 2, "gpusPerReplica": 4}, "networking": {"rdma": RDMA["infiniband"]},
            "scheduling": {"nodeSelector": {"gpu": "h100"}, "tolerations": [{"key": "gpu", "operator": "Exists"}]}}  # fmt: skip
    job, cm_v2 = render(run(**spec))
    v1, cm_v1 = render(upstream.trainingrun(**spec))
    runtime = chart_runtime()
    pod = v2.trainer_pod(_against(job, runtime), runtime)
    master = v1["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    [c1] = master["spec"]["containers"]
    c2 = node(pod)
    for key in ("command", "resources", "securityContext", "volumeMounts", "terminationMessagePath"):
        assert c2[key] == c1[key], key
    assert c2["env"] == c1["env"]
    for key in ("volumes", "securityContext", "nodeSelector", "tolerations", "automountServiceAccountToken"):
        assert pod["spec"][key] == master["spec"][key], key
    assert pod["metadata"]["labels"] == master["metadata"]["labels"]
    # The config differs by spec.launcher alone (checked below), so its hash does too.
    hash_key = contract.ANNOTATION_CONFIG_HASH
    assert {**pod["metadata"]["annotations"], hash_key: ""} == {
        **master["metadata"]["annotations"],
        hash_key: "",
    }
    config_v2 = json.loads(cm_v2["data"][contract.CONFIG_FILE])
    assert config_v2["spec"].pop("launcher") == "TrainJob"
    assert config_v2 == json.loads(cm_v1["data"][contract.CONFIG_FILE])


def test_owner_reference_generation_and_runtime_setting() -> None:
    job, config_map = render(run(), settings.Settings(trainjob_runtime="flywheel-torch"))
    assert job["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                                         "name": "flywheel-torch"}  # fmt: skip
    for child in (job, config_map):
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "TrainingRun",
            "iris",
            "uid-1",
            True,
        )
    assert job["metadata"]["annotations"][pytorchjob.ANNOTATION_GENERATION] == "1"
    assert settings.Settings.from_env({"FLYWHEEL_TRAINJOB_RUNTIME": "x"}).trainjob_runtime == "x"


def test_active_deadline_and_credentials_secrets_by_key() -> None:
    job, _ = render(run(runPolicy={"activeDeadlineSeconds": 3600},
                        artifacts={"uri": "s3://models-bucket/runs", "credentialsSecret": "s3-creds"},
                        data={"repo": "https://example.com/d.git", "path": "d.csv", "credentialsSecret": "dvc-creds"}))  # fmt: skip
    v2.assert_valid(job, v2.stock_runtime())
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in job["spec"]["trainer"]["env"] if "valueFrom" in e
    }
    assert refs["AWS_ACCESS_KEY_ID"] == {"name": "dvc-creds", "key": "AWS_ACCESS_KEY_ID", "optional": True}
    assert set(refs) == set(trainjob.SECRET_KEYS)  # one entry per name: the data Secret wins, as envFrom does


def test_pytorchjob_stays_the_default_and_renders_unchanged() -> None:
    manifest = upstream.trainingrun(resources={"replicas": 2, "gpusPerReplica": 1})
    assert launchers.of(manifest) is pytorchjob
    assert launchers.of(run()) is trainjob
    job, config_map = render(manifest)
    assert job["kind"] == "PyTorchJob"
    assert "launcher" not in json.loads(config_map["data"][contract.CONFIG_FILE])["spec"]
    explicit, _ = render(
        upstream.trainingrun(launcher="PyTorchJob", resources={"replicas": 2, "gpusPerReplica": 1})
    )
    assert explicit["kind"] == "PyTorchJob"


@pytest.mark.parametrize(
    "spec,field",
    [
        ({"scheduling": {"priorityClassName": "high"}}, "scheduling.priorityClassName"),
        ({"scheduling": {"gang": {"enabled": True, "scheduler": "volcano", "minAvailable": 2}}}, "scheduling.gang.minAvailable"),
        ({"scheduling": {"gang": {"enabled": True, "scheduler": "scheduler-plugins", "scheduleTimeoutSeconds": 60}}},
         "scheduling.gang.scheduleTimeoutSeconds"),
        ({"runPolicy": {"backoffLimit": 0}}, "runPolicy.backoffLimit"),
        ({"runPolicy": {"ttlSecondsAfterFinished": 60}}, "runPolicy.ttlSecondsAfterFinished"),
        ({"runPolicy": {"restartPolicy": "OnFailure"}}, "runPolicy.restartPolicy"),
    ],
)  # fmt: skip
def test_fields_a_trainjob_cannot_express_are_refused_by_name(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        render(run(**spec))
    assert field in str(caught.value) and "launcher: PyTorchJob" in str(caught.value)
    render(upstream.trainingrun(**spec))  # the PyTorchJob launcher takes them


def test_every_refused_field_is_named_at_once() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        render(
            run(
                scheduling={"priorityClassName": "high"},
                runPolicy={"backoffLimit": 1, "ttlSecondsAfterFinished": 5},
            )
        )
    text = str(caught.value)
    assert all(f in text for f in ("priorityClassName", "backoffLimit", "ttlSecondsAfterFinished"))


# --- Status ---------------------------------------------------------------------------------------


cond, jobs_status = v2.cond, v2.jobs_status


@pytest.mark.parametrize(
    "status,phase,reason,started",
    [
        ({}, conditions.PENDING, conditions.R_JOB_CREATED, False),
        ({"conditions": [cond("Created")]}, conditions.PENDING, conditions.R_JOB_CREATED, False),
        ({"conditions": [cond("Created"), cond("Suspended")]}, conditions.SUSPENDED, conditions.R_JOB_SUSPENDED, False),
        ({"conditions": [cond("Created"), cond("Suspended", "False")], "jobsStatus": jobs_status(active=2, ready=1)},
         conditions.RUNNING, conditions.R_JOB_RUNNING, True),
        ({"conditions": [cond("Created"), cond("Complete", at="2026-12-07T21:00:00Z")], "jobsStatus": jobs_status(succeeded=2)},
         conditions.SUCCEEDED, conditions.R_SUCCEEDED, True),
        ({"conditions": [cond("Created"), cond("Failed", message="JobSet failed")], "jobsStatus": jobs_status(failed=1)},
         conditions.FAILED, conditions.R_FAILED, True),
        ({"conditions": [cond("Created"), cond("Complete", "False"), cond("Failed")]}, conditions.FAILED, conditions.R_FAILED, True),
    ],
)  # fmt: skip
def test_job_state_from_conditions_and_jobs_status(
    status: dict[str, Any], phase: str, reason: str, started: bool
) -> None:
    state = trainjob.job_state({"status": status})
    assert (state.phase, state.reason, state.started) == (phase, reason, started)
    assert state.terminal == (phase in (conditions.SUCCEEDED, conditions.FAILED))
    if phase == conditions.SUCCEEDED:
        assert (state.start_time, state.completion_time) == ("2026-12-07T20:00:00Z", "2026-12-07T21:00:00Z")
    if phase == conditions.FAILED and "JobSet failed" in str(status):
        assert state.message == "JobSet failed"


def pod(name: str, created: str, message: str | None, container: str = "node") -> dict[str, Any]:
    statuses = (
        [{"name": container, "state": {"terminated": {"exitCode": 0, "message": message}}}] if message else []
    )
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"containerStatuses": statuses},
    }


def test_result_comes_from_the_newest_rank0_pod_with_a_message() -> None:
    pods = {"kind": "PodList", "items": [
        pod("iris-node-0-0-aaaaa", "2026-12-07T20:00:00Z", '{"phase": "Failed"}'),
        pod("iris-node-0-0-bbbbb", "2026-12-07T20:10:00Z", '{"phase": "Succeeded"}'),
        pod("iris-node-0-0-ccccc", "2026-12-07T20:20:00Z", None),  # a restart still starting
    ]}  # fmt: skip
    assert trainjob.termination_message(pods) == '{"phase": "Succeeded"}'
    assert trainjob.rank0_pod(pods)["metadata"]["name"] == "iris-node-0-0-ccccc"
    assert trainjob.termination_message(None) is None
    assert trainjob.termination_message({"items": [pod("x", "t", "m", container="sidecar")]}) is None


def test_rank0_is_observed_by_labels() -> None:
    ref = trainingrun.observe_refs(run(), SETTINGS)[-1]
    assert (ref.kind, ref.name, ref.key) == ("Pod", "iris-node-0-0", "Pod/iris-node-0-0")
    assert ref.selector == (
        "jobset.sigs.k8s.io/jobset-name=iris,jobset.sigs.k8s.io/replicatedjob-name=node,"
        "jobset.sigs.k8s.io/job-index=0,batch.kubernetes.io/job-completion-index=0"
    )
    job_ref = trainingrun.observe_refs(run(), SETTINGS)[0]
    assert (job_ref.api_version, job_ref.kind) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert trainingrun.observe_refs(upstream.trainingrun(), SETTINGS)[-1].selector is None


def test_validators_reject_what_upstream_rejects() -> None:
    """The checks above can fail: each broken copy of a valid job is caught."""
    job, _ = render(run(resources={"replicas": 2, "gpusPerReplica": 8}))
    stock = v2.stock_runtime()
    bad = json.loads(json.dumps(job))
    bad["spec"]["trainer"]["numProcPerNode"] = "8"  # v1's string form; v2.3 wants an integer
    assert v2.trainjob_errors(bad)
    bad = json.loads(json.dumps(job))
    bad["metadata"]["name"] = "9-lives"
    assert v2.trainjob_errors(bad)
    bad = json.loads(json.dumps(job))
    del bad["spec"]["runtimeRef"]["name"]
    assert v2.trainjob_errors(bad)
    bad = json.loads(json.dumps(job))
    v2.pod_patch_containers(bad["spec"]["runtimePatches"][0])[0]["env"] = [{"name": "X", "value": "1"}]
    assert v2.trainjob_errors(bad)
    bad = json.loads(json.dumps(job))
    v2.pod_patch_containers(bad["spec"]["runtimePatches"][0])[0]["name"] = "pytorch"
    with pytest.raises(AssertionError, match="no container pytorch"):
        v2.trainer_pod(bad, stock)
    bad = json.loads(json.dumps(job))
    bad["spec"]["trainer"]["resourcesPerNode"]["limits"]["cpu"] = {"cores": 2}
    with pytest.raises(Exception):  # kubernetes-validate raises its own error type
        upstream.validate_core(v2.trainer_pod(bad, stock))


def test_flywheel_validate_names_the_fields_and_exits_1(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    import yaml

    from flywheel.api import validation

    manifest = run(scheduling={"priorityClassName": "urgent"}, runPolicy={"ttlSecondsAfterFinished": 60})
    del manifest["metadata"]["uid"], manifest["metadata"]["generation"]
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert validation.cli(argparse.Namespace(filename=[str(path)])) == 1
    out = capsys.readouterr().out
    assert "scheduling.priorityClassName" in out and "runPolicy.ttlSecondsAfterFinished" in out
    assert "Traceback" not in out
    path.write_text(yaml.safe_dump(run()))
    assert validation.cli(argparse.Namespace(filename=[str(path)])) == 0


def test_the_example_renders_a_valid_trainjob_for_both_runtimes() -> None:
    from flywheel.api import loading

    [doc] = loading.read_documents(str(upstream.REPO / "examples" / "trainingrun-trainjob.yaml"))
    doc["metadata"].update(namespace="default", uid="uid-1", generation=1)
    job, _ = render(doc)
    v2.assert_valid(job, v2.stock_runtime())
    runtime = chart_runtime()
    v2.assert_valid(_against(job, runtime), runtime)
    assert job["spec"]["trainer"]["numNodes"] == 2


# --- The TrainingRun plan over a TrainJob (pure: observed objects as the adapter would pass them) ---

T0 = datetime.datetime(2026, 12, 7, 20, 0, tzinfo=datetime.UTC)


def observed_world(
    resource: dict[str, Any], status: dict[str, Any] | None, pods: list[dict[str, Any]] | None = None
) -> Any:
    job, config_map = render(resource)
    objects = {"ConfigMap/iris-config": config_map}
    if status is not None:
        objects["TrainJob/iris"] = {**job, "status": status}
    if pods:
        objects["Pod/iris-node-0-0"] = {"kind": "PodList", "items": pods}
    return plans.Observed(objects)


def edited(resource: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(resource))
    out["metadata"]["generation"] = 2
    out["spec"]["training"] = {"epochs": 50}
    return out


def test_plan_creates_the_trainjob_then_is_a_no_op() -> None:
    resource = run()
    plan = trainingrun.plan(resource, observed_world(resource, None), T0, SETTINGS)
    assert [o["kind"] for o in plan.apply] == ["ConfigMap", "TrainJob"]
    assert plan.status["message"] == "creating TrainJob iris"
    status = {**resource, "status": plan.status}
    again = trainingrun.plan(status, observed_world(resource, {}), T0, SETTINGS)
    assert again.apply == [] and again.delete == []


def test_spec_change_while_kueue_holds_the_trainjob_replaces_it() -> None:
    resource = run()
    held = {"conditions": [cond("Created"), cond("Suspended")]}
    plan = trainingrun.plan(edited(resource), observed_world(resource, held), T0, SETTINGS)
    assert [o["kind"] for o in plan.delete] == ["TrainJob", "ConfigMap"]
    assert "before TrainJob iris started" in plan.status["message"]


def test_spec_change_after_node_pods_ran_keeps_the_trainjob_and_says_so() -> None:
    resource = run()
    running = {"conditions": [cond("Created")], "jobsStatus": jobs_status(active=1)}
    plan = trainingrun.plan(edited(resource), observed_world(resource, running), T0, SETTINGS)
    assert plan.delete == [] and plan.apply == []
    ready = plans_condition(plan.status, conditions.READY)
    assert ready["reason"] == conditions.R_SPEC_CHANGED and "after TrainJob iris started" in ready["message"]


def test_terminal_trainjob_reads_rank0_result_into_status() -> None:
    resource = run()
    result = {"phase": "Succeeded", "message": "trained", "metrics": {"f1": 0.9}}
    done = {
        "conditions": [cond("Created"), cond("Complete", at="2026-12-07T21:00:00Z")],
        "jobsStatus": jobs_status(succeeded=1),
    }
    plan = trainingrun.plan(
        resource,
        observed_world(resource, done, [pod("iris-node-0-0-a1b2c", "t", json.dumps(result))]),
        T0,
        SETTINGS,
    )
    assert plan.status["phase"] == conditions.SUCCEEDED and plan.status["metrics"] == {"f1": 0.9}
    assert plan.status["completionTime"] == "2026-12-07T21:00:00Z"


def plans_condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = plans.get_condition(status["conditions"], type_)
    assert found is not None
    return found


REFUSED = [
    ({"scheduling": {"priorityClassName": "high"}}, "scheduling.priorityClassName"),
    ({"scheduling": {"gang": {"enabled": True, "scheduler": "volcano", "minAvailable": 2}}}, "scheduling.gang.minAvailable"),
    ({"scheduling": {"gang": {"scheduleTimeoutSeconds": 60}}}, "scheduling.gang.scheduleTimeoutSeconds"),
    ({"runPolicy": {"backoffLimit": 0}}, "runPolicy.backoffLimit"),
    ({"runPolicy": {"ttlSecondsAfterFinished": 60}}, "runPolicy.ttlSecondsAfterFinished"),
    ({"runPolicy": {"restartPolicy": "OnFailure"}}, "runPolicy.restartPolicy"),
]  # fmt: skip
CEL_CASES = (
    [("TrainingRun", *case) for case in REFUSED]
    + [("SelfPlayRun", *case) for case in REFUSED]
    + [("SelfPlayRun", {"executor": {"userNamespace": True}}, "executor.userNamespace")]
)


@pytest.mark.parametrize("kind,spec,field", CEL_CASES)
def test_the_api_servers_cel_rules_refuse_what_the_models_refuse(
    kind: str, spec: dict[str, Any], field: str
) -> None:
    """Both sides of principle 4: the CRD's CEL rejects at kubectl apply what validation names."""
    from flywheel.api import crds, loading
    from tests.unit.api import cel

    base = (
        run()
        if kind == "TrainingRun"
        else {"apiVersion": "flywheel.dev/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": {}}
    )
    doc = {**base, "spec": {**base["spec"], **spec, "launcher": "TrainJob"}}
    schema = crds.openapi_schema(kind)
    failures = cel.failures(schema, cel.defaulted(schema, doc))
    assert any(field in f for f in failures), failures
    with pytest.raises(pydantic.ValidationError, match=field.replace(".", r"\.")):
        loading.model_class(doc, "x").model_validate(doc)
    as_pytorchjob = {**doc, "spec": {**doc["spec"], "launcher": "PyTorchJob"}}
    assert cel.failures(schema, cel.defaulted(schema, as_pytorchjob)) == []


def test_selfplayrun_renders_a_valid_fenced_trainjob_with_its_model_claim() -> None:
    from flywheel.api import loading
    from flywheel.controllers import selfplayrun

    [doc] = loading.read_documents(str(upstream.REPO / "examples" / "selfplayrun-distributed.yaml"))
    doc["spec"]["launcher"] = "TrainJob"
    doc["spec"]["policy"]["model"] = "pvc://models/qwen"
    doc["metadata"].update(namespace="ml", uid="uid-2", generation=1)
    policy, _, job = selfplayrun.render_children(doc, SETTINGS)
    pod = v2.assert_valid(job, v2.stock_runtime())
    runtime = chart_runtime()
    v2.assert_valid(_against(job, runtime), runtime)
    assert job["spec"]["trainer"]["image"] == SETTINGS.selfplay_image
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in pod[
        "spec"
    ]["volumes"]
    assert "hostUsers" not in pod["spec"]
