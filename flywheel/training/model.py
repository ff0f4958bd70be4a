"""The tabular network, built from plain torch.nn so a server rebuilds it from the card alone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def build_mlp(n_inputs: int, hidden: Sequence[int], n_outputs: int, dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout blocks, then a Linear head (logits or a standardised value)."""
    layers: list[nn.Module] = []
    width = n_inputs
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """int8 weights, activations quantised per batch at run time (chosen by bench/quantization.py).

    torch.ao's eager dynamic quantisation is deprecated upstream but is the only int8 path here that
    is faster than fp32 on CPU without torch.compile and needs nothing beyond torch at serving time.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model.eval(), {nn.Linear}, dtype=torch.qint8)
