"""The policy: one causal LM that both proposes and solves, with sampling and token log-probs.

`load(spec.policy)` gives the built-in `tiny` byte-level model (CPU, tests) or any Hugging Face
causal LM saved in a directory (local path, file://, pvc://, s3://), loaded with local files only
and placed on the GPU when there is one. Both expose the same things the trainer needs:
`generate` (temperature sampling or greedy), `hidden` (final hidden states through a possibly
DDP-wrapped module), `head_weight` (the output embedding) and the token ids of each sample, from
which `token_logprobs` rebuilds log-probs and entropies for the policy gradient without ever
holding the full [batch, sequence, vocabulary] logits (flywheel.selfplay.logprobs).

Weights are always fp32. `policy.dtype: bfloat16` (or float16) on a GPU runs forward passes under
autocast instead of casting the weights: AdamW at the paper's lr 1e-6 moves a bf16 weight only
when the update exceeds half its last-place value (2% of them after 10 steps, measured), so the
fp32 weights act as the master copy the paper's FSDP mixed precision keeps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from flywheel import artifacts, errors
from flywheel.api import contract, selfplayrun
from flywheel.selfplay import logprobs, tiny


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
        self.tiny = model
        self.module: torch.nn.Module = model
        self.device = torch.device(device)
        self.context = model.cfg.context
        self.pad_id = tiny.PAD
        self.autocast_dtype: torch.dtype | None = None  # tests set bfloat16 to check the master weights

    def hidden(self, module: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with autocast(self):
            return module(ids, mask, return_hidden=True)  # type: ignore[no-any-return]

    def head_weight(self) -> torch.Tensor:
        return self.tiny.tok.weight

    def prompt_fits(self, prompt: str, max_new_tokens: int) -> bool:
        """Whether `prompt` reaches the model whole (generate keeps the tail of longer ones)."""
        return len(tiny.encode(prompt)) <= self.context - min(max_new_tokens, self.max_new_tokens_cap)

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
        on_gpu_half = self.device.type == "cuda" and dtype != "float32"
        self.autocast_dtype = getattr(torch, dtype) if on_gpu_half else None
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.padding_side = "left"
        self.tokenizer.truncation_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = transformers.AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, dtype=torch.float32
        )
        self.lm: Any = model.to(self.device)  # type: ignore[arg-type]
        self.module: torch.nn.Module = _Backbone(self.lm)
        self.context = int(getattr(model.config, "max_position_embeddings", None) or 1 << 20)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.eos_id = self.tokenizer.eos_token_id

    def hidden(self, module: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with autocast(self):
            return module(ids, mask)  # type: ignore[no-any-return]

    def head_weight(self) -> torch.Tensor:
        return self.lm.get_output_embeddings().weight  # type: ignore[no-any-return]

    def prompt_fits(self, prompt: str, max_new_tokens: int) -> bool:
        budget = max(1, min(self.max_prompt_tokens, self.context - max_new_tokens))
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= budget

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
        with autocast(self):
            out = self.lm.generate(
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


class _Backbone(torch.nn.Module):
    """What DDP wraps for a Hugging Face model: its forward gives the final hidden states (the
    base model's last_hidden_state, after the final norm), not the full-vocabulary logits; the
    output embedding, a parameter of this module, is applied by flywheel.selfplay.logprobs."""

    def __init__(self, lm: Any) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.lm.base_model(input_ids=ids, attention_mask=mask.long())
        return out.last_hidden_state  # type: ignore[no-any-return]


Policy = TinyPolicy | HFPolicy


def autocast(pol: Policy) -> contextlib.AbstractContextManager[Any]:
    """bf16/fp16 compute over fp32 weights when the policy asks for it (see the module docstring)."""
    if pol.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=pol.device.type, dtype=pol.autocast_dtype)


def _pick(logits: torch.Tensor, temperature: float, greedy: bool) -> torch.Tensor:
    if greedy:
        return logits.argmax(-1)
    probs = functional.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1).squeeze(-1)


def token_logprobs(
    policy: Policy, module: Any, samples: list[Sample], temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log-prob, entropy, mask), each [B, T], over the response tokens of `samples`, computed by
    `module` (the policy's module, or its DDP wrapper) on prompt + response, at the sampling
    `temperature` (the distribution the samples came from)."""
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
    hidden = policy.hidden(module, ids, attn)[:, :-1]
    with autocast(policy):
        logp, entropy = logprobs.selected(
            hidden[target_mask], policy.head_weight(), ids[:, 1:][target_mask], temperature
        )
    zeros = torch.zeros(target_mask.shape, dtype=torch.float32, device=policy.device)
    return zeros.masked_scatter(target_mask, logp), zeros.masked_scatter(target_mask, entropy), target_mask


def resolve(uri: str) -> Path:
    """A local directory holding a saved model: a path, file://, pvc://claim/path (the claim is
    mounted at contract.MODELS_MOUNT, not on the artifacts claim) or s3:// (copied)."""
    if uri.startswith("pvc://"):
        below = uri.removeprefix("pvc://").partition("/")[2]
        path = Path(os.environ.get(contract.ENV_MODELS_ROOT, contract.MODELS_MOUNT)) / below
    elif uri.startswith("file://"):
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
