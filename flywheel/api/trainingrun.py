"""TrainingRun: versioned data, a validation gate, distributed training, an fp32 and a quantized model."""

from __future__ import annotations

import enum
import math
from typing import Any, ClassVar, Literal

import pydantic
from pydantic import Field

from flywheel.api import common
from flywheel.api import launcher as launchers


class Expectation(common.Model):
    """One Great Expectations expectation, by its type name and keyword arguments."""

    type: str = Field(pattern=r"^expect_[a-z0-9_]+$")
    """GX expectation type, e.g. expect_column_values_to_be_between."""
    kwargs: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Its keyword arguments, e.g. {column: age, min_value: 0, max_value: 120}."""


class Validation(common.Model):
    """The data gate: run before any training; a failure ends the run with nothing trained."""

    enabled: bool = True
    """Run the gate (schema expectations derived from model.features and model.target, plus these)."""
    expectations: list[Expectation] = Field(default_factory=list)
    """Inline expectations."""
    config_map_ref: str | None = None
    """ConfigMap whose key `expectations.yaml` holds more expectations (Kubernetes)."""
    file: str | None = None
    """Path of a YAML file of expectations inside the data repository (local and Kubernetes)."""
    max_duplicate_fraction: float = Field(default=0.05, ge=0, le=1)
    """Fail when more than this fraction of rows are exact duplicates."""
    min_rows: int = Field(default=10, ge=1)
    """Fail when the data has fewer rows."""


class Data(common.Model):
    """A DVC-tracked dataset, pinned to a git revision."""

    repo: str = Field(min_length=1)
    """DVC repository: a git URL, or a local path (local backend)."""
    rev: str = "HEAD"
    """Git revision (branch, tag or commit); resolved to a commit and recorded in status."""
    path: str = Field(min_length=1)
    """DVC-tracked file inside the repository (CSV or Parquet)."""
    remote: str | None = None
    """DVC remote to fetch from; the repository's default remote when unset."""
    credentials_secret: str | None = None
    """Secret with the remote's credentials (env vars); never copied into status, events or logs."""
    validation: Validation = Field(default_factory=Validation)
    """The Great Expectations gate."""


