"""Prompts that fit the policy: full when there is room, compact (and fewer references) when not,
and the import rule stated from the executor's own allow-list."""

from __future__ import annotations

import random

from flywheel.selfplay import buffers, executor, policy, prompts, rollout, tasks, tiny

REFS = [(f"def f(a):\n    return a + {k}", str(k), str(2 * k)) for k in range(6)]


def test_the_proposer_is_told_exactly_the_allowed_imports() -> None:
    full = prompts.propose_io("deduction", REFS)
    small = prompts.propose_io_compact("deduction", REFS[:1])
    for prompt in (full, small):
        assert prompts.allowed_imports() in prompt
        assert all(module in prompt for module in executor.ALLOWED_MODULES)
    assert "hashlib" not in full  # the reference's banned-word list is gone


def test_tiny_context_gets_compact_prompts_that_keep_the_task_statement() -> None:
    pol = policy.TinyPolicy()
    fits = lambda p: pol.prompt_fits(p, 128)  # noqa: E731
    assert len(tiny.encode(prompts.propose_io("deduction", REFS))) > pol.context  # the full one cannot fit
    prompt = prompts.fit_propose_io("deduction", REFS, fits)
    assert fits(prompt) and prompt.startswith("Think in <think>")
    assert "predict the output" in prompt and 0 < prompt.count("```python") < len(
        REFS
    )  # references dropped to fit
    assert prompts.fit_propose_io("deduction", REFS, lambda _: True) == prompts.propose_io("deduction", REFS)
    store = buffers.Buffers.seeded(10)
    for task in buffers.TASKS:
        proposal = tasks.propose(task, store, 6, 4, random.Random(0), fits)
        assert fits(proposal.prompt)
    entry = store.entries["induction"][0]
    assert fits(tasks.solver_prompt("induction", entry, fits))


def test_shares_of_a_global_batch_cover_it_once() -> None:
    parts = [rollout.share(10, rank, 4) for rank in range(4)]
    assert [p.stop - p.start for p in parts] == [3, 3, 2, 2]
    assert sorted(i for p in parts for i in range(10)[p]) == list(range(10))
