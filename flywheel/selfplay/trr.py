"""Task-Relative REINFORCE++: the one policy update of a step.

Advantages are whitened within each (task, role) batch (rewards.whiten, six baselines), broadcast
to every response token, and the six batches are concatenated into one update: the loss is the
token-mean of -A * log pi over all response tokens minus the entropy bonus, no KL term, no critic.
With one epoch over one mini-batch the PPO ratio is exactly 1, so the clipped surrogate equals
this on-policy REINFORCE loss; it is written in that form. Micro-batches bound memory; under
DDP only the last micro-batch all-reduces gradients.

Under DDP each rank holds its share of the global batch (flywheel.selfplay.trainer). `population`
gives every batch's rewards and lengths over all ranks, so whitening uses the global batch's
statistics, and the token-mean divides by the global token count: each rank's loss is scaled by
world / global tokens, which DDP's gradient average turns into the mean over all tokens.
Log-probs are taken at the sampling temperature (flywheel.selfplay.logprobs).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from flywheel.selfplay import policy, rewards, rollout

MICRO_BATCH = 16


@dataclasses.dataclass
class UpdateStats:
    loss: float
    entropy: float
    grad_norm: float
    tokens: int


Population = Sequence[tuple[Sequence[float], Sequence[int]]]


def lengths(batch: rollout.Batch) -> list[int]:
    return [len(s.response_ids) for s in batch.samples]


def advantages(
    batches: Sequence[rollout.Batch], weighting: str = "sequence", population: Population | None = None
) -> list[list[float]]:
    """Per batch, the whitened rewards (one advantage per sequence); `population[i]` is batch i
    over all ranks (None: this rank's batches are the whole batch)."""
    return [
        rewards.whiten(b.rewards, lengths(b), weighting, population[i] if population is not None else None)
        for i, b in enumerate(batches)
    ]


def update(
    pol: policy.Policy,
    module: Any,
    optimizer: torch.optim.Optimizer,
    batches: Sequence[rollout.Batch],
    *,
    entropy_coefficient: float,
    grad_clip: float,
    weighting: str = "sequence",
    temperature: float = 1.0,
    population: Population | None = None,
    world: int = 1,
) -> UpdateStats:
    """One optimizer step over all batches; `module` is the policy's module or its DDP wrapper."""
    samples: list[policy.Sample] = []
    advs: list[float] = []
    for batch, adv in zip(batches, advantages(batches, weighting, population), strict=True):
        for sample, a in zip(batch.samples, adv, strict=True):
            if sample.response_ids:
                samples.append(sample)
                advs.append(a)
    tokens = sum(len(s.response_ids) for s in samples)
    global_tokens = sum(sum(n) for _, n in population) if population is not None else tokens
    scale = world / max(1, global_tokens)
    optimizer.zero_grad(set_to_none=True)
    total_loss, total_entropy = 0.0, 0.0
    chunks = range(0, len(samples), MICRO_BATCH)
    for i in chunks:
        last = i + MICRO_BATCH >= len(samples)
        sync = contextlib.nullcontext() if last or not hasattr(module, "no_sync") else module.no_sync()
        with sync:
            logp, entropy, mask = policy.token_logprobs(
                pol, module, samples[i : i + MICRO_BATCH], temperature
            )
            weight = torch.tensor(advs[i : i + MICRO_BATCH], device=logp.device)[:, None]
            pg = -(weight * logp * mask).sum() * scale
            ent = (entropy * mask).sum() * scale
            loss = pg - entropy_coefficient * ent
            loss.backward()  # type: ignore[no-untyped-call]
        total_loss += float(loss.detach())
        total_entropy += float(ent.detach())
    params = [p for p in pol.module.parameters() if p.grad is not None]
    norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip)) if params else 0.0
    optimizer.step()
    return UpdateStats(total_loss, total_entropy, norm, tokens)
