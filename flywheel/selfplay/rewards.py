"""Rewards and Task-Relative REINFORCE++ advantages (pure Python: unit-tested by hand).

Solver: +1 correct, -0.5 well formatted but wrong, -1 malformed (the paper's Eq. 6).
Proposer: learnability 1 - s from the solve rate s of N sampled solver rollouts when 0 < s < 1,
0 when s is 0 or 1 (the paper; the reference code gives -0.5 there), -1 when the proposal is
invalid or malformed.
TRR++: each of the six (task, role) batches is whitened on its own, so six baselines; the
scalar reward of a sequence becomes the advantage of every one of its response tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CORRECT, WRONG, MALFORMED = 1.0, -0.5, -1.0
EPS = 1e-8


def solver(well_formed: bool, accuracy: float) -> float:
    """The solver's reward: the accuracy when > 0, -0.5 when wrong, -1 when malformed."""
    if not well_formed:
        return MALFORMED
    return accuracy if accuracy > 0 else WRONG


def solve_rate(correct: Sequence[bool]) -> float:
    """Mean of the 0/1 scores of the estimation rollouts."""
    return sum(1.0 for c in correct if c) / len(correct) if correct else 0.0


def proposer(valid: bool, rate: float | None) -> float:
    """Learnability: 1 - s for 0 < s < 1, 0 at s in {0, 1}, -1 for an invalid proposal."""
    if not valid or rate is None:
        return MALFORMED
    if rate <= 0.0 or rate >= 1.0:
        return 0.0
    return 1.0 - rate


def whiten(
    rewards: Sequence[float],
    lengths: Sequence[int],
    weighting: str = "sequence",
    population: tuple[Sequence[float], Sequence[int]] | None = None,
) -> list[float]:
    """Advantages of one (task, role) batch: (r - mean) / sqrt(var + 1e-8), var unbiased.

    weighting="sequence" takes mean and variance over sequences (the paper's A = (r - mu) / sigma);
    weighting="token" weighs each sequence by its response length, as the reference's masked
    whitening over all response tokens does. Equal rewards give zero advantages. `population`
    (rewards, lengths) is the whole batch when `rewards` is one rank's share of it: the statistics
    come from the population, as the paper's one batch of 64 per (task, role) does.
    """
    if weighting not in ("sequence", "token"):
        raise ValueError(f"weighting must be 'sequence' or 'token', not {weighting!r}")
    all_rewards, all_lengths = population if population is not None else (rewards, lengths)
    weights = [float(n) for n in all_lengths] if weighting == "token" else [1.0] * len(all_rewards)
    total = sum(weights)
    if total <= 1 or len(rewards) == 0:
        return [0.0] * len(rewards)
    mean = sum(w * r for w, r in zip(weights, all_rewards, strict=True)) / total
    var = sum(w * (r - mean) ** 2 for w, r in zip(weights, all_rewards, strict=True)) / (total - 1)
    if var == 0.0:
        return [0.0] * len(rewards)
    scale = math.sqrt(var + EPS)
    return [(r - mean) / scale for r in rewards]


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
