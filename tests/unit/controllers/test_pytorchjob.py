"""render_job: every rendered PyTorchJob passes the upstream CRD schema, the operator's webhook rules
and the SDK's typed models; RDMA, gang scheduling, storage and security land where the reference
says. No cluster or GPU is involved: these are the manifests, checked against upstream definitions."""

from __future__ import annotations

import copy
import json
from typing import Any

import pydantic
import pytest

from flywheel.api import contract
from flywheel.controllers import pytorchjob, settings, trainingrun
from flywheel.training import config as training_config
from tests.unit.controllers import upstream

SETTINGS = settings.Settings()


def render(manifest: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    config_map, job = trainingrun.render_children(manifest, SETTINGS)
    return job, config_map


def container(job: dict[str, Any], rtype: str = "Master") -> dict[str, Any]:
    [c] = job["spec"]["pytorchReplicaSpecs"][rtype]["template"]["spec"]["containers"]
    return c


def env(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(job)["env"]}


RDMA = {
    "off": {},
    "infiniband": {
        "enabled": True,
        "mode": "infiniband",
        "networks": ["ib-rail-0", "ml/ib-rail-1"],
        "hcas": ["mlx5_0", "mlx5_1"],
        "gdrLevel": "PHB",
    },
    "roce": {"enabled": True, "mode": "roce", "networks": ["roce-0"], "resourceName": "nvidia.com/hostdev"},
}


@pytest.mark.parametrize("gpus", [0, 1, 8])
@pytest.mark.parametrize("replicas", [1, 2, 4])
@pytest.mark.parametrize("rdma", sorted(RDMA))
def test_matrix_is_valid_upstream_and_shaped_as_asked(rdma: str, replicas: int, gpus: int) -> None:
    manifest = upstream.trainingrun(
        resources={"replicas": replicas, "gpusPerReplica": gpus, "shmSize": "8Gi"},
        networking={"rdma": RDMA[rdma]},
    )
    if rdma != "off" and gpus == 0:
        # RDMA carries NCCL traffic; gloo on CPU cannot use it, so the API refuses the combination.
        with pytest.raises(pydantic.ValidationError, match="gpusPerReplica"):
            render(manifest)
        return
    job, config_map = render(manifest)
    upstream.assert_upstream_valid(job)
    upstream.validate_core(config_map)

    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1
    assert specs.get("Worker", {}).get("replicas") == (replicas - 1 if replicas > 1 else None)
    if replicas > 1:
        assert specs["Worker"]["template"] == specs["Master"]["template"]
        assert specs["Worker"]["template"] is not specs["Master"]["template"]
    assert job["spec"]["nprocPerNode"] == str(gpus or 1)
    c = container(job)
    assert c["command"] == ["torchrun", "-m", contract.TRAINER_MODULE]
    limits = c["resources"]["limits"]
    assert c["resources"]["requests"] == limits
    assert limits.get("nvidia.com/gpu") == (str(gpus) if gpus else None)

    pod = specs["Master"]["template"]
    nccl = {k: v for k, v in env(job).items() if k.startswith("NCCL_")}
    caps = c["securityContext"]["capabilities"]
    if rdma == "off":
        assert nccl == {}
        assert "add" not in caps
        assert contract.MULTUS_ANNOTATION not in pod["metadata"]["annotations"]
        return
    spec_rdma = RDMA[rdma]
    assert caps == {"drop": ["ALL"], "add": ["IPC_LOCK"]}
    assert c["securityContext"]["privileged"] is False
    assert pod["metadata"]["annotations"][contract.MULTUS_ANNOTATION] == ",".join(spec_rdma["networks"])
    assert limits[spec_rdma.get("resourceName", "rdma/rdma_shared_device_a")] == "1"
    assert nccl["NCCL_IB_DISABLE"] == "0"
    assert nccl["NCCL_SOCKET_IFNAME"] == "eth0"
    assert nccl["NCCL_IB_TIMEOUT"] == "22"
    assert nccl["NCCL_DEBUG"] == "WARN"
    if rdma == "infiniband":
        assert nccl["NCCL_IB_HCA"] == "=mlx5_0,mlx5_1"  # exact: mlx5_1 must not match mlx5_10
        assert nccl["NCCL_NET_GDR_LEVEL"] == "PHB"
        assert "NCCL_IB_GID_INDEX" not in nccl
    else:
        assert nccl["NCCL_IB_GID_INDEX"] == "3"
        assert "NCCL_IB_HCA" not in nccl and "NCCL_NET_GDR_LEVEL" not in nccl


def test_validators_reject_what_upstream_rejects() -> None:
    """The checks above can fail: each mutation is something the API server or webhook refuses."""
    job, _ = render(upstream.trainingrun(resources={"replicas": 2}))
    bad = copy.deepcopy(job)
    bad["spec"]["nprocPerNode"] = 8
    assert upstream.schema_errors(bad)
    assert upstream.sdk_round_trip(bad) != bad  # the SDK coerces the int to "8"
    bad = copy.deepcopy(job)
    bad["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = 2
    assert upstream.webhook_errors(bad) == ["Master.replicas must be set to 1"]
    bad = copy.deepcopy(job)
    bad["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["name"] = "trainer"
    assert upstream.webhook_errors(bad) == ["Worker: no container named pytorch"]
    bad = copy.deepcopy(job)
    container(bad)["gpus"] = 1
    assert upstream.sdk_round_trip(bad) != bad
    bad = copy.deepcopy(job)
    bad["metadata"]["name"] = "1abc"
    assert upstream.webhook_errors(bad)


def test_pods_are_hardened_and_report_through_the_termination_log() -> None:
    job, config_map = render(upstream.trainingrun())
    c = container(job)
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert "restartPolicy" not in pod  # on the replica spec, where the operator reads it
    assert job["spec"]["pytorchReplicaSpecs"]["Master"]["restartPolicy"] == "ExitCode"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert volumes[mounts[contract.WORK_DIR]]["emptyDir"] == {}
    assert volumes[mounts[contract.CONFIG_MOUNT]]["configMap"]["name"] == config_map["metadata"]["name"]
    assert env(job)[contract.ENV_CONFIG] == contract.CONFIG_PATH
    assert env(job)[contract.ENV_RUN_NAME] == "iris" and env(job)[contract.ENV_NAMESPACE] == "ml"
    assert env(job)[contract.ENV_TERMINATION_LOG] == contract.TERMINATION_LOG
    # The config is what the trainer parses (its own typed Config), every default filled in.
    config = training_config.Config.model_validate(json.loads(config_map["data"][contract.CONFIG_FILE]))
    assert config.spec.training.epochs == 10
    assert (config.name, config.namespace) == ("iris", "ml")
    assert config.artifacts_uri == "file:///var/lib/flywheel/artifacts/ml/trainingruns/iris"
    assert config_map["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_run_policy_and_restart_policy_pass_through() -> None:
    job, _ = render(
        upstream.trainingrun(
            runPolicy={
                "backoffLimit": 5,
                "activeDeadlineSeconds": 3600,
                "ttlSecondsAfterFinished": 60,
                "restartPolicy": "OnFailure",
            },
            resources={"replicas": 3},
        )
    )
    assert job["spec"]["runPolicy"] == {
        "cleanPodPolicy": "None",
        "backoffLimit": 5,
        "activeDeadlineSeconds": 3600,
        "ttlSecondsAfterFinished": 60,
    }
    assert {s["restartPolicy"] for s in job["spec"]["pytorchReplicaSpecs"].values()} == {"OnFailure"}


@pytest.mark.parametrize(
    ("uri", "secret", "volume", "env_from"),
    [
        ("pvc://team-artifacts/runs", None, {"claimName": "team-artifacts"}, None),
        ("s3://bucket/prefix", "s3-creds", None, [{"secretRef": {"name": "s3-creds"}}]),
        ("s3://bucket/prefix", None, None, None),  # ambient credentials (IRSA, workload identity)
        ("file:///var/lib/flywheel/artifacts", None, None, None),  # local/dev only
    ],
)
def test_artifact_storage(uri: str, secret: str | None, volume: Any, env_from: Any) -> None:
    artifacts = {"uri": uri} | ({"credentialsSecret": secret} if secret else {})
    job, _ = render(upstream.trainingrun(artifacts=artifacts))
    upstream.assert_upstream_valid(job)
    c = container(job)
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    claims = [v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ([volume] if volume else [])
    if volume:
        assert {"name": "artifacts", "mountPath": contract.ARTIFACTS_MOUNT} in c["volumeMounts"]
    assert c.get("envFrom") == env_from
    assert env(job)[contract.ENV_ARTIFACTS_URI] == uri


def test_data_remote_credentials_come_by_reference() -> None:
    manifest = upstream.trainingrun()
    manifest["spec"]["data"]["credentialsSecret"] = "dvc-creds"
    job, _ = render(manifest)
    assert container(job)["envFrom"] == [{"secretRef": {"name": "dvc-creds"}}]


def test_kueue_queue_label_and_pod_placement() -> None:
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    job, _ = render(
        upstream.trainingrun(
            scheduling={
                "queueName": "team-a",
                "priorityClassName": "high",
                "nodeSelector": {"gpu": "h100"},
                "tolerations": [toleration],
                "gang": {"enabled": True, "scheduler": "kueue"},
            }
        )
    )
    upstream.assert_upstream_valid(job)
    assert job["metadata"]["labels"][contract.KUEUE_QUEUE_LABEL] == "team-a"
    assert "schedulingPolicy" not in job["spec"]["runPolicy"]  # Kueue admits the whole job itself
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["priorityClassName"] == "high"
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["tolerations"] == [toleration]
    assert "schedulerName" not in pod


def test_volcano_gang_uses_scheduling_policy_not_kueue() -> None:
    job, _ = render(
        upstream.trainingrun(
            resources={"replicas": 4, "gpusPerReplica": 8},
            scheduling={
                "queueName": "research",
                "priorityClassName": "high",
                "gang": {"enabled": True, "scheduler": "volcano", "scheduleTimeoutSeconds": 600},
            },
        )
    )
    upstream.assert_upstream_valid(job)
    assert job["spec"]["runPolicy"]["schedulingPolicy"] == {
        "minAvailable": 4,
        "scheduleTimeoutSeconds": 600,
        "queue": "research",
        "priorityClass": "high",
    }
    assert contract.KUEUE_QUEUE_LABEL not in job["metadata"]["labels"]
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["schedulerName"] == "volcano"


def test_scheduler_plugins_gang_leaves_scheduler_name_to_the_operator() -> None:
    job, _ = render(
        upstream.trainingrun(
            resources={"replicas": 4},
            scheduling={"gang": {"enabled": True, "scheduler": "scheduler-plugins", "minAvailable": 3}},
        )
    )
    upstream.assert_upstream_valid(job)
    assert job["spec"]["runPolicy"]["schedulingPolicy"] == {"minAvailable": 3}
    assert "schedulerName" not in job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]


@pytest.mark.parametrize(
    ("owner", "expected"),
    [("iris", "iris"), ("2024-iris", "run-2024-iris"), ("a" * 63, None)],
)
def test_job_name_is_dns_1035_and_leaves_room_for_pod_names(owner: str, expected: str | None) -> None:
    name = pytorchjob.job_name(owner)
    assert upstream.DNS_1035.match(name)
    assert len(f"{name}-worker-1022") <= 63
    assert name == pytorchjob.job_name(owner)
    if expected:
        assert name == expected
    job, _ = render(upstream.trainingrun(name=owner))
    assert job["metadata"]["name"] == name
    assert upstream.webhook_errors(job) == []


def test_same_spec_same_manifests() -> None:
    manifest = upstream.trainingrun(resources={"replicas": 2, "gpusPerReplica": 1})
    assert render(manifest) == render(copy.deepcopy(manifest))
    later = copy.deepcopy(manifest)
    later["metadata"]["generation"] = 2
    job, _ = render(later)
    assert job["metadata"]["annotations"][pytorchjob.ANNOTATION_GENERATION] == "2"


def test_replica_templates_do_not_alias() -> None:
    job, _ = render(upstream.trainingrun(resources={"replicas": 3}))
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["template"] == specs["Worker"]["template"]
    container(job, "Worker")["env"].append({"name": "X", "value": "1"})
    assert specs["Master"]["template"] != specs["Worker"]["template"]


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"b": [], "a": {}, "c": None, "d": "two\nlines", "e": 1.5},
        {"spec": {"z": [1, 2.5, {"q": [True, None]}], "a": {"\u00e9": "\u00fc"}}, "name": "n"},
        {"k": {"2": 1, "10": [[]]}, "n": float("nan"), "i": [float("inf")]},
    ],
)
def test_config_text_is_json_dumps_byte_for_byte(config: dict[str, Any]) -> None:
    expected = json.dumps(config, indent=2, sort_keys=True)
    assert pytorchjob.config_text(config) == expected
    assert pytorchjob.config_text(copy.deepcopy(config)) == expected  # from the cache


def test_config_map_text_is_the_indented_sorted_config() -> None:
    manifest = upstream.trainingrun(resources={"replicas": 2})
    for name in ("first", "second"):  # the second renders the shared spec from the cache
        manifest["metadata"]["name"] = name
        _, config_map = render(manifest)
        text = config_map["data"][contract.CONFIG_FILE]
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True)
        assert json.loads(text)["name"] == name


