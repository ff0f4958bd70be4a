"""The built-in `tiny` policy: a byte-level causal transformer of a few hundred thousand weights.

It exists so that self-play runs, and its tests, on a CPU in seconds. It starts from random
weights, so it produces bytes, not programs: it exercises every part of the loop (sampling,
log-probs, rewards, the update) but learns nothing useful in a short run (docs/selfplay.md gives
the measured figures). Generation uses a key/value cache and left padding.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional

EOS = 256
PAD = 257
VOCAB = 258


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 4
    context: int = 768


def encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def decode(ids: list[int]) -> str:
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


Cache = list[tuple[torch.Tensor, torch.Tensor]]


class Block(nn.Module):
    def __init__(self, cfg: TinyConfig) -> None:
        super().__init__()
        self.heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(), nn.Linear(4 * cfg.d_model, cfg.d_model)
        )

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        att = functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x)), (k, v)


class TinyLM(nn.Module):
    """GPT-style decoder over bytes (+ EOS, PAD), tied input/output embeddings."""

    def __init__(self, cfg: TinyConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or TinyConfig()
        self.tok = nn.Embedding(VOCAB, self.cfg.d_model)
        self.pos = nn.Embedding(self.cfg.context, self.cfg.d_model)
        self.blocks = nn.ModuleList(Block(self.cfg) for _ in range(self.cfg.n_layers))
        self.ln = nn.LayerNorm(self.cfg.d_model)
        self.apply(_init)

    def forward(
        self,
        ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        cache: Cache | None = None,
        return_hidden: bool = False,
    ) -> torch.Tensor:
        """Logits [B, T, VOCAB], or with `return_hidden` the final hidden states [B, T, d] (the
        trainer projects only the positions it needs, flywheel.selfplay.logprobs). `attention_mask`
        covers past and new keys; with `cache` (a list, filled in place) earlier keys and values
        are reused."""
        b, t = ids.shape
        past = cache[0][0].shape[2] if cache else 0
        keys = past + t
        if attention_mask is None:
            attention_mask = torch.ones(b, keys, dtype=torch.bool, device=ids.device)
        if positions is None:
            positions = torch.arange(past, keys, device=ids.device).expand(b, t)
        causal = torch.ones(t, keys, dtype=torch.bool, device=ids.device).tril(past)
        allowed = causal[None, None] & attention_mask.bool()[:, None, None, :]
        # A query that sees only padding would give NaN; let every query see itself.
        rows = torch.arange(t, device=ids.device)
        allowed = allowed.clone()
        allowed[:, :, rows, rows + past] = True
        x = self.tok(ids) + self.pos(positions.clamp(max=self.cfg.context - 1))
        reuse = bool(cache)
        for i, block in enumerate(self.blocks):
            x, kv = block(x, allowed, cache[i] if cache and reuse else None)
            if cache is not None:
                if len(cache) > i:
                    cache[i] = kv
                else:
                    cache.append(kv)
        hidden: torch.Tensor = self.ln(x)
        return hidden if return_hidden else hidden @ self.tok.weight.T


def _init(module: nn.Module) -> None:
    """GPT-2's N(0, 0.02) init: with PyTorch's N(0, 1) embeddings the tied output layer makes a
    fresh model almost deterministic (it repeats its input byte), which leaves nothing to explore."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
