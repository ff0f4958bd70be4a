"""The policy: one causal LM that both proposes and solves, with sampling and token log-probs.

`load(spec.policy)` gives the built-in `tiny` byte-level model (CPU, tests) or any Hugging Face
causal LM saved in a directory (local path, file://, pvc://, s3://), loaded with local files only
and placed on the GPU when there is one. Both expose the same three things the trainer needs:
`generate` (temperature sampling or greedy), `forward_logits` (through a possibly DDP-wrapped
module) and the token ids of each sample, from which `token_logprobs` rebuilds log-probs and
entropies for the policy gradient.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from flywheel import artifacts, errors
from flywheel.api import selfplayrun
from flywheel.selfplay import tiny


@dataclasses.dataclass
class Sample:
    """One generation: the (possibly truncated) prompt ids, the response ids (with EOS if the
    model stopped) and the decoded response text."""

    prompt_ids: list[int]
    response_ids: list[int]
    text: str


class TinyPolicy:
    """The built-in byte-level policy."""

    max_new_tokens_cap = 256

    def __init__(self, config: tiny.TinyConfig | None = None, device: str = "cpu") -> None:
        model = tiny.TinyLM(config).to(device)
        self.module: torch.nn.Module = model
        self.device = torch.device(device)
        self.context = model.cfg.context
        self.pad_id = tiny.PAD

    def forward_logits(self, module: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return module(ids, mask)  # type: ignore[no-any-return]

    @torch.no_grad()
    def generate(
        self, prompts: list[str], *, temperature: float, max_new_tokens: int, greedy: bool = False
    ) -> list[Sample]:
        if not prompts:
            return []
        new = min(max_new_tokens, self.max_new_tokens_cap)
        encoded = [tiny.encode(p)[-(self.context - new) :] for p in prompts]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.bool)
        for row, e in enumerate(encoded):
            ids[row, width - len(e) :] = torch.tensor(e)
            mask[row, width - len(e) :] = True
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        cache: tiny.Cache = []
        logits = self.module(ids, mask, positions, cache)[:, -1]
        done = torch.zeros(len(encoded), dtype=torch.bool, device=self.device)
        out: list[torch.Tensor] = []
        for _ in range(new):
            token = _pick(logits, temperature, greedy)
            token = torch.where(done, torch.full_like(token, self.pad_id), token)
            out.append(token)
            mask = torch.cat([mask, (~done)[:, None]], dim=1)
            done = done | (token == tiny.EOS)
            if bool(done.all()):
                break
            positions = positions[:, -1:] + 1
            logits = self.module(token[:, None], mask, positions, cache)[:, -1]
        return [self._sample(e, [int(t[row]) for t in out]) for row, e in enumerate(encoded)]

    def _sample(self, prompt: list[int], tokens: list[int]) -> Sample:
        response = []
        for t in tokens:
            if t == self.pad_id:
                break
            response.append(t)
            if t == tiny.EOS:
                break
        return Sample(prompt, response, tiny.decode(response))


class HFPolicy:
    """A Hugging Face causal LM and its tokenizer, loaded from local files only."""

    max_new_tokens_cap = 1 << 30
    max_prompt_tokens = 6144  # the paper's max prompt length; less when the model's context is shorter

    def __init__(self, path: Path, dtype: str = "float32", device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype = getattr(torch, dtype) if self.device.type == "cuda" else torch.float32
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.padding_side = "left"
        self.tokenizer.truncation_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = transformers.AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, dtype=torch_dtype
        )
        self.module: Any = model.to(self.device)  # type: ignore[arg-type]
        self.context = int(getattr(model.config, "max_position_embeddings", None) or 1 << 20)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.eos_id = self.tokenizer.eos_token_id

    def forward_logits(self, module: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return module(input_ids=ids, attention_mask=mask.long()).logits  # type: ignore[no-any-return]

    @torch.no_grad()
    def generate(
        self, prompts: list[str], *, temperature: float, max_new_tokens: int, greedy: bool = False
    ) -> list[Sample]:
        if not prompts:
            return []
        enc = self.tokenizer(
            prompts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max(1, min(self.max_prompt_tokens, self.context - max_new_tokens)),
            add_special_tokens=False,
        ).to(self.device)
        sampling: dict[str, Any] = (
            {"do_sample": False}
            if greedy
            else {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        )
        out = self.module.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_id,
            **sampling,
        )
        width = enc["input_ids"].shape[1]
        samples = []
        for row in range(len(prompts)):
            prompt = enc["input_ids"][row][enc["attention_mask"][row].bool()].tolist()
            response: list[int] = []
            for t in out[row, width:].tolist():
                response.append(t)
                if t == self.eos_id:
                    break
            text = str(self.tokenizer.decode(response, skip_special_tokens=True))
            samples.append(Sample(prompt, response, text))
        return samples


Policy = TinyPolicy | HFPolicy


def _pick(logits: torch.Tensor, temperature: float, greedy: bool) -> torch.Tensor:
    if greedy:
        return logits.argmax(-1)
    probs = functional.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1).squeeze(-1)


def token_logprobs(
    policy: Policy, module: Any, samples: list[Sample]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log-prob, entropy, mask), each [B, T], over the response tokens of `samples`, computed by
    `module` (the policy's module, or its DDP wrapper) on prompt + response."""
    seqs = [s.prompt_ids + s.response_ids for s in samples]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), policy.pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.bool)
    target_mask = torch.zeros((len(seqs), width - 1), dtype=torch.bool)
    for row, (seq, s) in enumerate(zip(seqs, samples, strict=True)):
        ids[row, : len(seq)] = torch.tensor(seq)
        attn[row, : len(seq)] = True
        target_mask[row, len(s.prompt_ids) - 1 : len(seq) - 1] = True
    ids, attn, target_mask = ids.to(policy.device), attn.to(policy.device), target_mask.to(policy.device)
    logits = policy.forward_logits(module, ids, attn)[:, :-1].float()
    logp_all = functional.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, ids[:, 1:, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp * target_mask, entropy * target_mask, target_mask


def resolve(uri: str) -> Path:
    """A local directory holding a saved model: a path, file://, pvc:// (mounted) or s3:// (copied)."""
    if uri.startswith(("file://", "pvc://")):
        path = artifacts.Store(uri).local_path()
    elif uri.startswith("s3://"):
        path = Path(tempfile.mkdtemp(prefix="flywheel-policy-"))
        artifacts._fs().get(uri.rstrip("/") + "/", str(path), recursive=True)  # type: ignore[no-untyped-call]
    else:
        path = Path(uri)
    if not (path / "config.json").is_file():
        raise errors.UserError(
            f"spec.policy.model {uri!r}: no Hugging Face model there (config.json missing); "
            "use 'tiny' or a directory written by save_pretrained"
        )
    return path


def load(spec: selfplayrun.Policy, device: str | None = None) -> Policy:
    """The policy a SelfPlayRun names: `tiny`, or a saved Hugging Face causal LM."""
    if spec.model == "tiny":
        return TinyPolicy(device=device or "cpu")
    return HFPolicy(resolve(spec.model), spec.dtype, device)
