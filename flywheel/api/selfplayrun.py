"""SelfPlayRun: Absolute-Zero self-play (proposer and solver), rewards verified by running code."""

from __future__ import annotations

import enum
import re
from typing import ClassVar, Literal

import pydantic
from pydantic import Field

from flywheel.api import common
from flywheel.api import launcher as launchers


class TaskType(enum.StrEnum):
    DEDUCTION = "deduction"
    ABDUCTION = "abduction"
    INDUCTION = "induction"


# The shortest responses each task format accepts (the prompt already opened <think>): a program
# proposal (code block, `# Input:` line) and an induction proposal of n inputs and a message.
# tests/unit/selfplay checks them against the real parsers. Solver answers are shorter.
SHORTEST_PROGRAM_PROPOSAL = "</think><answer>```\ndef f(a):return a\n```\n# Input: 1</answer>"


def shortest_induction_proposal(n: int) -> str:
    return "</think><answer>" + "```input\n1```" * n + "\n# Message: x</answer>"


TINY_MAX_NEW_TOKENS = 256  # the tiny policy's response cap (its context is 768 bytes)
BYTES_PER_TOKEN = 4  # a lower bound for BPE tokenizers on code: ~3-4 bytes a token


class WarmStart(common.Model):
    """Supervised pretraining of the built-in tiny policy before self-play, on programs from a
    seeded grammar of the three task types (no outside data, no downloaded weights). Absolute Zero
    starts from a pretrained base model; this is the tiny policy's. Cached: a second run with the
    same block reuses the weights (and their model card) from the artifact cache."""

    steps: int = Field(default=600, ge=1, le=100_000)
    """Optimizer steps of supervised training (600 x 16 examples: 11 minutes measured on 2 busy
    CPU cores)."""
    batch_size: int = Field(default=16, ge=1, le=1024)
    """Examples per step."""
    learning_rate: float = Field(default=6e-3, gt=0, le=1)
    """AdamW learning rate (5% warm-up, cosine decay to 10%)."""
    seed: int = Field(default=0, ge=0)
    """Seed of the grammar and of the initial weights."""


class Policy(common.Model):
    """The language model that both proposes and solves."""

    model: str = Field(default="tiny", min_length=1)
    """`tiny` (built-in byte-level transformer, CPU) or a Hugging Face causal LM: a local path,
    file://, s3:// or pvc://claim/path URI of a saved model directory. A pvc:// claim is mounted
    read-only in every pod (multi-node runs need a ReadOnlyMany or ReadWriteMany claim)."""
    credentials_secret: str | None = Field(default=None, pattern=common.DNS_LABEL_PATTERN)
    """Secret with AWS_* keys for an s3:// model, exposed as environment (none: ambient
    credentials, or the artifact store's)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Compute dtype on GPU (autocast over float32 master weights, so small updates are not lost);
    CPU always uses float32."""
    warm_start: WarmStart | None = None
    """Pretrain the `tiny` policy on grammar-generated programs first (tiny only)."""

    @pydantic.model_validator(mode="after")
    def _model_location(self) -> Policy:
        if self.model.startswith(("pvc://", "s3://")):
            scheme, rest = self.model.split("://", 1)
            where, _, path = rest.partition("/")
            if not re.fullmatch(common.DNS_LABEL_PATTERN[1:-1], where) or not path.strip("/"):
                raise ValueError(
                    f"policy.model {self.model!r}: use "
                    f"{scheme}://{'claim' if scheme == 'pvc' else 'bucket'}/path "
                    "to the model directory (a DNS-label name, then the folder below it)"
                )
        return self

    @pydantic.model_validator(mode="after")
    def _warm_start_is_for_tiny(self) -> Policy:
        if self.warm_start is not None and self.model != "tiny":
            raise ValueError(
                "policy.warmStart: only the built-in tiny policy is warm-started here; "
                "a Hugging Face model is already pretrained: remove warmStart"
            )
        return self


class SelfPlay(common.Model):
    """The self-play loop; defaults are the Absolute Zero paper's."""

    task_types: list[TaskType] = Field(
        default_factory=lambda: [TaskType.ABDUCTION, TaskType.DEDUCTION, TaskType.INDUCTION],
        min_length=1,
        max_length=3,
    )
    """Task types played each step."""
    batch_size: int = Field(default=64, ge=1, le=4096)
    """Prompts per (task type, role) per step over all ranks (the paper's global batch: 64 x 6 =
    384 sequences an update); each rank plays batchSize / ranks of them (status.batch)."""
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
    """Longest response generated (tokens; bytes for the tiny policy). Must hold the shortest
    well-formed proposal of the chosen task types (validation says how long that is)."""
    max_buffer_size: int = Field(default=16384, ge=1)
    """Programs kept per buffer."""
    checkpoint_every: int = Field(default=10, ge=1)
    """Checkpoint (weights, optimizer, buffers) every N steps."""
    seed: int = Field(default=0, ge=0)


