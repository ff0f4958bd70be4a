"""The warm-start grammar: its outputs are what the sandbox computes, its examples are well formed
for the loop's own parsers, and the held-out set is fixed by its seed."""

from __future__ import annotations

import random

import pytest

from flywheel.api import selfplayrun as api
from flywheel.selfplay import buffers, executor, grammar, heldout, parsing, policy, pretrain, tasks


def test_every_rule_computes_what_the_executor_computes() -> None:
    rng = random.Random(3)
    triplets = [grammar.triplet(rng) for _ in range(60)]
    assert {t.code.split("return")[1].split("\n")[0] for t in triplets} and len(
        {t.code for t in triplets}
    ) > 20
    with executor.Pool(workers=2, timeout_s=5.0, memory_mb=256) as pool:
        results = pool.run_programs([(t.code, t.input) for t in triplets])
        for t, result in zip(triplets, results, strict=True):
            assert result.ok, (t, result)
            assert executor.eval_literal_equal(result.output_repr, t.output), (t, result.output_repr)
        fn = grammar.function_task(rng, 4)
        assert pool.check_function(fn.code, list(zip(fn.inputs, fn.outputs, strict=True))) == [True] * 4


@pytest.mark.parametrize("task", buffers.TASKS)
@pytest.mark.parametrize("role", ["propose", "solve"])
def test_warm_start_examples_are_well_formed_answers_that_fit(task: str, role: str) -> None:
    pol = policy.TinyPolicy()
    fits = lambda p: pol.prompt_fits(p, 192)  # noqa: E731
    prompt, response = pretrain.example(random.Random(0), task, role, 4, 2, fits)
    text = tasks.full_text(response)
    assert fits(prompt) and prompt.endswith("Assistant: <think>") and parsing.format_ok(text)
    assert len(response) + 1 <= 192  # with EOS, inside the response room
    if role == "propose" and task == buffers.INDUCTION:
        assert parsing.parse_induction_proposal(text, 4) is not None
    elif role == "propose":
        assert parsing.parse_program_proposal(text) is not None


def test_held_out_set_is_fixed_by_its_seed_and_covers_the_chosen_tasks() -> None:
    spec = api.SelfPlayRunSpec.model_validate(
        {"selfPlay": {"taskTypes": ["deduction", "induction"], "inductionInputs": 4}, "heldOut": {"tasks": 5}}
    )
    first, again = heldout.task_set(spec), heldout.task_set(spec)
    assert first == again and set(first) == {"deduction", "induction"}
    assert all(len(v) == 5 for v in first.values()) and len(first["induction"][0].inputs) == 4
    other = heldout.task_set(spec.model_copy(update={"held_out": api.HeldOut(tasks=5, seed=9)}))
    assert other != first
