"""Deployment (deployments.flywheel.dev, short name mdep): serve a champion and a challenger."""

from __future__ import annotations

import enum
from typing import ClassVar, Literal

import pydantic
from pydantic import Field

from flywheel.api import common


class ModelRef(common.Model):
    """A model to serve: from a TrainingRun, or a model directory URI."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.fromTrainingRun) != has(self.uri)",
                    "message": "set exactly one of fromTrainingRun or uri",
                }
            ]
        }
    )

    from_training_run: str | None = Field(default=None, pattern=common.DNS_LABEL_PATTERN)
    """Name of a Succeeded TrainingRun in the same namespace; its status gives the model."""
    uri: str | None = Field(default=None, pattern=common.ARTIFACT_URI_PATTERN)
    """Model directory (holding model_card.json) in the artifact store."""
    quantized: bool = True
    """Serve the int8 model (falls back to fp32 when the run exported none)."""

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> ModelRef:
        if (self.from_training_run is None) == (self.uri is None):
            raise ValueError("set exactly one of fromTrainingRun or uri")
        return self


class TrafficMode(enum.StrEnum):
    CANARY = "canary"
    SHADOW = "shadow"


class Traffic(common.Model):
    """How requests reach the challenger."""

    mode: TrafficMode = TrafficMode.CANARY
    """canary: challengerPercent of requests are answered by the challenger. shadow: the champion
    answers every request; the challenger scores a copy off the response path."""
    challenger_percent: int = Field(default=0, ge=0, le=100)
    """Share of requests routed to the challenger (canary)."""
    sticky_header: str = "x-request-id"
    """Requests with this header are routed by its hash, so a caller keeps its model."""


class Autoscaling(common.Model):
    """HorizontalPodAutoscaler settings."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "minReplicas must be <= maxReplicas",
                }
            ]
        }
    )

    enabled: bool = False
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=4, ge=1)
    target_cpu_utilization: int = Field(default=70, ge=1, le=100)
    """Average CPU utilisation (percent of request) the HPA aims for."""

    @pydantic.model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be <= maxReplicas")
        return self


class Batching(common.Model):
    """BentoML adaptive batching."""

    enabled: bool = True
    max_batch_size: int = Field(default=64, ge=1, le=4096)
    """Largest batch the dispatcher forms."""
    max_latency_ms: int = Field(default=1000, ge=1, le=60000)
    # One line in the CRD's description, hence the backslashes.
    """Longest a request may wait in the batch queue before the server sheds it with a 503. \
Smaller sheds sooner under bursts (low p99, callers retry); larger serves more of a burst at the \
cost of queueing delay. 1000 ms rides out bursts and CPU contention on small pods (20 ms shed ~25% \
of requests at modest load on 2 cores) yet pushes back long before clients time out (BentoML's \
own default is 60000 ms)."""


class Logging(common.Model):
    """Request and prediction logging (Parquet in the artifact store, read by DriftMonitor)."""

    enabled: bool = True
    sample_rate: float = Field(default=1.0, ge=0, le=1)
    """Fraction of requests logged."""
    sink: str | None = Field(default=None, pattern=common.ARTIFACT_URI_PATTERN)
    """Where the Parquet files go; <artifacts.uri>/traffic/<name> when unset."""
    flush_rows: int = Field(default=1000, ge=1)
    """Write a file when this many rows are buffered..."""
    flush_seconds: float = Field(default=5.0, gt=0)
    """...or this long after the first buffered row."""


class ServingResources(common.Model):
    """Compute per serving pod."""

    cpu: str = Field(default="1", pattern=common.QUANTITY_PATTERN)
    memory: str = Field(default="1Gi", pattern=common.QUANTITY_PATTERN)
    image: str | None = None
    """Serving image; defaults to the operator's configured serving image."""
    workers: int = Field(default=1, ge=1, le=64)
    """BentoML workers per pod (each holds a copy of the models)."""


class DeploymentSpec(common.Model):
    """Desired state of a Deployment."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.challenger) || self.traffic.mode == 'shadow' "
                    "|| self.traffic.challengerPercent > 0",
                    "message": "a challenger needs traffic: "
                    "set traffic.challengerPercent > 0 or traffic.mode: shadow",
                    "fieldPath": ".traffic",
                },
                {
                    "rule": "has(self.challenger) || self.traffic.challengerPercent == 0",
                    "message": "traffic.challengerPercent is set but there is no challenger",
                    "fieldPath": ".traffic.challengerPercent",
                },
            ]
        }
    )

    champion: ModelRef
    """The model that answers requests."""
    challenger: ModelRef | None = None
    """A candidate that gets canary or shadow traffic."""
    traffic: Traffic = Field(default_factory=Traffic)
    replicas: int = Field(default=1, ge=0, le=1000)
    """Pods when autoscaling is off."""
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    batching: Batching = Field(default_factory=Batching)
    logging: Logging = Field(default_factory=Logging)
    resources: ServingResources = Field(default_factory=ServingResources)
    artifacts: common.Artifacts = Field(default_factory=common.Artifacts)
    """Artifact store (models are read from it, traffic logs written to it)."""
    port: int = Field(default=3000, ge=1024, le=65535)
    """HTTP port of the model server (on the local backend, the port on 127.0.0.1; it must be free)."""

    @pydantic.model_validator(mode="after")
    def _traffic_matches(self) -> DeploymentSpec:
        canary = self.traffic.mode == TrafficMode.CANARY
        if self.challenger is not None and canary and self.traffic.challenger_percent == 0:
            raise ValueError(
                "a challenger needs traffic: set traffic.challengerPercent > 0 or traffic.mode: shadow"
            )
        if self.challenger is None and self.traffic.challenger_percent > 0:
            raise ValueError("traffic.challengerPercent is set but there is no challenger")
        return self


class DeploymentStatus(common.CommonStatus):
    """Observed state of a Deployment."""

    endpoint: str | None = None
    """URL of the service."""
    replicas: int | None = None
    ready_replicas: int | None = None
    champion_version: str | None = None
    challenger_version: str | None = None
    champion_uri: str | None = None
    challenger_uri: str | None = None
    rollback_target: str | None = None
    """The champion before the last promotion (a model URI)."""
    served_champion_uri: str | None = None
    """The champion the ready pods serve (championUri is the wanted one): the wanted champion once
    every wanted replica of the current pod template is ready, until then the one served before;
    absent while no pod is ready."""
    served_champion_version: str | None = None


class Deployment(common.Resource):
    """Serve a quantized champion (and challenger) with BentoML. Shares its plural with apps/v1: say
    deployments.flywheel.dev or mdep."""

    KIND: ClassVar[str] = "Deployment"
    PLURAL: ClassVar[str] = "deployments"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("mdep",)

    kind: Literal["Deployment"] = "Deployment"
    spec: DeploymentSpec
    status: DeploymentStatus | None = None


ModelSource = Literal["fromTrainingRun", "uri"]