def test_image_from_spec_else_settings() -> None:
    job, _ = render(upstream.trainingrun())
    assert container(job)["image"] == SETTINGS.trainer_image
    job, _ = render(upstream.trainingrun(resources={"image": "registry.local/trainer:dev"}))
    assert container(job)["image"] == "registry.local/trainer:dev"


@pytest.mark.parametrize(
    ("conditions", "phase", "reason", "started"),
    [
        ([], "Pending", "JobCreated", False),
        ([("Created", "True")], "Pending", "JobCreated", False),
        ([("Created", "True"), ("Suspended", "True")], "Suspended", "JobSuspended", False),
        ([("Created", "True"), ("Running", "True")], "Running", "JobRunning", True),
        (
            [("Created", "True"), ("Running", "False"), ("Restarting", "True")],
            "Running",
            "JobRestarting",
            True,
        ),
        (
            [("Created", "True"), ("Running", "False"), ("Suspended", "True")],
            "Suspended",
            "JobSuspended",
            True,
        ),
        ([("Created", "True"), ("Succeeded", "True"), ("Running", "False")], "Succeeded", "Succeeded", True),
        ([("Created", "True"), ("Running", "False"), ("Failed", "True")], "Failed", "Failed", True),
    ],
)
def test_job_state_from_conditions(
    conditions: list[tuple[str, str]], phase: str, reason: str, started: bool
) -> None:
    job = {"status": {"conditions": [{"type": t, "status": s, "message": f"{t}!"} for t, s in conditions]}}
    state = pytorchjob.job_state(job)
    assert (state.phase, state.reason, state.started) == (phase, reason, started)
    assert state.terminal == (phase in ("Succeeded", "Failed"))


def test_termination_message_current_or_last_state() -> None:
    def pod(**statuses: Any) -> dict[str, Any]:
        return {
            "status": {
                "containerStatuses": [{"name": "sidecar", **statuses}, {"name": "pytorch", **statuses}]
            }
        }

    assert pytorchjob.termination_message(pod(state={"terminated": {"message": "{}"}})) == "{}"
    restarted = pod(state={"running": {}}, lastState={"terminated": {"message": "x"}})
    assert pytorchjob.termination_message(restarted) == "x"
    assert pytorchjob.termination_message(pod(state={"running": {}})) is None
    assert pytorchjob.termination_message(None) is None
