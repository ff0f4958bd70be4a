"""Warm-start of the tiny policy: supervised training on grammar programs, cached with a model card.

Absolute Zero starts self-play from a pretrained base model; a randomly initialised tiny policy
emits random bytes, never the <think>/<answer> shape, so every reward is -1 and nothing is
learned. This gives it a base: for each of the six (task, role) pairs, prompts built exactly as
self-play builds them (prompts.fitted for the tiny context) and the well-formed response a
grammar program implies (flywheel.selfplay.grammar), trained with cross-entropy on the response
bytes. No outside data, no downloaded weights; the seed fixes the corpus and the initial weights.

The result is cached under <FLYWHEEL_CACHE_DIR>/selfplay-warmstart/<key>/ (weights.pt, MODEL_CARD.md,
card.json), the key hashing everything that changes the weights, so a second run reuses it.
`flywheel selfplay pretrain -f FILE` builds it ahead of time.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional

from flywheel import artifact_cache, artifacts
from flywheel.api import selfplayrun
from flywheel.selfplay import buffers, grammar, prompts, tasks, tiny

VERSION = 1  # bump when the grammar, the prompts' shape or the recipe changes
CACHE_DIR = "selfplay-warmstart"


def _answer(body: str) -> str:
    return f"</think><answer>{body}</answer>"


def example(
    rng: random.Random, task: str, role: str, n_inputs: int, k: int, fits: Callable[[str], bool]
) -> tuple[str, str]:
    """One (prompt, response) pair as self-play would pose and a good policy answer it."""
    if role == "propose" and task == buffers.INDUCTION:
        fn = grammar.function_task(rng, n_inputs)
        blocks = "".join(f"```input\n{i}\n```\n" for i in fn.inputs)
        return prompts.fit_propose_function(fn.code, n_inputs, fits), _answer(
            f"{blocks}```message\n{fn.message}\n```"
        )
    if role == "propose":
        refs = [grammar.triplet(rng) for _ in range(rng.randint(0, k))]
        new = grammar.triplet(rng)
        prompt = prompts.fit_propose_io(task, [(r.code, r.input, r.output) for r in refs], fits)
        return prompt, _answer(f"```python\n{new.code}\n```\n```input\n{new.input}\n```")
    if task == buffers.INDUCTION:
        fn = grammar.function_task(rng, n_inputs)
        return tasks.solver_prompt(task, fn, fits), _answer(f"```python\n{fn.code}\n```")
    t = grammar.triplet(rng)
    if task == buffers.ABDUCTION:
        return tasks.solver_prompt(task, t, fits), _answer(f"```input\n{t.input}\n```")
    return tasks.solver_prompt(task, t, fits), _answer(f"```output\n{t.output}\n```")


def key(spec: selfplayrun.SelfPlayRunSpec) -> str:
    """What the warm-started weights depend on: the recipe, the tiny model, and the prompt shape
    (task types, induction inputs, references, the response room that decides prompt fitting)."""
    assert spec.policy.warm_start is not None
    sp = spec.self_play
    parts = {
        "version": VERSION,
        "warmStart": spec.policy.warm_start.to_dict(),
        "tiny": tiny.TinyConfig().__dict__,
        "tasks": sorted(str(t) for t in sp.task_types),
        "inductionInputs": sp.induction_inputs,
        "references": sp.references,
        "maxNewTokens": min(sp.max_new_tokens, selfplayrun.TINY_MAX_NEW_TOKENS),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


PROMPT_WEIGHT = 0.2  # prompts repeat the instructions; their code blocks still teach the syntax


def _batch(
    pairs: list[tuple[str, str]], context: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids, attention mask, next-byte targets and their loss weights (response 1, prompt
    PROMPT_WEIGHT, padding 0) for right-padded pairs."""
    rows = []
    for prompt, response in pairs:
        answer = [*tiny.encode(response), tiny.EOS]
        rows.append((tiny.encode(prompt)[-(context - len(answer)) :], answer))
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), tiny.PAD, dtype=torch.long)
    weights = torch.zeros((len(rows), width))
    for row, (p, a) in enumerate(rows):
        ids[row, : len(p) + len(a)] = torch.tensor(p + a)
        weights[row, : len(p) - 1] = PROMPT_WEIGHT
        weights[row, len(p) - 1 : len(p) + len(a) - 1] = 1.0
    targets = torch.cat([ids[:, 1:], torch.full((len(rows), 1), tiny.PAD)], dim=1)
    return ids, ids != tiny.PAD, targets, weights


