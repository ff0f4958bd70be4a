"""Pod building blocks shared by every workload Flywheel renders: security, volumes, resources, RDMA.

Plain dicts in the core/v1 wire shape (camelCase keys, quantities as strings), so the rendered
objects compare byte-for-byte with what the API server stores and what the upstream typed models
serialize to.

Security baseline (Pod Security "restricted"): non-root uid 1000, read-only root filesystem, no
privilege escalation, every capability dropped, RuntimeDefault seccomp, no service-account token
(workloads report through their termination message, never through the API). Writable places are
explicit emptyDirs: the work directory (also $HOME, for library caches) and /tmp.

RDMA adds exactly one capability, IPC_LOCK, because verbs pin memory (reference section 3.4), and
never `privileged`. Caveat worth knowing when debugging: Kubernetes cannot grant ambient
capabilities, so for a non-root process an added capability is not effective after exec; the
memory-lock limit then comes from the container runtime (GPU nodes run containerd/CRI-O with
LimitMEMLOCK=infinity; check with `ulimit -l` in the pod). IPC_LOCK is still requested so images
that start as root and drop privileges keep working.
"""

from __future__ import annotations

from typing import Any

from flywheel.api import common, contract

GPU_RESOURCE = "nvidia.com/gpu"
RUN_AS_USER = 1000
Dicts = list[dict[str, Any]]
DEFAULT_ROCE_GID_INDEX = 3  # RoCE v2 over IPv4 on most NICs; NCCL < 2.21 defaults to 0 (RoCE v1)


def job_pod_spec(
    container: dict[str, Any], volumes: list[dict[str, Any]], service_account: str | None
) -> dict[str, Any]:
    """The pod spec a run's or a check's job pods share: one container, no API token, no service
    links, the pod security context, the workload ServiceAccount when one is set."""
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "securityContext": pod_security_context(),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    if service_account:
        spec["serviceAccountName"] = service_account
    return spec