class Task(enum.StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class Feature(common.Model):
    """A declared input column; the gate checks it, the server types requests with it."""

    name: str = Field(min_length=1)
    """Column name."""
    type: Literal["numeric", "categorical"] = "numeric"
    """numeric (scaled) or categorical (one-hot encoded)."""
    min: float | None = None
    """Smallest valid value (numeric); checked by the gate."""
    max: float | None = None
    """Largest valid value (numeric); checked by the gate."""
    categories: list[str] | None = None
    """Allowed values (categorical); learnt from the data when unset."""
    nullable: bool = False
    """Allow missing values."""


class Architecture(common.Model):
    """The tabular network."""

    type: Literal["mlp"] = "mlp"
    """Only mlp for now: Linear + ReLU blocks."""
    hidden_layers: list[int] = Field(default_factory=lambda: [128, 64], min_length=1, max_length=16)
    """Width of each hidden layer."""
    dropout: float = Field(default=0.1, ge=0, lt=1)
    """Dropout after each hidden layer."""


class ModelSpec(common.Model):
    """What to learn."""

    task: Task
    """classification or regression."""
    target: str = Field(min_length=1)
    """Target column."""
    features: list[Feature] = Field(default_factory=list)
    """Input columns; when empty, every column but the target, typed from the data."""
    architecture: Architecture = Field(default_factory=Architecture)
    """Network shape."""
    init_from: str | None = Field(default=None, pattern=r"^(file|pvc|s3)://.+")
    """Fine-tune: the folder of an exported model (file://, pvc:// or s3://) whose preprocessing and
    weights this run starts from; task, target, architecture and features must match it. Unset: from
    scratch. A DriftMonitor with retrain.mode fineTune sets it to the champion."""


class Training(common.Model):
    """Optimisation settings."""

    epochs: int = Field(default=10, ge=1, le=10000)
    """Passes over the training split."""
    batch_size: int = Field(default=64, ge=1, le=65536)
    """Batch size per process."""
    learning_rate: float = Field(default=1e-3, gt=0, le=10)
    """AdamW learning rate."""
    weight_decay: float = Field(default=1e-4, ge=0)
    """AdamW weight decay."""
    seed: int = Field(default=0, ge=0)
    """Seed for splits, initialisation and shuffling."""
    checkpoint_every: int = Field(default=50, ge=1)
    """Write a checkpoint every N optimiser steps (and at each epoch end)."""
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Fraction of rows held out and evaluated at the end."""
    replay_fraction: float = Field(default=0.0, ge=0, le=1)
    """With model.initFrom: add this many of the starting model's own training rows (as a
    fraction of the new training split; resolved from its card's data lineage, its holdout left
    out) to the training split, so fine-tuning on new data does not forget the old. The holdout
    stays new data only."""
    class_weighting: Literal["none", "balanced"] = "none"
    """Classification only: balanced weighs each class's loss by n / (classes x its count) in the
    training split, so a rare class (anomalies, fraud) is not ignored by a model that predicts the
    majority."""


class Quantization(enum.StrEnum):
    NONE = "none"
    STATIC_INT8 = "static-int8"
    DYNAMIC_INT8 = "dynamic-int8"


class Export(common.Model):
    """What is exported besides the fp32 weights."""

    quantization: Quantization = Quantization.STATIC_INT8
    """static-int8 (activation scales calibrated on the training split at export, so a row's answer
    never depends on the rows scored beside it; chosen by measurement, see BENCHMARKS.md),
    dynamic-int8 (scales computed per batch: served one row per model call) or none."""


# The user's code: `module:function`, both Python identifiers (the module may be dotted).
ENTRY_POINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TENSOR_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_ENV_PREFIX = "FLYWHEEL_"  # the contract's own variables (config path, artifact root, ...)


class EnvVar(common.Model):
    """One environment variable of the trainer process."""

    name: str = Field(pattern=ENV_NAME_PATTERN)
    """Variable name (a C identifier)."""
    value: str = ""
    """Its value."""


class TensorInput(common.Model):
    """One named FP32 tensor the user's model takes, filled row-major from table columns."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.columns) != has(self.columnPrefix)",
                    "message": "set exactly one of columns or columnPrefix",
                }
            ]
        }
    )

    name: str = Field(pattern=TENSOR_NAME_PATTERN)
    """The ONNX input's name (and the Open Inference Protocol input's), e.g. image."""
    datatype: Literal["FP32"] = "FP32"
    """Element type; FP32 only."""
    shape: list[int] = Field(min_length=1, max_length=8)
    """Shape of one row's tensor, without the batch axis, e.g. [1, 8, 8]."""
    columns: list[str] | None = None
    """The table columns that fill it, row-major; as many as the shape's product."""
    column_prefix: str | None = Field(default=None, min_length=1)
    """Instead of columns: <prefix>0 .. <prefix>N-1 in that order, N the shape's product."""

    @pydantic.field_validator("shape")
    @classmethod
    def _positive(cls, shape: list[int]) -> list[int]:
        if any(size < 1 for size in shape):
            raise ValueError(f"every size must be at least 1 (got {shape})")
        return shape

    @pydantic.model_validator(mode="after")
    def _filled(self) -> TensorInput:
        where = f"spec.trainer.inputs[{self.name}]"
        if (self.columns is None) == (self.column_prefix is None):
            raise ValueError(f"{where}: set exactly one of columns or columnPrefix")
        if self.columns is not None and len(self.columns) != self.size:
            raise ValueError(
                f"{where}: shape {self.shape} holds {self.size} values but columns lists "
                f"{len(self.columns)}; list exactly {self.size} columns (row-major) or fix the shape"
            )
        return self

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def column_names(self) -> list[str]:
        """The columns, row-major: as listed, or the prefix expanded."""
        if self.columns is not None:
            return list(self.columns)
        return [f"{self.column_prefix}{i}" for i in range(self.size)]


