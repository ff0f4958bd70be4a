"""The three tasks end to end: proposer prompt, proposal validation, solver prompt, solver check.

Every program runs in the sandboxed executor (flywheel.selfplay.executor.Pool); nothing a model
wrote is executed or evaluated in this process. A proposal is valid only when its text has the
<think>/<answer> shape, it parses, and the executor ran it successfully and deterministically (two
runs in fresh state) with a non-empty output; a failing or non-deterministic program is rejected,
never stored with an empty output (the reference's bug, see docs/selfplay.md).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Protocol

from flywheel.selfplay import buffers, parsing, prompts

THINK = "<think>"


class ExecResult(Protocol):
    ok: bool
    output_repr: str | None


class Executor(Protocol):
    """The part of flywheel.selfplay.executor.Pool the tasks use."""

    def run_program(self, code: str, inputs: str) -> Any: ...
    def check_output(self, code: str, inputs: str, expected_repr: str) -> bool: ...
    def check_function(self, code: str, pairs: list[tuple[str, str]]) -> list[bool]: ...
    def eval_literal_equal(self, a: str, b: str) -> bool: ...


@dataclasses.dataclass
class Proposal:
    """A proposer prompt and what it was conditioned on (references, or the induction program)."""

    task: str
    prompt: str
    references: list[buffers.Triplet]


def full_text(response: str) -> str:
    """The response with the prompt's opening <think> put back (the format check needs it)."""
    return response if response.lstrip().startswith(THINK) else THINK + response


def propose(task: str, store: buffers.Buffers, k: int, n_inputs: int, rng: random.Random) -> Proposal:
    """A proposer prompt for `task`: K references from its own buffer, or (induction) one program
    from the union of the abduction and deduction buffers."""
    if task == buffers.INDUCTION:
        program = store.induction_program(rng)
        return Proposal(task, prompts.propose_function(program.code, n_inputs), [program])
    refs = store.references(task, k, rng)
    triples = [(r.code, r.input, r.output) for r in refs]
    return Proposal(task, prompts.propose_io(task, triples), refs)


def validate(
    proposal: Proposal, response: str, pool: Executor, n_inputs: int, step: int
) -> buffers.Triplet | buffers.FunctionTask | None:
    """The buffer entry a proposer response yields, or None when it is invalid."""
    text = full_text(response)
    if not parsing.format_ok(text):
        return None
    if proposal.task == buffers.INDUCTION:
        return _validate_function(proposal.references[0], text, pool, n_inputs, step)
    parsed = parsing.parse_program_proposal(text)
    if parsed is None:
        return None
    result = pool.run_program(parsed.code, parsed.input)
    if not result.ok or not result.output_repr:
        return None
    return buffers.Triplet(parsed.code, parsed.input, result.output_repr, step)


def _validate_function(
    program: buffers.Triplet, text: str, pool: Executor, n_inputs: int, step: int
) -> buffers.FunctionTask | None:
    parsed = parsing.parse_induction_proposal(text, n_inputs)
    if parsed is None:
        return None
    outputs = []
    for given in parsed.inputs:
        result = pool.run_program(program.code, given)
        if not result.ok or not result.output_repr:
            return None
        outputs.append(result.output_repr)
    return buffers.FunctionTask(program.code, parsed.inputs, tuple(outputs), parsed.message, step)


def solver_prompt(task: str, entry: buffers.Triplet | buffers.FunctionTask) -> str:
    """What the solver sees: abduction (code, output), deduction (code, input), induction (the
    shown half of the pairs and the message, not the code)."""
    if isinstance(entry, buffers.FunctionTask):
        shown, _ = entry.split()
        return prompts.solve_induction(shown, entry.message)
    if task == buffers.ABDUCTION:
        return prompts.solve_abduction(entry.code, entry.output)
    return prompts.solve_deduction(entry.code, entry.input)


def check(
    task: str, entry: buffers.Triplet | buffers.FunctionTask, response: str, pool: Executor
) -> tuple[bool, float]:
    """(well formed, accuracy in [0, 1]) of one solver response."""
    text = full_text(response)
    if not parsing.format_ok(text):
        return False, 0.0
    if isinstance(entry, buffers.FunctionTask):
        code = parsing.solver_code(text)
        if code is None:
            return False, 0.0
        _, hidden = entry.split()
        header = "\n".join(parsing.imports(entry.code))
        passed = pool.check_function(f"{header}\n{code}" if header else code, hidden)
        return True, 1.0 if passed and all(passed) else 0.0  # binary: every hidden pair must pass
    if task == buffers.ABDUCTION:
        guess = parsing.solver_value(text, "input")
        return True, 1.0 if pool.check_output(entry.code, guess, entry.output) else 0.0
    guess = parsing.solver_value(text, "output")
    return True, 1.0 if pool.eval_literal_equal(entry.output, guess) else 0.0
