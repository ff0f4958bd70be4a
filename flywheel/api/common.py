"""Building blocks shared by the four kinds: the base model, metadata, conditions and the blocks
that TrainingRun and SelfPlayRun both carry (resources, networking, scheduling, artifacts, runPolicy).

Field docstrings become the CRD descriptions (``kubectl explain``), so they are written for the
person applying a manifest, not for the Python reader.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Literal

import pydantic
from pydantic import Field
from pydantic.alias_generators import to_camel

GROUP = "flywheel.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

Manifest = dict[str, Any]
"""A Kubernetes object as JSON (apiVersion, kind, metadata, spec, status), as the API server and
the local store hold it; declared here once, imported wherever one is passed around."""

# A Kubernetes resource quantity such as "500m", "2", "4Gi".
QUANTITY_PATTERN = r"^([+]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
# RFC 1123 label, the shape of most Kubernetes object names.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class Model(pydantic.BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields rejected, docstrings kept."""

    model_config = pydantic.ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_assignment=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ObjectMeta(pydantic.BaseModel):
    """The part of Kubernetes object metadata a manifest author sets; the rest is kept as is."""

    model_config = pydantic.ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)
    """Name of the resource; children are named after it, so it is a DNS label (max 63)."""
    namespace: str | None = None
    """Namespace; `default` when applied without one."""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    creationTimestamp: str | None = None


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    """One observation of the resource, keyed by `type` (metav1.Condition shape)."""

    type: str
    """Condition type, e.g. Ready, DataValidated, Trained."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = "Reconciling"
    """One CamelCase word a machine can branch on."""
    message: str = ""
    """What a person should know, and what to do about it."""
    last_transition_time: str | None = None
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The metadata.generation this condition was computed for."""


class CommonStatus(Model):
    """Fields every kind's status carries, written only by the operator."""

    observed_generation: int | None = None
    """The metadata.generation the operator last reconciled."""
    conditions: list[Condition] = Field(default_factory=list)
    """Conditions keyed by type; `Ready` is always present (kstatus-compatible)."""
    phase: str | None = None
    """A one-word summary of where the resource is in its life."""
    message: str | None = None
    """The latest message worth a person's attention."""


class Resources(Model):
    """Compute per replica (pod)."""

    replicas: int = Field(default=1, ge=1, le=1024)
    """Pods: 1 is a single-node run (Master only); N adds N-1 Workers."""
    gpus_per_replica: int = Field(default=0, ge=0, le=16)
    """GPUs per pod; one training process per GPU. 0 trains on CPU with gloo."""
    procs_per_replica: int | None = Field(default=None, ge=1, le=64)
    """Processes per pod when training on CPU (default 1). Ignored when gpusPerReplica > 0."""
    cpu: str = Field(default="2", pattern=QUANTITY_PATTERN)
    """CPU request and limit per pod, a Kubernetes quantity."""
    memory: str = Field(default="4Gi", pattern=QUANTITY_PATTERN)
    """Memory request and limit per pod, a Kubernetes quantity."""
    shm_size: str = Field(default="2Gi", pattern=QUANTITY_PATTERN)
    """Size limit of the memory-backed /dev/shm (DataLoader workers and NCCL need it)."""
    image: str | None = None
    """Container image; defaults to the operator's configured workload image."""

    def nproc_per_replica(self) -> int:
        """Processes torchrun starts per pod: one per GPU, else procsPerReplica (default 1)."""
        if self.gpus_per_replica > 0:
            return self.gpus_per_replica
        return self.procs_per_replica or 1


class RdmaMode(enum.StrEnum):
    INFINIBAND = "infiniband"
    ROCE = "roce"