class HeldOut(common.Model):
    """In-loop evaluation on a fixed held-out task set (grammar-generated, never in a buffer)."""

    every: int = Field(default=10, ge=0)
    """Evaluate every N steps (and before the first and after the last); 0 turns it off."""
    tasks: int = Field(default=24, ge=1, le=4096)
    """Held-out tasks per task type."""
    samples: int = Field(default=1, ge=0, le=64)
    """Sampled answers per task (at selfPlay.temperature) besides the greedy one."""
    seed: int = Field(default=1234, ge=0)
    """Seed of the held-out set (a different seed from warmStart's keeps them apart)."""


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

    model_config = pydantic.ConfigDict(
        json_schema_extra={"x-kubernetes-validations": launchers.cel_rules(executor=True)}
    )

    policy: Policy = Field(default_factory=Policy)
    self_play: SelfPlay = Field(default_factory=SelfPlay)
    held_out: HeldOut = Field(default_factory=HeldOut)
    executor: Executor = Field(default_factory=Executor)
    resources: common.Resources = Field(default_factory=common.Resources)
    networking: common.Networking = Field(default_factory=common.Networking)
    scheduling: common.Scheduling = Field(default_factory=common.Scheduling)
    artifacts: common.Artifacts = Field(default_factory=common.Artifacts)
    run_policy: common.RunPolicy = Field(default_factory=common.RunPolicy)
    launcher: launchers.Launcher | None = None
    """What runs self-play on Kubernetes: PyTorchJob (Kubeflow Training Operator v1; the default
    when unset) or TrainJob (Kubeflow Trainer v2). The local backend runs torchrun either way."""

    @pydantic.model_validator(mode="after")
    def _room_to_answer(self) -> SelfPlayRunSpec:
        launchers.check(
            self.launcher,
            scheduling=self.scheduling,
            run_policy=self.run_policy,
            user_namespace=self.executor.user_namespace,
        )
        problem = max_new_tokens_problem(self)
        if problem:
            raise ValueError(problem)
        return self


def shortest_answer(task_types: list[TaskType], induction_inputs: int) -> tuple[int, str]:
    """(bytes, task type) of the longest among the chosen task types' shortest proposals."""
    sizes = {
        TaskType.ABDUCTION: len(SHORTEST_PROGRAM_PROPOSAL.encode()),
        TaskType.DEDUCTION: len(SHORTEST_PROGRAM_PROPOSAL.encode()),
        TaskType.INDUCTION: len(shortest_induction_proposal(induction_inputs).encode()),
    }
    task = max(task_types, key=lambda t: sizes[t])
    return sizes[task], str(task)


def max_new_tokens_problem(spec: SelfPlayRunSpec) -> str | None:
    """Why selfPlay.maxNewTokens cannot hold a well-formed proposal, or None."""
    sp = spec.self_play
    size, task = shortest_answer(sp.task_types, sp.induction_inputs)
    if spec.policy.model == "tiny":
        if size > TINY_MAX_NEW_TOKENS:
            return (
                f"selfPlay.inductionInputs: {sp.induction_inputs} inputs need a {size}-byte proposal, "
                f"more than the tiny policy's {TINY_MAX_NEW_TOKENS}-byte responses; use fewer"
            )
        need, unit = size, " (the tiny policy has one token a byte)"
    else:
        need = -(-size // BYTES_PER_TOKEN)
        unit = f", at least {need} tokens at {BYTES_PER_TOKEN} bytes a token"
    if sp.max_new_tokens < need:
        return (
            f"selfPlay.maxNewTokens: {sp.max_new_tokens} is too short to answer: the shortest "
            f"well-formed {task} proposal is {size} bytes{unit}; set at least {need}"
        )
    return None


class BatchShare(common.Model):
    """How the global batch is split."""

    size: int | None = None
    """Prompts per (task type, role) per step over all ranks (selfPlay.batchSize)."""
    per_rank: int | None = None
    """The largest share one rank plays (ranks get size / ranks, some one more)."""
    ranks: int | None = None
    """Training processes."""


class PerTask(common.Model):
    """A figure per task type."""

    deduction: float | None = None
    abduction: float | None = None
    induction: float | None = None


class HeldOutStatus(common.Model):
    """Solve rate on the fixed held-out task set, per task type."""

    step: int | None = None
    """Step after which it was measured (0: before training)."""
    solve_rate: PerTask | None = None
    """Greedy decoding."""
    sampled_solve_rate: PerTask | None = None
    """Sampled at selfPlay.temperature."""


class SelfPlayRunStatus(common.CommonStatus):
    """Observed state of a SelfPlayRun."""

    job_name: str | None = None
    job_spec_hash: str | None = None
    """Hash of the spec the job was started with: a later edit is reported (condition
    SpecDiverged) by comparing it with the current spec, also after the job is gone."""
    step: int | None = None
    """Last completed step."""
    buffers: PerTask | None = None
    """Programs per buffer."""
    valid_proposal_rate: PerTask | None = None
    solve_rate: PerTask | None = None
    proposer_reward: PerTask | None = None
    checkpoint: str | None = None
    """URI of the latest checkpoint."""
    batch: BatchShare | None = None
    held_out: HeldOutStatus | None = None
    """The latest held-out evaluation."""
    start_time: str | None = None
    completion_time: str | None = None


class SelfPlayRun(common.Resource):
    """Absolute-Zero self-play RL with a sandboxed code executor.

    The spec is fixed once the job has started: the API server refuses edits while the run is
    Running or Succeeded; an edit that gets in anyway is reported, not applied (condition
    SpecDiverged=True; a running run is also Stalled, a finished one keeps its phase and Ready).
    Create a new run to run with a new spec.
    """

    KIND: ClassVar[str] = "SelfPlayRun"
    PLURAL: ClassVar[str] = "selfplayruns"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("spr",)

    kind: Literal["SelfPlayRun"] = "SelfPlayRun"
    spec: SelfPlayRunSpec = Field(default_factory=SelfPlayRunSpec)
    status: SelfPlayRunStatus | None = None
