"""One self-play step end to end with a scripted policy (a fake that returns canned text instead of
sampling, so every valid path runs) and the real sandboxed executor; then the TRR++ update on the
tiny model."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import torch

from flywheel.api import selfplayrun
from flywheel.selfplay import buffers, executor, policy, rollout, tiny, trr

torch.set_num_threads(1)

PROGRAM = "```python\ndef f(x):\n    return x * 3\n```\n```input\n2\n```"
INPUTS = "".join(f"```input\n{i}\n```\n" for i in range(4)) + "```message\nidentity\n```"


class FakeScriptedPolicy:
    """Answers by prompt kind; solver answers alternate right and wrong (solve rate 1/2). At step 1
    the solver batches are the identity seed, whose answers it also knows."""

    def __init__(self) -> None:
        self.calls = 0

    def prompt_fits(self, prompt: str, max_new_tokens: int) -> bool:
        return True  # the full prompts, which it recognises

    def generate(self, prompts: list[str], *, temperature: float, max_new_tokens: int, greedy: bool = False):
        out = []
        for prompt in prompts:
            self.calls += 1
            right = self.calls % 2 == 0
            if "Create a Python code snippet" in prompt:
                body = (
                    PROPOSE_ABD if "abduction" in prompt or "deduce a possible input" in prompt else PROGRAM
                )
            elif "Output 4 Inputs" in prompt:
                body = INPUTS
            elif "Provide One Possible Input" in prompt:
                answer = "'Hello world'" if "Hello world" in prompt else "2"  # the seed, or x * 3 = 6
                body = f"```input\n{answer if right else 5}\n```"
            elif "Deduce the Output" in prompt:
                answer = "'Hello world'" if "Hello world" in prompt else "6"
                body = f"```output\n{answer if right else 7}\n```"
            else:
                body = (
                    "```python\ndef f(a):\n    return a\n```"
                    if right
                    else "```python\ndef f(a):\n    return 0\n```"
                )
            text = f" think </think> <answer>{body}</answer>"
            out.append(policy.Sample([1, 2], [3] * (1 + len(out) % 3), text))
        return out


PROPOSE_ABD = "```python\ndef f(x):\n    return x * 3\n```\n```input\n2\n```"


@pytest.fixture(scope="module")
def pool() -> Iterator[executor.Pool]:
    with executor.Pool(workers=2, timeout_s=2.0, memory_mb=256) as p:
        yield p


def test_one_step_rewards_buffers_and_rates(pool: executor.Pool) -> None:
    sp = selfplayrun.SelfPlay(batch_size=2, solve_rate_rollouts=2, induction_inputs=4, references=6)
    store = buffers.Buffers.seeded(100)
    step = rollout.play(FakeScriptedPolicy(), store, pool, sp, step=1, rng=random.Random(0))  # type: ignore[arg-type]
    assert [(b.task, b.role) for b in step.batches] == [
        (t, r) for t in ("abduction", "deduction", "induction") for r in ("propose", "solve")
    ]
    assert step.valid_rate == {"abduction": 1.0, "deduction": 1.0, "induction": 1.0}
    # 2 estimation rollouts, one right and one wrong: s = 1/2, learnability 1 - s
    assert step.proposer_reward == {"abduction": 0.5, "deduction": 0.5, "induction": 0.5}
    for batch in step.batches:
        assert len(batch.rewards) == 2
        if batch.role == "solve":
            assert sorted(batch.rewards) == [-0.5, 1.0]  # one right (+1), one wrong (-0.5)
    assert step.new_entries["deduction"][0].output == "6"
    assert step.new_entries["induction"][0].outputs == ("0", "1", "2", "3")
    assert store.sizes() == {"abduction": 1, "deduction": 1, "induction": 1}  # play() never mutates


def test_advantages_are_whitened_per_task_and_role() -> None:
    sample = policy.Sample([1], [2, 3], "")
    batches = [
        rollout.Batch("deduction", "propose", [sample, sample], [0.5, -1.0]),
        rollout.Batch("deduction", "solve", [sample, sample], [1.0, 1.0]),
    ]
    first, second = trr.advantages(batches)
    # two rewards: mean -0.25, unbiased sd = 0.75 * sqrt(2)
    assert first == pytest.approx([0.75 / (0.75 * 2**0.5), -0.75 / (0.75 * 2**0.5)], rel=1e-6)
    assert second == [0.0, 0.0]  # equal rewards in a batch: no signal from it


def test_update_raises_the_log_prob_of_the_rewarded_response() -> None:
    torch.manual_seed(0)
    pol = policy.TinyPolicy()
    prompt = tiny.encode("prompt")
    good, bad = (
        policy.Sample(prompt, tiny.encode("xyz"), "xyz"),
        policy.Sample(prompt, tiny.encode("abc"), "abc"),
    )
    optimizer = torch.optim.AdamW(pol.module.parameters(), lr=1e-3, weight_decay=0.0)
    batch = rollout.Batch("abduction", "solve", [good, bad], [1.0, -1.0])

    def logp(sample: policy.Sample) -> float:
        with torch.no_grad():
            lp, _, mask = policy.token_logprobs(pol, pol.module, [sample])
        return float(lp[mask].sum())

    before = (logp(good), logp(bad))
    stats = trr.update(pol, pol.module, optimizer, [batch], entropy_coefficient=0.0, grad_clip=1.0)
    assert stats.tokens == len(good.response_ids) + len(bad.response_ids) and stats.grad_norm > 0
    assert logp(good) > before[0] and logp(bad) < before[1]
