"""SelfPlayRun: Absolute-Zero self-play (proposer and solver), rewards verified by running code."""

from __future__ import annotations

import enum
from typing import ClassVar, Literal

from pydantic import Field

from flywheel.api import common


class TaskType(enum.StrEnum):
    DEDUCTION = "deduction"
    ABDUCTION = "abduction"
    INDUCTION = "induction"


class Policy(common.Model):
    """The language model that both proposes and solves."""

    model: str = Field(default="tiny", min_length=1)
    """`tiny` (built-in byte-level transformer, CPU) or a Hugging Face causal LM: a local path,
    file://, s3:// or pvc:// URI of a saved model directory."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype on GPU; CPU always uses float32."""


class SelfPlay(common.Model):
    """The self-play loop; defaults are the Absolute Zero paper's."""

    task_types: list[TaskType] = Field(
        default_factory=lambda: [TaskType.ABDUCTION, TaskType.DEDUCTION, TaskType.INDUCTION],
        min_length=1,
        max_length=3,
    )
    """Task types played each step."""
    batch_size: int = Field(default=64, ge=1, le=4096)
    """Prompts per (task type, role) per step, per rank."""
    solve_rate_rollouts: int = Field(default=8, ge=1, le=64)
    """Solver rollouts that estimate a proposal's learnability."""
    references: int = Field(default=6, ge=0, le=64)
    """K reference triplets shown to the proposer."""
    induction_inputs: int = Field(default=10, ge=2, le=64)
    """Inputs an induction proposal must give; half are shown to the solver, half hidden."""
    steps: int = Field(default=500, ge=1)
    """Training steps (one optimiser update each)."""
    learning_rate: float = Field(default=1e-6, gt=0, le=1)
    """AdamW learning rate (constant)."""
    weight_decay: float = Field(default=0.01, ge=0)
    """AdamW weight decay."""
    grad_clip: float = Field(default=1.0, gt=0)
    """Gradient norm clip."""
    entropy_coefficient: float = Field(default=0.001, ge=0)
    """Entropy bonus coefficient."""
    temperature: float = Field(default=1.0, gt=0, le=5)
    """Sampling temperature of rollouts (and of the solve-rate estimates)."""
    max_new_tokens: int = Field(default=8096, ge=1)
    """Longest response generated."""
    max_buffer_size: int = Field(default=16384, ge=1)
    """Programs kept per buffer."""
    checkpoint_every: int = Field(default=10, ge=1)
    """Checkpoint (weights, optimizer, buffers) every N steps."""
    seed: int = Field(default=0, ge=0)


class Executor(common.Model):
    """The sandbox that runs proposed programs and solver answers."""

    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """Wall-clock limit per program."""
    memory_mb: int = Field(default=512, ge=64, le=65536)
    """Address-space limit per worker."""
    workers: int = Field(default=4, ge=1, le=256)
    """Pre-forked sandbox workers per rank."""
    user_namespace: bool = False
    """Run the pods in their own user namespace (`hostUsers: false`): root in the pod maps to an
    unprivileged host uid. Needs Kubernetes 1.33+ (or the UserNamespacesSupport gate) and a runtime
    and filesystem that support idmapped mounts. The sandbox's seccomp filter and Landlock do not
    depend on it; they stack on the RuntimeDefault profile either way."""


class SelfPlayRunSpec(common.Model):
    """Desired state of a SelfPlayRun."""

    policy: Policy = Field(default_factory=Policy)
    self_play: SelfPlay = Field(default_factory=SelfPlay)
    executor: Executor = Field(default_factory=Executor)
    resources: common.Resources = Field(default_factory=common.Resources)
    networking: common.Networking = Field(default_factory=common.Networking)
    scheduling: common.Scheduling = Field(default_factory=common.Scheduling)
    artifacts: common.Artifacts = Field(default_factory=common.Artifacts)
    run_policy: common.RunPolicy = Field(default_factory=common.RunPolicy)


class PerTask(common.Model):
    """A figure per task type."""

    deduction: float | None = None
    abduction: float | None = None
    induction: float | None = None


class SelfPlayRunStatus(common.CommonStatus):
    """Observed state of a SelfPlayRun."""

    job_name: str | None = None
    step: int | None = None
    """Last completed step."""
    buffers: PerTask | None = None
    """Programs per buffer."""
    valid_proposal_rate: PerTask | None = None
    solve_rate: PerTask | None = None
    proposer_reward: PerTask | None = None
    checkpoint: str | None = None
    """URI of the latest checkpoint."""
    start_time: str | None = None
    completion_time: str | None = None


class SelfPlayRun(common.Resource):
    """Absolute-Zero self-play RL with a sandboxed code executor."""

    KIND: ClassVar[str] = "SelfPlayRun"
    PLURAL: ClassVar[str] = "selfplayruns"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("spr",)

    kind: Literal["SelfPlayRun"] = "SelfPlayRun"
    spec: SelfPlayRunSpec = Field(default_factory=SelfPlayRunSpec)
    status: SelfPlayRunStatus | None = None
