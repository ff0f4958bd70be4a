"""Balanced class weights: the rare class weighs as much in total as the common one."""

from __future__ import annotations

import torch

from flywheel.training import trainer


def test_balanced_weights_equalise_each_class_total():
    y = torch.tensor([0] * 96 + [1] * 4)
    weights = trainer.balanced_weights(y, 2)
    assert torch.allclose(weights, torch.tensor([100 / (2 * 96), 100 / (2 * 4)]))
    totals = weights * torch.bincount(y).float()
    assert torch.allclose(totals[0], totals[1])


def test_a_class_absent_from_the_split_does_not_divide_by_zero():
    weights = trainer.balanced_weights(torch.tensor([0, 0, 2]), 3)
    assert torch.isfinite(weights).all() and weights[1] == 1.0