class Rdma(Model):
    """RDMA networking for NCCL (InfiniBand or RoCE) through Multus secondary networks."""

    @pydantic.model_validator(mode="after")
    def _networks_when_enabled(self) -> Rdma:
        if self.enabled and not self.networks:
            raise ValueError(
                "networks must list at least one Multus NetworkAttachmentDefinition when rdma.enabled is true"
            )
        return self

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.enabled || (has(self.networks) && size(self.networks) > 0)",
                    "message": "networks must list at least one Multus NetworkAttachmentDefinition "
                    "when rdma.enabled is true",
                    "fieldPath": ".networks",
                },
            ]
        }
    )

    enabled: bool = False
    """Attach RDMA networks, request the RDMA device and set the NCCL environment."""
    mode: RdmaMode = RdmaMode.INFINIBAND
    """Fabric: infiniband, or roce (RDMA over Converged Ethernet, needs a GID index)."""
    networks: list[str] = Field(default_factory=list)
    """Multus NetworkAttachmentDefinitions (`name` or `namespace/name`), one per rail."""
    resource_name: str = Field(default="rdma/rdma_shared_device_a", min_length=1)
    """Extended resource of the RDMA device plugin (e.g. rdma/rdma_shared_device_a, nvidia.com/hostdev)."""
    resource_count: int = Field(default=1, ge=1, le=64)
    """How many of that resource each pod requests."""
    hcas: list[str] = Field(default_factory=list)
    """HCAs NCCL may use (NCCL_IB_HCA), e.g. mlx5_0, mlx5_1; empty lets NCCL choose."""
    gid_index: int | None = Field(default=None, ge=0, le=255)
    """RoCE GID index (NCCL_IB_GID_INDEX); 3 (RoCE v2 over IPv4) when mode is roce and unset."""
    socket_interface: str = "eth0"
    """Interface for NCCL's bootstrap and TCP fallback (NCCL_SOCKET_IFNAME)."""
    gdr_level: str | None = Field(default=None, pattern=r"^(LOC|PIX|PXB|PHB|SYS|[0-9])$")
    """GPUDirect RDMA level (NCCL_NET_GDR_LEVEL), e.g. PHB; unset leaves NCCL's default."""
    ib_timeout: int = Field(default=22, ge=1, le=31)
    """NCCL_IB_TIMEOUT exponent (4.096us * 2^n)."""
    nccl_debug: Literal["VERSION", "WARN", "INFO", "TRACE"] = "WARN"
    """NCCL_DEBUG; INFO shows which transport NCCL picked (check for silent TCP fallback)."""


class Networking(Model):
    """Pod networking for distributed training."""

    rdma: Rdma = Field(default_factory=Rdma)
    """RDMA (InfiniBand or RoCE) for NCCL between pods."""


class Toleration(Model):
    """A core/v1 Toleration."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class GangScheduler(enum.StrEnum):
    KUEUE = "kueue"
    VOLCANO = "volcano"
    SCHEDULER_PLUGINS = "scheduler-plugins"


class Gang(Model):
    """All-or-nothing scheduling of the job's pods."""

    enabled: bool = False
    """Schedule every pod of the job together or none of them."""
    scheduler: GangScheduler = GangScheduler.KUEUE
    """kueue (needs scheduling.queueName), or volcano / scheduler-plugins (the Training Operator
    must run with --gang-scheduler-name)."""
    min_available: int | None = Field(default=None, ge=1)
    """Pods that must be schedulable together; defaults to all replicas."""
    schedule_timeout_seconds: int | None = Field(default=None, ge=1)
    """Give up gang scheduling after this long (volcano / scheduler-plugins)."""


