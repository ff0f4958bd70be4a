"""Rewards and TRR++ whitening against values computed by hand."""

from __future__ import annotations

import math

import pytest

from flywheel.selfplay import rewards


def test_solver_reward() -> None:
    assert rewards.solver(True, 1.0) == 1.0
    assert rewards.solver(True, 0.0) == -0.5
    assert rewards.solver(False, 1.0) == -1.0


@pytest.mark.parametrize(
    ("valid", "rate", "expected"),
    [
        (True, 1 / 8, 0.875),  # the largest observable learnability with 8 rollouts
        (True, 0.5, 0.5),
        (True, 0.0, 0.0),  # the paper's 0, not the reference code's -0.5
        (True, 1.0, 0.0),
        (False, None, -1.0),
        (False, 0.5, -1.0),
    ],
)
def test_proposer_learnability(valid: bool, rate: float | None, expected: float) -> None:
    assert rewards.proposer(valid, rate) == pytest.approx(expected)


def test_solve_rate_is_the_mean_of_scores() -> None:
    assert rewards.solve_rate([True, False, False, True]) == 0.5
    assert rewards.solve_rate([]) == 0.0


def test_whiten_sequence_weighted_by_hand() -> None:
    # rewards 1, -0.5, -1: mean -1/6; unbiased var = (49/36 + 1/9 + 25/36) / 2 = 13/12
    adv = rewards.whiten([1.0, -0.5, -1.0], [3, 1, 2], "sequence")
    sd = math.sqrt(13 / 12 + 1e-8)
    assert adv == pytest.approx([(1 + 1 / 6) / sd, (-0.5 + 1 / 6) / sd, (-1 + 1 / 6) / sd])


def test_whiten_token_weighted_by_hand() -> None:
    # lengths 3 and 1, so token rewards [1, 1, 1, -1]: mean 0.5, unbiased var = (3*0.25 + 2.25) / 3 = 1
    adv = rewards.whiten([1.0, -1.0], [3, 1], "token")
    assert adv == pytest.approx([0.5 / math.sqrt(1 + 1e-8), -1.5 / math.sqrt(1 + 1e-8)])


def test_whiten_equal_rewards_and_degenerate_batches_give_zero() -> None:
    assert rewards.whiten([-1.0, -1.0, -1.0], [5, 2, 9]) == [0.0, 0.0, 0.0]
    assert rewards.whiten([1.0], [1], "token") == [0.0]
    assert rewards.whiten([], []) == []
    with pytest.raises(ValueError, match="weighting"):
        rewards.whiten([1.0], [1], "bogus")


def test_a_rank_share_is_whitened_with_the_global_batch_statistics() -> None:
    everyone = ([1.0, -0.5, -1.0, -1.0], [3, 3, 3, 3])
    mine = rewards.whiten([1.0, -0.5], [3, 3], population=everyone)
    assert mine == rewards.whiten(*everyone)[:2]
    # alone, the same two rewards would be whitened differently
    assert mine != rewards.whiten([1.0, -0.5], [3, 3])