class Trainer(common.Model):
    """Your own training code in place of the built-in MLP (see docs/custom-training.md)."""

    entry_point: str = Field(pattern=ENTRY_POINT_PATTERN)
    """`module:function`: a function taking one flywheel.training.TrainContext and returning
    flywheel.training.Trained(module, example) or the path of an ONNX file it wrote."""
    path: str | None = None
    """Local backend only: a folder put on sys.path before importing the entry point, relative to
    the manifest's folder. On Kubernetes the module must be importable in the image."""
    image: str | None = None
    """Kubernetes: the trainer image holding your code (defaults to resources.image, then the
    operator's trainer image); it needs flywheel and torch installed."""
    args: list[str] = Field(default_factory=list)
    """Given to the function as ctx.args."""
    env: list[EnvVar] = Field(default_factory=list)
    """Environment of the trainer process, on both backends."""
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Free-form; given to the function as ctx.hyperparameters."""
    inputs: list[TensorInput] | None = None
    """Named tensors the model takes (e.g. an image); unset: tabular inputs (a `numeric` FP32
    matrix and a `categorical` INT64 matrix of category indices)."""

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> Trainer:
        reserved = sorted({e.name for e in self.env if e.name.startswith(RESERVED_ENV_PREFIX)})
        if reserved:
            raise ValueError(
                f"spec.trainer.env: {', '.join(reserved)} are Flywheel's own variables; rename them"
            )
        if self.inputs is not None:
            if not self.inputs:
                raise ValueError("spec.trainer.inputs: empty; list at least one tensor or remove it")
            names = [t.name for t in self.inputs]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"spec.trainer.inputs: tensor {', '.join(twice)} declared twice")
            columns = [c for t in self.inputs for c in t.column_names()]
            shared = sorted({c for c in columns if columns.count(c) > 1})
            if shared:
                raise ValueError(
                    f"spec.trainer.inputs: column(s) {', '.join(shared[:5])} fill more than one "
                    "tensor value; each column may fill one"
                )
        return self

    def tensor_columns(self) -> list[str]:
        """Every tensor's columns, in tensor order (empty for tabular inputs)."""
        return [c for t in self.inputs or [] for c in t.column_names()]


