"""Proposal validation and solver checks, run through the real sandboxed executor."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from flywheel.selfplay import buffers, executor, tasks

DOUBLE = "def g(x):\n    return [v * 2 for v in x]"


@pytest.fixture(scope="module")
def pool() -> Iterator[executor.Pool]:
    with executor.Pool(workers=2, timeout_s=1.0, memory_mb=256) as p:
        yield p


def respond(body: str) -> str:
    """A response as the model writes it: the prompt already opened <think>."""
    return f" plan </think> <answer>{body}</answer>"


def proposal(task: str) -> tasks.Proposal:
    return tasks.propose(task, buffers.Buffers.seeded(10), 6, 10, random.Random(0))


def test_proposer_prompt_shows_references_or_the_program() -> None:
    ded = proposal("deduction")
    assert "<snippet_0>" in ded.prompt and "'Hello world'" in ded.prompt
    assert ded.prompt.endswith("Assistant: <think>")
    ind = proposal("induction")
    assert "f(<|YOUR INPUT WILL BE PLUGGED HERE|>)" in ind.prompt and "def f(a)" in ind.prompt


def test_valid_deduction_proposal_gets_its_output_from_the_executor(pool: executor.Pool) -> None:
    entry = tasks.validate(
        proposal("deduction"), respond(f"```python\n{DOUBLE}\n```\n```input\n[1, 2]\n```"), pool, 10, 3
    )
    assert entry == buffers.Triplet("def f(x):\n    return [v * 2 for v in x]", "[1, 2]", "[2, 4]", 3)


@pytest.mark.parametrize(
    "code",
    [
        "def f(x):\n    return 1 / 0",  # fails: rejected, never stored with an empty output
        "def f(x):\n    return object()",  # not a literal output
        "import random\ndef f(x):\n    return random.random()",  # banned import
        "def f(x):\n    while True:\n        pass",  # timeout
    ],
)
def test_failing_or_unusable_programs_are_rejected(pool: executor.Pool, code: str) -> None:
    assert (
        tasks.validate(
            proposal("abduction"), respond(f"```python\n{code}\n```\n```input\n1\n```"), pool, 10, 1
        )
        is None
    )


def test_malformed_proposal_is_rejected_without_running(pool: executor.Pool) -> None:
    assert (
        tasks.validate(
            proposal("deduction"), "```python\ndef f(a): return a\n```\n```input\n1\n```", pool, 10, 1
        )
        is None
    )


def test_induction_proposal_needs_n_inputs_that_all_run(pool: executor.Pool) -> None:
    prop = tasks.Proposal("induction", "p", [buffers.Triplet(DOUBLE.replace("g(", "f("), "[1]", "[2]")])
    inputs = "".join(f"```input\n[{i}]\n```\n" for i in range(4))
    entry = tasks.validate(prop, respond(inputs + "```message\ndouble it\n```"), pool, 4, 2)
    assert isinstance(entry, buffers.FunctionTask)
    assert entry.outputs == ("[0]", "[2]", "[4]", "[6]") and entry.message == "double it"
    bad = inputs.replace("[3]", "None")  # one input fails at run time: the proposal is invalid
    assert tasks.validate(prop, respond(bad + "```message\nm\n```"), pool, 4, 2) is None


def test_deduction_check_compares_values(pool: executor.Pool) -> None:
    entry = buffers.Triplet("def f(a):\n    return {1, 2}", "0", "{1, 2}")
    assert tasks.check("deduction", entry, respond("```output\n{2, 1}\n```"), pool) == (True, 1.0)
    assert tasks.check("deduction", entry, respond("```output\n{3}\n```"), pool) == (True, 0.0)
    assert tasks.check("deduction", entry, "```output\n{2, 1}\n```", pool) == (False, 0.0)


def test_abduction_accepts_any_input_giving_the_output(pool: executor.Pool) -> None:
    entry = buffers.Triplet("def f(a):\n    return a % 3", "4", "1")
    assert tasks.check("abduction", entry, respond("```input\n7\n```"), pool) == (True, 1.0)
    assert tasks.check("abduction", entry, respond("```input\n6\n```"), pool) == (True, 0.0)


def test_induction_solver_must_pass_every_hidden_pair(pool: executor.Pool) -> None:
    task = buffers.FunctionTask(
        "def f(a):\n    return a + 1", ("1", "2", "3", "40"), ("2", "3", "4", "41"), "m"
    )
    prompt = tasks.solver_prompt("induction", task)
    assert "```input_0\n1\n```" in prompt and "```output_1\n3\n```" in prompt
    assert "40" not in prompt and "return a + 1" not in prompt  # hidden pairs and code stay hidden
    good = respond("```python\ndef f(a):\n    return a + 1\n```")
    partial = respond("```python\ndef f(a):\n    return 4 if a == 3 else 0\n```")
    assert tasks.check("induction", task, good, pool) == (True, 1.0)
    assert tasks.check("induction", task, partial, pool) == (True, 0.0)  # binary: one miss fails
    assert tasks.check("induction", task, respond("no code"), pool) == (False, 0.0)


def test_the_api_shortest_proposals_are_well_formed_and_max_new_tokens_must_hold_them() -> None:
    import pydantic

    from flywheel.api import selfplayrun as api
    from flywheel.selfplay import parsing

    program = tasks.full_text(api.SHORTEST_PROGRAM_PROPOSAL)
    assert parsing.format_ok(program) and parsing.parse_program_proposal(program) is not None
    induction = tasks.full_text(api.shortest_induction_proposal(4))
    assert parsing.format_ok(induction)
    parsed = parsing.parse_induction_proposal(induction, 4)
    assert parsed is not None and len(parsed.inputs) == 4
    with pytest.raises(
        pydantic.ValidationError, match=r"selfPlay.maxNewTokens: 16 is too short.*set at least 90"
    ):
        api.SelfPlayRunSpec.model_validate({"selfPlay": {"maxNewTokens": 16, "inductionInputs": 4}})
    ok = {"selfPlay": {"maxNewTokens": 61, "taskTypes": ["deduction"]}}
    assert api.SelfPlayRunSpec.model_validate(ok).self_play.max_new_tokens == 61
    hf = {"policy": {"model": "pvc://models/x"}, "selfPlay": {"maxNewTokens": 23, "inductionInputs": 4}}
    assert api.SelfPlayRunSpec.model_validate(hf)  # 90 bytes, at 4 bytes a token: 23 tokens