def train(
    spec: selfplayrun.SelfPlayRunSpec, log: Callable[[dict[str, Any]], None] | None = None
) -> tuple[tiny.TinyLM, dict[str, Any]]:
    """Supervised warm-start per spec.policy.warmStart; (model, training figures)."""
    from flywheel.selfplay import policy  # the fitting rule lives with the policy

    ws = spec.policy.warm_start
    assert ws is not None
    sp = spec.self_play
    torch.manual_seed(ws.seed)
    rng = random.Random(f"warm-start:{ws.seed}")
    pol = policy.TinyPolicy()
    model = pol.module
    assert isinstance(model, tiny.TinyLM)

    def fits(prompt: str) -> bool:
        return pol.prompt_fits(prompt, sp.max_new_tokens)

    roles = [(str(t), r) for t in sp.task_types for r in ("propose", "solve")]
    optimizer = torch.optim.AdamW(model.parameters(), lr=ws.learning_rate, weight_decay=0.01)
    warmup = max(1, ws.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / ws.steps))))
        ),
    )
    started, losses = time.monotonic(), []
    for step in range(1, ws.steps + 1):
        pairs = [
            example(rng, *rng.choice(roles), sp.induction_inputs, sp.references, fits)
            for _ in range(ws.batch_size)
        ]
        ids, mask, targets, weights = _batch(pairs, model.cfg.context)
        logits = model(ids, mask)
        each = functional.cross_entropy(logits.reshape(-1, tiny.VOCAB), targets.reshape(-1), reduction="none")
        response = weights.reshape(-1) == 1.0
        loss = (each * weights.reshape(-1)).sum() / weights.sum()
        answer_loss = float(each[response].mean().detach())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(answer_loss)  # what is reported: loss per response byte
        if log is not None and (step % 50 == 0 or step == ws.steps):
            log(
                {
                    "event": "warmStart",
                    "step": step,
                    "steps": ws.steps,
                    "loss": round(sum(losses[-50:]) / len(losses[-50:]), 4),
                }
            )
    figures = {
        "steps": ws.steps,
        "examples": ws.steps * ws.batch_size,
        "firstLoss": round(losses[0], 4),
        "finalLoss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
        "seconds": round(time.monotonic() - started, 1),
    }
    return model, figures


def card(spec: selfplayrun.SelfPlayRunSpec, figures: dict[str, Any], cache_key: str) -> str:
    ws = spec.policy.warm_start
    assert ws is not None
    sp = spec.self_play
    return f"""# Model card: tiny self-play policy, warm-started ({cache_key})

- **Model**: flywheel.selfplay.tiny.TinyLM, byte-level causal transformer, {tiny.TinyConfig()}, \
{sum(p.numel() for p in tiny.TinyLM().parameters())} weights, random init (seed {ws.seed}).
- **Data**: generated by flywheel.selfplay.grammar (version {VERSION}): {len(grammar.RULES)} program \
templates (arithmetic, strings, lists, one helper-first program) with constants 1-5; no outside data, \
no downloaded weights. {figures["examples"]} examples, drawn fresh each step from seed {ws.seed}.
- **Task**: the six self-play prompts (propose/solve x {", ".join(sorted(str(t) for t in sp.task_types))}), \
built as self-play builds them for this context ({sp.induction_inputs} induction inputs, up to \
{sp.references} references, {min(sp.max_new_tokens, selfplayrun.TINY_MAX_NEW_TOKENS)} response bytes), \
answers with an empty <think> and the well-formed <answer>.
- **Training**: {ws.steps} AdamW steps of {ws.batch_size}, lr {ws.learning_rate} (5% warm-up, \
cosine to 10%), cross-entropy on response bytes (prompt bytes weighted {PROMPT_WEIGHT}); \
loss per response byte \
{figures["firstLoss"]} -> {figures["finalLoss"]}, {figures["seconds"]} s on CPU.
- **Intended use**: the starting point of a tiny SelfPlayRun on CPU, so the loop can earn rewards.
- **Limits**: it knows only this grammar; held-out solve rates are in the run's status (heldOut).
"""


def ensure(
    spec: selfplayrun.SelfPlayRunSpec,
    cache_root: Path | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """The cached warm-start folder for `spec` (trained now if absent); holds weights.pt."""
    cache_key = key(spec)
    folder = (cache_root or artifact_cache.ROOT) / CACHE_DIR / cache_key
    if (folder / "weights.pt").is_file():
        return folder
    model, figures = train(spec, log)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"weights.pt.{time.monotonic_ns()}.tmp"
    torch.save(model.state_dict(), tmp)
    artifacts.atomic_write_text(folder / "MODEL_CARD.md", card(spec, figures, cache_key))
    artifacts.atomic_write_text(folder / "card.json", json.dumps({"key": cache_key, **figures}, indent=2))
    tmp.rename(folder / "weights.pt")  # last: its presence means the folder is complete
    return folder


def cli(args: Any) -> int:
    """`flywheel selfplay pretrain -f FILE`: build (or find) the warm-start of each tiny SelfPlayRun
    in FILE; one without a warmStart block gets the default recipe. Prints the folder and card."""
    from flywheel import errors
    from flywheel.api import loading

    runs = [r for r in loading.load_file(args.filename) if isinstance(r, selfplayrun.SelfPlayRun)]
    if not runs:
        raise errors.UserError(f"{args.filename}: no SelfPlayRun found")
    for run in runs:
        spec = run.spec
        if spec.policy.model != "tiny":
            raise errors.UserError(
                f"{run.name}: spec.policy.model is {spec.policy.model!r}; only tiny is warm-started"
            )
        if spec.policy.warm_start is None:
            spec = spec.model_copy(update={"policy": selfplayrun.Policy(warm_start=selfplayrun.WarmStart())})

        def show(event: dict[str, Any], name: str = run.name) -> None:
            print(
                f"{name}: warm-start step {event['step']}/{event['steps']} loss {event['loss']}", flush=True
            )

        folder = ensure(spec, Path(args.cache) if args.cache else None, show)
        print(f"{run.name}: {folder}\n{(folder / 'MODEL_CARD.md').read_text()}")
    return 0
