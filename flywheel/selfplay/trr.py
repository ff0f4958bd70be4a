"""Task-Relative REINFORCE++: the one policy update of a step.

Advantages are whitened within each (task, role) batch (rewards.whiten, six baselines), broadcast
to every response token, and the six batches are concatenated into one update: the loss is the
token-mean of -A * log pi over all response tokens minus the entropy bonus, no KL term, no critic.
With one epoch over one mini-batch the PPO ratio is exactly 1, so the clipped surrogate equals
this on-policy REINFORCE loss; it is written in that form. Micro-batches bound memory; under
DDP only the last micro-batch all-reduces gradients.
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


def advantages(batches: Sequence[rollout.Batch], weighting: str = "sequence") -> list[list[float]]:
    """Per batch, the whitened rewards (one advantage per sequence)."""
    return [rewards.whiten(b.rewards, [len(s.response_ids) for s in b.samples], weighting) for b in batches]


def update(
    pol: policy.Policy,
    module: Any,
    optimizer: torch.optim.Optimizer,
    batches: Sequence[rollout.Batch],
    *,
    entropy_coefficient: float,
    grad_clip: float,
    weighting: str = "sequence",
) -> UpdateStats:
    """One optimizer step over all batches; `module` is the policy's module or its DDP wrapper."""
    samples: list[policy.Sample] = []
    advs: list[float] = []
    for batch, adv in zip(batches, advantages(batches, weighting), strict=True):
        for sample, a in zip(batch.samples, adv, strict=True):
            if sample.response_ids:
                samples.append(sample)
                advs.append(a)
    tokens = sum(len(s.response_ids) for s in samples)
    optimizer.zero_grad(set_to_none=True)
    total_loss, total_entropy = 0.0, 0.0
    chunks = range(0, len(samples), MICRO_BATCH)
    for i in chunks:
        last = i + MICRO_BATCH >= len(samples)
        sync = contextlib.nullcontext() if last or not hasattr(module, "no_sync") else module.no_sync()
        with sync:
            logp, entropy, mask = policy.token_logprobs(pol, module, samples[i : i + MICRO_BATCH])
            weight = torch.tensor(advs[i : i + MICRO_BATCH], device=logp.device)[:, None]
            pg = -(weight * logp * mask).sum() / tokens
            ent = (entropy * mask).sum() / tokens
            loss = pg - entropy_coefficient * ent
            loss.backward()  # type: ignore[no-untyped-call]
        total_loss += float(loss.detach())
        total_entropy += float(ent.detach())
    params = [p for p in pol.module.parameters() if p.grad is not None]
    norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip)) if params else 0.0
    optimizer.step()
    return UpdateStats(total_loss, total_entropy, norm, tokens)
