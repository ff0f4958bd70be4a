"""Token log-probs and entropies of chosen positions, a few rows of vocabulary logits at a time.

A causal LM's logits are [batch, sequence, vocabulary]: 16 sequences of 4,096 tokens over a 152k
vocabulary is 40 GB in fp32, and log_softmax makes a second copy. Only the response positions are
needed, and for each only logsumexp, the chosen token's logit and the entropy. So `selected`
takes the final hidden states of just those positions and projects them through the output
embedding in chunks of rows; each chunk runs under activation checkpointing, so backward
recomputes the chunk's logits instead of keeping them. Peak memory is one chunk of logits
(CHUNK_ELEMENTS floats) whatever the vocabulary or sequence length (BENCHMARKS.md has the figures).

Logits are divided by the sampling temperature first: the samples were drawn from
softmax(logits / T), so that is the distribution whose log-probs the policy gradient needs.
"""

from __future__ import annotations

import torch
from torch.nn import functional
from torch.utils import checkpoint

CHUNK_ELEMENTS = 1 << 24  # floats of logits per chunk: 64 MiB in fp32


def _stats(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float
) -> torch.Tensor:
    """[rows, 2]: log-prob of each target and entropy, both at `temperature`, computed in fp32."""
    logits = (hidden @ weight.T).float() / temperature
    logz = torch.logsumexp(logits, dim=-1)
    chosen = logits.gather(-1, targets[:, None]).squeeze(-1) - logz
    entropy = logz - (functional.softmax(logits, dim=-1) * logits).sum(-1)
    return torch.stack([chosen, entropy], dim=-1)


def selected(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-prob, entropy), each [rows], of `targets` [rows] given `hidden` [rows, d] and the output
    embedding `weight` [vocab, d]."""
    rows = max(1, chunk_elements // max(1, weight.shape[0]))
    parts = []
    for i in range(0, hidden.shape[0], rows):
        args = (hidden[i : i + rows], weight, targets[i : i + rows], temperature)
        if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
            parts.append(checkpoint.checkpoint(_stats, *args, use_reentrant=False))
        else:
            parts.append(_stats(*args))
    if not parts:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, empty
    out = torch.cat(parts)
    return out[:, 0], out[:, 1]