def pod_security_context() -> dict[str, Any]:
    """Pod-level: non-root uid/gid 1000, fsGroup so mounted claims are writable, RuntimeDefault seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(*, rdma: bool) -> dict[str, Any]:
    """Container-level hardening; IPC_LOCK only when RDMA needs to pin memory."""
    capabilities: dict[str, Any] = {"drop": ["ALL"]}
    if rdma:
        capabilities["add"] = ["IPC_LOCK"]
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": capabilities,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resource_requirements(resources: common.Resources, rdma: common.Rdma) -> dict[str, Any]:
    """requests == limits (Guaranteed QoS: no CPU throttling surprises, no eviction before others)."""
    amounts: dict[str, str] = {"cpu": resources.cpu, "memory": resources.memory}
    if resources.gpus_per_replica > 0:
        amounts[GPU_RESOURCE] = str(resources.gpus_per_replica)
    if rdma.enabled:
        amounts[rdma.resource_name] = str(rdma.resource_count)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def nccl_env(rdma: common.Rdma) -> list[dict[str, str]]:
    """NCCL environment for an RDMA fabric (reference section 3.5); nothing without RDMA.

    Without RDMA nothing is set on purpose: a pod without an RDMA device gives NCCL no verbs
    device, so it uses TCP sockets on the pod interface by itself, and NCCL_IB_DISABLE=1 would
    silently defeat RDMA that a cluster injects by webhook (the reference calls it a diagnosis
    switch). NCCL's own interface choice skips lo and docker*, which is right for a one-NIC pod.
    """
    if not rdma.enabled:
        return []
    env: dict[str, str] = {
        # Both fabrics run over verbs; 0 overrides any image default that forces sockets.
        "NCCL_IB_DISABLE": "0",
        "NCCL_SOCKET_IFNAME": rdma.socket_interface,
        # torch's Gloo side channel (CPU tensors, barriers) must bind the same interface.
        "GLOO_SOCKET_IFNAME": rdma.socket_interface,
        "NCCL_IB_TIMEOUT": str(rdma.ib_timeout),
        "NCCL_DEBUG": rdma.nccl_debug,
    }
    if rdma.hcas:
        env["NCCL_IB_HCA"] = _hca_list(rdma.hcas)
    if rdma.mode == common.RdmaMode.ROCE:
        gid = rdma.gid_index if rdma.gid_index is not None else DEFAULT_ROCE_GID_INDEX
        env["NCCL_IB_GID_INDEX"] = str(gid)
    if rdma.gdr_level:
        env["NCCL_NET_GDR_LEVEL"] = rdma.gdr_level
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def _hca_list(hcas: list[str]) -> str:
    """NCCL_IB_HCA matches by prefix, so mlx5_1 would also pick mlx5_10..17 on 16-NIC nodes;
    '=' makes the list exact unless the user already wrote a '^' or '=' list."""
    joined = ",".join(h.strip() for h in hcas)
    return joined if joined.startswith(("^", "=")) else f"={joined}"


def multus_annotation(rdma: common.Rdma) -> dict[str, str]:
    """Pod-template annotation attaching one Multus network per rail (short form: a, ns/b)."""
    if not rdma.enabled:
        return {}
    return {contract.MULTUS_ANNOTATION: ",".join(rdma.networks)}


def artifact_storage(artifacts: common.Artifacts) -> tuple[Dicts, Dicts, list[str]]:
    """(volumes, volumeMounts, secret names for envFrom) the artifact store needs.

    pvc://claim/path: the claim is mounted at contract.ARTIFACTS_MOUNT and flywheel.artifacts
    resolves the path below it; multi-node runs need a ReadWriteMany claim (every pod mounts it,
    rank 0 writes). s3://: credentials come from the Secret by reference, never copied anywhere;
    no secret means ambient credentials (IRSA, workload identity). file://: nothing is mounted;
    it is for the local backend and development only, since in a pod it lands on an emptyDir
    that disappears with the pod.
    """
    uri = artifacts.uri
    if uri.startswith("pvc://"):
        claim = uri.removeprefix("pvc://").split("/", 1)[0]
        volume = {"name": "artifacts", "persistentVolumeClaim": {"claimName": claim}}
        mount = {"name": "artifacts", "mountPath": contract.ARTIFACTS_MOUNT}
        return [volume], [mount], []
    if uri.startswith("s3://") and artifacts.credentials_secret:
        return [], [], [artifacts.credentials_secret]
    return [], [], []


def model_storage(model: str, artifacts: common.Artifacts) -> tuple[Dicts, Dicts]:
    """(volumes, volumeMounts) for a pvc://claim/path model: the claim read-only at
    contract.MODELS_MOUNT. When it is the artifacts claim, that volume is mounted a second time
    (read-only) instead of declaring the claim twice. Anything else mounts nothing."""
    if not model.startswith("pvc://"):
        return [], []
    claim = model.removeprefix("pvc://").split("/", 1)[0]
    mount = {"name": "models", "mountPath": contract.MODELS_MOUNT, "readOnly": True}
    if artifacts.uri.startswith(f"pvc://{claim}/") or artifacts.uri == f"pvc://{claim}":
        return [], [{**mount, "name": "artifacts"}]
    return [{"name": "models", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}], [mount]


def base_volumes(config_map: str, shm_size: str) -> tuple[Dicts, Dicts]:
    """(volumes, volumeMounts): config (read-only), /dev/shm in memory, the work dir and /tmp."""
    volumes: Dicts = [
        {"name": "config", "configMap": {"name": config_map}},
        # Container runtimes give /dev/shm 64 MiB; NCCL's SHM transport and DataLoader workers need
        # far more. tmpfs pages count against the pod's memory limit.
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}},
        {"name": "work", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: Dicts = [
        {"name": "config", "mountPath": contract.CONFIG_MOUNT, "readOnly": True},
        {"name": "dshm", "mountPath": contract.SHM_PATH},
        {"name": "work", "mountPath": contract.WORK_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    return volumes, mounts


def tolerations(items: list[common.Toleration]) -> list[dict[str, Any]]:
    return [t.to_dict() for t in items]