class Scheduling(Model):
    """Where and when the pods run."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.gang.enabled || self.gang.scheduler != 'kueue' "
                    "|| (has(self.queueName) && size(self.queueName) > 0)",
                    "message": "gang scheduling with kueue needs scheduling.queueName (a Kueue LocalQueue)",
                    "fieldPath": ".queueName",
                }
            ]
        }
    )

    queue_name: str | None = None
    """Kueue LocalQueue; sets the kueue.x-k8s.io/queue-name label on the job."""
    priority_class_name: str | None = None
    """PriorityClass of the pods."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the pods must match."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Taints the pods tolerate (GPU nodes are often tainted)."""
    gang: Gang = Field(default_factory=Gang)
    """Gang scheduling."""

    @pydantic.model_validator(mode="after")
    def _kueue_needs_queue(self) -> Scheduling:
        if self.gang.enabled and self.gang.scheduler == GangScheduler.KUEUE and not self.queue_name:
            raise ValueError("gang scheduling with kueue needs scheduling.queueName (a Kueue LocalQueue)")
        return self


ARTIFACT_URI_PATTERN = (
    r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|pvc://[a-z0-9][-a-z0-9]*(/.*)?|file:///.*)$"
)


class Artifacts(Model):
    """Where checkpoints, models, cards and reports are written."""

    uri: str = Field(default="file:///var/lib/flywheel/artifacts", pattern=ARTIFACT_URI_PATTERN)
    """Artifact store root: s3://bucket/prefix, pvc://claim/path, or file:///path. Left at the
    default: the platform's store on Kubernetes (Helm value artifacts.uri; refused when there is
    none, a path in the pod is lost with it), <home>/artifacts with `flywheel run`."""
    credentials_secret: str | None = None
    """Secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and optionally AWS_ENDPOINT_URL)
    for s3://; mounted as environment, never copied into status or events."""


def pod_scratch_problem(uri: str) -> str | None:
    """Why `uri` cannot hold a pod's artifacts on Kubernetes, or None: a file:// path is inside the
    pod, deleted with it (flywheel.controllers.artifact_store refuses it; `flywheel validate
    --target kubernetes` says so first)."""
    if not uri.startswith("file://"):
        return None
    return (
        f"spec.artifacts.uri: {uri} is a path inside the pod, deleted with it: models and checkpoints "
        "written there are lost. Set spec.artifacts.uri to s3://bucket/prefix (with "
        "spec.artifacts.credentialsSecret) or pvc://claim/path, or install the chart with "
        "artifacts.uri set so the operator supplies the store"
    )


class RestartPolicy(enum.StrEnum):
    ON_FAILURE = "OnFailure"
    EXIT_CODE = "ExitCode"
    NEVER = "Never"


class RunPolicy(Model):
    """Job-level limits, passed to the PyTorchJob's runPolicy."""

    backoff_limit: int | None = Field(default=3, ge=0)
    """Pod failures tolerated job-wide before the run fails."""
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """Fail the run when it has been active this long."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    """Delete the job (not the TrainingRun or its artifacts) this long after it finished."""
    restart_policy: RestartPolicy = RestartPolicy.EXIT_CODE
    """ExitCode retries signals and OOM (exit >= 128) and fails fast on Python errors."""


class Resource(pydantic.BaseModel):
    """Envelope of a Flywheel resource: apiVersion, kind, metadata, spec, status."""

    model_config = pydantic.ConfigDict(
        populate_by_name=True, extra="forbid", use_attribute_docstrings=True, validate_assignment=True
    )

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    SHORT_NAMES: ClassVar[tuple[str, ...]]

    api_version: Literal["flywheel.dev/v1alpha1"] = Field(default="flywheel.dev/v1alpha1", alias="apiVersion")
    metadata: ObjectMeta

    def to_manifest(self, *, with_status: bool = False) -> dict[str, Any]:
        """The manifest to `kubectl apply`: apiVersion, kind, metadata, spec (and status if asked)."""
        out: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": self.KIND,
            "metadata": self.metadata.model_dump(exclude_none=True, mode="json"),
        }
        for key in ("labels", "annotations"):
            if not out["metadata"].get(key):
                out["metadata"].pop(key, None)
        out["spec"] = self.spec.to_dict()  # type: ignore[attr-defined]
        status = getattr(self, "status", None)
        if with_status and status is not None:
            out["status"] = status.to_dict()
        return out

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"