class TrainingRunSpec(common.Model):
    """Desired state of a TrainingRun."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.networking.rdma.enabled || self.resources.gpusPerReplica > 0",
                    "message": "RDMA carries NCCL traffic between GPUs: set resources.gpusPerReplica >= 1 "
                    "or networking.rdma.enabled: false",
                    "fieldPath": ".networking.rdma.enabled",
                },
                {
                    "rule": "self.model.task == 'classification' || !has(self.training) "
                    "|| !has(self.training.classWeighting) || self.training.classWeighting == 'none'",
                    "message": "class weighting needs classes: set training.classWeighting: none "
                    "for a regression model",
                    "fieldPath": ".training.classWeighting",
                },
                *launchers.cel_rules(),
            ]
        }
    )

    data: Data
    """The dataset and its gate."""
    model: ModelSpec
    """What to learn."""
    training: Training = Field(default_factory=Training)
    """Optimisation settings."""
    resources: common.Resources = Field(default_factory=common.Resources)
    """Pods, GPUs, CPU and memory."""
    networking: common.Networking = Field(default_factory=common.Networking)
    """RDMA networking for multi-node runs."""
    scheduling: common.Scheduling = Field(default_factory=common.Scheduling)
    """Queue, priority, placement, gang scheduling."""
    export: Export = Field(default_factory=Export)
    """Model export."""
    artifacts: common.Artifacts = Field(default_factory=common.Artifacts)
    """Artifact store."""
    run_policy: common.RunPolicy = Field(default_factory=common.RunPolicy)
    """Retries and deadlines."""
    trainer: Trainer | None = None
    """Your own training code (entry point, image, args, env, hyperparameters, inputs); unset: the
    built-in MLP of model.architecture."""
    launcher: launchers.Launcher | None = None
    """What runs the trainer on Kubernetes: PyTorchJob (Kubeflow Training Operator v1; the default
    when unset) or TrainJob (Kubeflow Trainer v2). The local backend runs torchrun either way."""

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> TrainingRunSpec:
        launchers.check(self.launcher, scheduling=self.scheduling, run_policy=self.run_policy)
        if self.networking.rdma.enabled and self.resources.gpus_per_replica == 0:
            raise ValueError(
                "networking.rdma.enabled: RDMA carries NCCL traffic between GPUs; "
                "set resources.gpusPerReplica >= 1 or networking.rdma.enabled: false"
            )
        if self.model.task == Task.REGRESSION and self.training.class_weighting != "none":
            raise ValueError(
                "training.classWeighting: class weighting needs classes; "
                "set training.classWeighting: none for a regression model"
            )
        names = [f.name for f in self.model.features]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"model.features: {', '.join(duplicated)} declared twice; keep one entry each")
        if self.model.target in names:
            raise ValueError(
                f"model.features: the target {self.model.target!r} is listed as a feature; remove it"
            )
        for f in self.model.features:
            if f.min is not None and f.max is not None and f.min > f.max:
                raise ValueError(f"model.features[{f.name}]: min {f.min} is greater than max {f.max}")
        if self.trainer is not None:
            _check_trainer(self.trainer, self.model)
        return self


def _check_trainer(trainer: Trainer, model: ModelSpec) -> None:
    """What a user trainer cannot be combined with (the entry point's own checks run at import)."""
    if model.architecture != Architecture():
        raise ValueError(
            "model.architecture: it shapes the built-in MLP only, and spec.trainer replaces that "
            "model; remove model.architecture (give your model's sizes in trainer.hyperparameters)"
        )
    columns = trainer.tensor_columns()
    if columns and model.features:
        declared = {f.name: f for f in model.features}
        unknown = [c for c in columns if c not in declared]
        if unknown:
            raise ValueError(
                f"spec.trainer.inputs: column(s) {', '.join(unknown[:5])} are not in model.features; "
                "declare them there or remove model.features (the tensor columns then are the features)"
            )
        categorical = [c for c in columns if declared[c].type == "categorical"]
        if categorical:
            raise ValueError(
                f"spec.trainer.inputs: column(s) {', '.join(categorical[:5])} are categorical in "
                "model.features; tensors are FP32, so type them numeric"
            )


class DataLineage(common.Model):
    """Exactly which data a model was trained on."""

    repo: str | None = None
    rev: str | None = None
    """The revision asked for."""
    commit: str | None = None
    """The git commit it resolved to."""
    path: str | None = None
    hash: str | None = None
    """DVC content hash (md5) of the file."""
    size: int | None = None
    """Bytes."""
    rows: int | None = None


class ModelArtifacts(common.Model):
    """Where the exported model lives."""

    version: str | None = None
    """Model version: <run name>-<digest of the model's content and identity>."""
    fp32_uri: str | None = None
    quantized_uri: str | None = None
    card_uri: str | None = None
    """Model card (JSON): metrics, lineage, config, feature schema."""


class Checkpoint(common.Model):
    uri: str | None = None
    step: int | None = None


class TrainingRunStatus(common.CommonStatus):
    """Observed state of a TrainingRun."""

    job_name: str | None = None
    """The PyTorchJob (Kubernetes) or process group (local) running the trainer."""
    job_spec_hash: str | None = None
    """Hash of the spec the job was started with: a later edit is reported (condition
    SpecDiverged) by comparing it with the current spec, also after the job is gone."""
    data: DataLineage | None = None
    """Data lineage."""
    validation: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Gate summary: expectations evaluated, failed ones with their observed values."""
    metrics: dict[str, float] = Field(default_factory=dict)
    """Holdout metrics (accuracy, f1, roc_auc or rmse, mae, r2)."""
    model: ModelArtifacts | None = None
    checkpoint: Checkpoint | None = None
    start_time: str | None = None
    completion_time: str | None = None


class TrainingRun(common.Resource):
    """Train a tabular model on DVC-versioned data, gated by Great Expectations.

    The spec is fixed once the job has started: the API server refuses edits while the run is
    Running or Succeeded; an edit that gets in anyway is reported, not applied (condition
    SpecDiverged=True; a running run is also Stalled, a finished one keeps its phase and Ready).
    Create a new run to train with a new spec.
    """

    KIND: ClassVar[str] = "TrainingRun"
    PLURAL: ClassVar[str] = "trainingruns"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("tr",)

    kind: Literal["TrainingRun"] = "TrainingRun"
    spec: TrainingRunSpec
    status: TrainingRunStatus | None = None
