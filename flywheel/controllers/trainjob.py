"""Kubeflow Trainer v2 TrainJob (trainer.kubeflow.org/v1alpha1): render one for a run, read it back.

The second launcher beside pytorchjob.py (spec.launcher: TrainJob), with the same inputs and the
same pod: the pod template is pytorchjob.pod_template's, mapped onto the fields Trainer v2.3
offers. Facts from the v2.3.0 CRDs (tests/upstream/trainer-v2.3.0/):

- The job runs against a runtime (`spec.runtimeRef`, a ClusterTrainingRuntime: the stock
  `torch-distributed`, or the `flywheel-torch` one the chart can install). The runtime owns the
  JobSet: its replicated job `node` runs container `node`, one pod per node, and its torch plugin
  injects the PET_* variables torchrun reads, as the Training Operator does for a PyTorchJob.
- `spec.trainer` carries what is per run: image, command, env, numNodes, numProcPerNode and
  resourcesPerNode (GPUs and RDMA devices go there). Env of container `node` can only be set
  here, so the NCCL presets and Flywheel's contract variables are trainer env. There is no
  envFrom: a credentials Secret is exposed key by key (SECRET_KEYS, each optional).
- Everything else per pod goes through one `spec.runtimePatches` entry (manager
  flywheel.dev/operator): pod labels and annotations (Multus), volumes, the `node` container's
  securityContext (IPC_LOCK for RDMA) and mounts, the pod securityContext, nodeSelector,
  tolerations, serviceAccountName. v2.3 patches have no priorityClassName, hostUsers,
  imagePullPolicy, ports, terminationMessagePath, automountServiceAccountToken or
  enableServiceLinks: the first two are refused by validation (flywheel.api.launcher), the rest
  are the runtime's (flywheel-torch sets them like a PyTorchJob pod; with torch-distributed they
  take Kubernetes' defaults, and the default terminationMessagePath is contract.TERMINATION_LOG).
- Restarts (JobSet failurePolicy), retention and gang scheduling (podGroupPolicy) are the
  runtime's too. Kueue takes the TrainJob by its queue-name label, a Volcano queue is a TrainJob
  annotation; activeDeadlineSeconds is the TrainJob's own.
- Names: the job's name is pytorchjob.job_name (<= 51: JobSet hostnames are
  `<job>-node-0-<index>`, within 63 for 1024 nodes). Node pods are Job pods with a random suffix
  (`<job>-node-0-<index>-xxxxx`), so rank 0 is observed by labels (RANK0_SELECTOR, what JobSet and
  the Job controller put on every pod), not by name: the observation is a PodList.
"""

from __future__ import annotations

from typing import Any

from flywheel.api import common, conditions
from flywheel.controllers import plans, podspec, pytorchjob, settings

API_VERSION = "trainer.kubeflow.org/v1alpha1"
KIND = "TrainJob"
PLURAL = "trainjobs"
RUNTIME_KIND = "ClusterTrainingRuntime"
RUNTIME_GROUP = "trainer.kubeflow.org"
NODE = "node"
"""The replicated job and its trainer container in torch runtimes (the stock ones and Flywheel's)."""
CONTAINER = NODE
PATCH_MANAGER = f"{common.GROUP}/operator"
VOLCANO_QUEUE_ANNOTATION = "scheduling.volcano.sh/queue-name"
LABEL_JOBSET = "jobset.sigs.k8s.io/jobset-name"
LABEL_REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
LABEL_JOB_INDEX = "jobset.sigs.k8s.io/job-index"
LABEL_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
SECRET_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
)
"""The credential variables Flywheel's workloads (boto3 for s3:// artifacts, DVC remotes) read."""

job_name = pytorchjob.job_name
config_map_name = pytorchjob.config_map_name


def rank0_pod_name(name: str) -> str:
    """The observation key of the rank 0 pod (its real name adds a random suffix)."""
    return f"{name}-{NODE}-0-0"


def rank0_selector(name: str) -> str:
    """Labels of the node-rank-0 pod of TrainJob `name` (JobSet's and the indexed Job's)."""
    return (
        f"{LABEL_JOBSET}={name},{LABEL_REPLICATED_JOB}={NODE},{LABEL_JOB_INDEX}=0,{LABEL_COMPLETION_INDEX}=0"
    )


def rank0_pod_ref(name: str, namespace: str) -> plans.Ref:
    return plans.Ref("v1", "Pod", rank0_pod_name(name), namespace, selector=rank0_selector(name))


def render_job(
    owner: plans.Manifest,
    *,
    resources: common.Resources,
    networking: common.Networking,
    scheduling: common.Scheduling,
    run_policy: common.RunPolicy,
    artifacts: common.Artifacts,
    image: str,
    module: str,
    config: dict[str, Any],
    component: str,
    settings: settings.Settings,
    secrets: tuple[str, ...] = (),
    storage: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], []),
    env: tuple[tuple[str, str], ...] = (),
) -> tuple[plans.Manifest, plans.Manifest]:
    """(TrainJob, ConfigMap) for `owner`, from the same inputs as pytorchjob.render_job."""
    meta = owner["metadata"]
    name = job_name(meta["name"])
    cm_name = config_map_name(meta["name"])
    config_map = pytorchjob.render_config_map(owner, component, config)
    template = pytorchjob.pod_template(
        owner,
        resources=resources,
        networking=networking,
        scheduling=scheduling,
        artifacts=artifacts,
        image=image,
        module=module,
        config=config,
        config_map=cm_name,
        component=component,
        settings=settings,
        secrets=(),  # no envFrom on a TrainJob: the Secrets go key by key (_merged_env)
        storage=storage,
        env=env,
    )
    pod = template["spec"]
    (container,) = pod["containers"]
    art_secrets = podspec.artifact_storage(artifacts)[2]
    trainer: dict[str, Any] = {
        "image": container["image"],
        "command": container["command"],
        "env": _merged_env(container["env"], (*art_secrets, *secrets)),
        "numNodes": resources.replicas,
        "numProcPerNode": resources.nproc_per_replica(),
        "resourcesPerNode": container["resources"],
    }
    node: dict[str, Any] = {"name": NODE, "securityContext": container["securityContext"]}
    node["volumeMounts"] = container["volumeMounts"]
    pod_patch: dict[str, Any] = {
        "containers": [node],
        "volumes": pod["volumes"],
        "securityContext": pod["securityContext"],
    }
    for key in ("serviceAccountName", "nodeSelector", "tolerations"):
        if key in pod:
            pod_patch[key] = pod[key]
    replicated = {
        "name": NODE,
        "template": {"spec": {"template": {"metadata": template["metadata"], "spec": pod_patch}}},
    }
    patch = {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [replicated]}}},
    }
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": RUNTIME_GROUP, "kind": RUNTIME_KIND, "name": settings.trainjob_runtime},
        "trainer": trainer,
        "runtimePatches": [patch],
    }
    if run_policy.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = run_policy.active_deadline_seconds
    metadata = pytorchjob.job_metadata(owner, name, component, scheduling)
    gang = scheduling.gang
    if gang.enabled and gang.scheduler == common.GangScheduler.VOLCANO and scheduling.queue_name:
        metadata["annotations"][VOLCANO_QUEUE_ANNOTATION] = scheduling.queue_name
    job = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
    return job, config_map


def _merged_env(env: list[dict[str, Any]], secrets: tuple[str, ...]) -> list[dict[str, Any]]:
    """`env` plus every SECRET_KEYS variable from each Secret (optional: a Secret holds some of
    them). A later Secret wins a name, as with envFrom; the contract variables are never shadowed."""
    by_name: dict[str, dict[str, Any]] = {}
    for secret in secrets:
        for key in SECRET_KEYS:
            ref = {"name": secret, "key": key, "optional": True}
            by_name[key] = {"name": key, "valueFrom": {"secretKeyRef": ref}}
    taken = {item["name"] for item in env}
    return env + [item for name, item in by_name.items() if name not in taken]


# --- Reading a job back ---------------------------------------------------------------------------


def job_state(job: plans.Manifest) -> pytorchjob.JobState:
    """A TrainJob's status in the JobState the run controllers consume (pytorchjob.job_state's).

    v2.3 conditions: Created (the JobSet exists), Suspended (Kueue holds it, or spec.suspend),
    Complete and Failed (terminal). There is no Running condition: a job runs when its child
    Jobs have active pods (status.jobsStatus), and has started once any pod ran at all.
    The job carries no start or completion time: the Created and terminal conditions' transition
    times stand in for them.
    """
    status = job.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}

    def true(type_: str) -> dict[str, Any] | None:
        cond = conds.get(type_)
        return cond if cond and cond.get("status") == "True" else None

    counts = {"active": 0, "ready": 0, "succeeded": 0, "failed": 0}
    for child in status.get("jobsStatus") or []:
        for key in counts:
            counts[key] += int((child or {}).get(key) or 0)
    created = conds.get("Created") or {}
    terminal = true("Failed") or true("Complete")
    started = terminal is not None or any(counts.values())
    start_time = created.get("lastTransitionTime")
    if terminal is not None:
        failed = terminal is conds.get("Failed")
        phase, reason = (
            (conditions.FAILED, conditions.R_FAILED)
            if failed
            else (conditions.SUCCEEDED, conditions.R_SUCCEEDED)
        )
        message = str(terminal.get("message") or f"TrainJob {terminal['type']}")
        return pytorchjob.JobState(
            phase, reason, message, True, start_time, terminal.get("lastTransitionTime")
        )
    if suspended := true("Suspended"):
        message = str(suspended.get("message") or "TrainJob suspended")
        return pytorchjob.JobState(
            conditions.SUSPENDED, conditions.R_JOB_SUSPENDED, message, started, start_time
        )
    if counts["active"]:
        message = f"TrainJob running: {counts['active']} node pod(s) active, {counts['ready']} ready"
        return pytorchjob.JobState(conditions.RUNNING, conditions.R_JOB_RUNNING, message, True, start_time)
    if true("Created"):
        message = "TrainJob created; waiting for its node pods"
    else:
        message = "waiting for the Kubeflow Trainer controller to create the TrainJob's JobSet"
    return pytorchjob.JobState(conditions.PENDING, conditions.R_JOB_CREATED, message, started, start_time)


def _newest_first(pods: plans.Manifest | None) -> list[plans.Manifest]:
    items = [p for p in (pods or {}).get("items") or [] if isinstance(p, dict)]
    return sorted(
        items, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), reverse=True
    )


def rank0_pod(observation: plans.Manifest | None) -> plans.Manifest | None:
    """The current rank 0 pod from the observed PodList (rank0_pod_ref): the newest one."""
    items = _newest_first(observation)
    return items[0] if items else None


def termination_message(pods: plans.Manifest | None) -> str | None:
    """Rank 0's result from the observed PodList (rank0_pod_ref): the newest pod that left a
    termination message in container `node` (a JobSet restart leaves older attempts behind)."""
    for pod in _newest_first(pods):
        message = _node_message(pod)
        if message:
            return message
    return None


def _node_message(pod: plans.Manifest) -> str | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") != NODE:
            continue
        for key in ("state", "lastState"):
            message = ((cs.get(key) or {}).get("terminated") or {}).get("message")
            if message:
                return str(message)
    return None
