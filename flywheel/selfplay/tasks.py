"""The three tasks end to end: proposer prompt, proposal validation, solver prompt, solver check.

Every program runs in the sandboxed executor (flywheel.selfplay.executor.Pool); nothing a model
wrote is executed or evaluated in this process. A proposal is valid only when its text has the
<think>/<answer> shape, it parses, and the executor ran it successfully and deterministically (two
runs in fresh state) with a non-empty output; a failing or non-deterministic program is rejected,
never stored with an empty output (the reference's bug, see docs/selfplay.md).

`validate_many` and `check_many` give exactly the verdicts of `validate` and `check` in a loop, in
the same order, but send a step phase's programs to the executor as batches (`Pool.run_programs`,
`check_outputs`, `check_functions`; induction validation: one batch per input position), so its
workers run side by side instead of the trainer waiting on one program at a time
(bench/selfplay_validate.py). An executor without the batched methods (tasks.BatchExecutor) is
called one program at a time, as `validate` and `check` do.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class BatchExecutor(Executor, Protocol):
    """An executor that also takes many programs per call (flywheel.selfplay.executor.Pool does)."""

    def run_programs(self, items: Iterable[tuple[str, str]]) -> list[Any]: ...
    def check_outputs(self, items: Iterable[tuple[str, str, str]]) -> list[bool]: ...
    def check_functions(self, items: Iterable[tuple[str, Sequence[tuple[str, str]]]]) -> list[list[bool]]: ...


@dataclasses.dataclass
class Proposal:
    """A proposer prompt and what it was conditioned on (references, or the induction program)."""

    task: str
    prompt: str
    references: list[buffers.Triplet]


def full_text(response: str) -> str:
    """The response with the prompt's opening <think> put back (the format check needs it)."""
    return response if response.lstrip().startswith(THINK) else THINK + response


Fits = Callable[[str], bool]


def _anything(_: str) -> bool:
    return True


def propose(
    task: str, store: buffers.Buffers, k: int, n_inputs: int, rng: random.Random, fits: Fits = _anything
) -> Proposal:
    """A proposer prompt for `task`: K references from its own buffer, or (induction) one program
    from the union of the abduction and deduction buffers. `fits` (the policy's prompt budget)
    picks the full or compact prompt (prompts.fitted)."""
    if task == buffers.INDUCTION:
        program = store.induction_program(rng)
        return Proposal(task, prompts.fit_propose_function(program.code, n_inputs, fits), [program])
    refs = store.references(task, k, rng)
    triples = [(r.code, r.input, r.output) for r in refs]
    return Proposal(task, prompts.fit_propose_io(task, triples, fits), refs)


@dataclasses.dataclass(frozen=True)
class _Run:
    """A well-formed proposal's executor work: `code` on each of `inputs`; `entry` builds the buffer
    entry from the outputs once every run succeeded."""

    code: str
    inputs: tuple[str, ...]
    entry: Callable[[tuple[str, ...]], buffers.Triplet | buffers.FunctionTask]


def _plan(proposal: Proposal, response: str, n_inputs: int, step: int) -> _Run | None:
    """What a proposer response asks the executor to run, or None when it is malformed."""
    text = full_text(response)
    if not parsing.format_ok(text):
        return None
    if proposal.task == buffers.INDUCTION:
        function = parsing.parse_induction_proposal(text, n_inputs)
        if function is None:
            return None
        code, message = proposal.references[0].code, function.message
        given = function.inputs
        return _Run(code, given, lambda outs: buffers.FunctionTask(code, given, outs, message, step))
    program = parsing.parse_program_proposal(text)
    if program is None:
        return None
    return _Run(
        program.code,
        (program.input,),
        lambda outs: buffers.Triplet(program.code, program.input, outs[0], step),
    )


def _usable(result: Any) -> bool:
    """A run that succeeded (both fresh runs, equal) with a non-empty output."""
    return bool(result.ok and result.output_repr)


def validate(
    proposal: Proposal, response: str, pool: Executor, n_inputs: int, step: int
) -> buffers.Triplet | buffers.FunctionTask | None:
    """The buffer entry a proposer response yields, or None when it is invalid."""
    run = _plan(proposal, response, n_inputs, step)
    if run is None:
        return None
    outputs = []
    for given in run.inputs:  # one program at a time; the first failure decides
        result = pool.run_program(run.code, given)
        if not _usable(result):
            return None
        outputs.append(result.output_repr)
    return run.entry(tuple(outputs))


def validate_many(
    items: Sequence[tuple[Proposal, str]], pool: Executor, n_inputs: int, step: int
) -> list[buffers.Triplet | buffers.FunctionTask | None]:
    """`validate` of every (proposal, response), their programs sent as executor batches.

    Round k runs the k-th input of every proposal still valid: one batch for deduction and
    abduction (one input each), n_inputs batches for induction. As in `validate`, a proposal's
    first failing input is its last run, so a batch does no work the loop would not have done."""
    if not isinstance(pool, BatchExecutor):
        return [validate(p, response, pool, n_inputs, step) for p, response in items]
    runs = [_plan(p, response, n_inputs, step) for p, response in items]
    alive = {i: run for i, run in enumerate(runs) if run is not None}
    outputs: dict[int, list[str]] = {i: [] for i in alive}
    for k in itertools.count():
        due = [(i, run) for i, run in alive.items() if k < len(run.inputs)]
        if not due:
            break
        results = pool.run_programs([(run.code, run.inputs[k]) for _, run in due])
        for (i, _), result in zip(due, results, strict=True):
            if _usable(result):
                outputs[i].append(result.output_repr)
            else:
                del alive[i]
    return [alive[i].entry(tuple(outputs[i])) if i in alive else None for i in range(len(runs))]


def solver_prompt(task: str, entry: buffers.Triplet | buffers.FunctionTask, fits: Fits = _anything) -> str:
    """What the solver sees: abduction (code, output), deduction (code, input), induction (the
    shown half of the pairs and the message, not the code); full or compact as `fits` allows."""
    if isinstance(entry, buffers.FunctionTask):
        shown, _ = entry.split()
        return prompts.fit_solve_induction(shown, entry.message, fits)
    if task == buffers.ABDUCTION:
        return prompts.fit_solve_abduction(entry.code, entry.output, fits)
    return prompts.fit_solve_deduction(entry.code, entry.input, fits)


@dataclasses.dataclass(frozen=True)
class _Answer:
    """A well-formed solver answer whose accuracy needs the executor: abduction, `code` on the
    guessed input must give the gold output; induction, the solver's `code` on every hidden pair."""

    code: str
    pairs: list[tuple[str, str]]
    induction: bool


def _grade(
    task: str, entry: buffers.Triplet | buffers.FunctionTask, response: str, pool: Executor
) -> tuple[bool, float] | _Answer:
    """The (well formed, accuracy) of an answer that needs no executor, or the run that decides it."""
    text = full_text(response)
    if not parsing.format_ok(text):
        return False, 0.0
    if isinstance(entry, buffers.FunctionTask):
        code = parsing.solver_code(text)
        if code is None:
            return False, 0.0
        _, hidden = entry.split()
        header = "\n".join(parsing.imports(entry.code))
        return _Answer(f"{header}\n{code}" if header else code, hidden, True)
    if task == buffers.ABDUCTION:
        return _Answer(entry.code, [(parsing.solver_value(text, "input"), entry.output)], False)
    guess = parsing.solver_value(text, "output")
    return True, 1.0 if pool.eval_literal_equal(entry.output, guess) else 0.0


def _accuracy(passed: Sequence[bool]) -> tuple[bool, float]:
    return True, 1.0 if passed and all(passed) else 0.0  # binary: every hidden pair must pass


def check(
    task: str, entry: buffers.Triplet | buffers.FunctionTask, response: str, pool: Executor
) -> tuple[bool, float]:
    """(well formed, accuracy in [0, 1]) of one solver response."""
    graded = _grade(task, entry, response, pool)
    if not isinstance(graded, _Answer):
        return graded
    if graded.induction:
        return _accuracy(pool.check_function(graded.code, graded.pairs))
    ((given, gold),) = graded.pairs
    return _accuracy([pool.check_output(graded.code, given, gold)])


def check_many(
    task: str, items: Sequence[tuple[buffers.Triplet | buffers.FunctionTask, str]], pool: Executor
) -> list[tuple[bool, float]]:
    """`check` of every (entry, response), with the programs they need in one executor batch."""
    if not isinstance(pool, BatchExecutor):
        return [check(task, entry, response, pool) for entry, response in items]
    graded = [_grade(task, entry, response, pool) for entry, response in items]
    answers = [g for g in graded if isinstance(g, _Answer)]
    abduction = [(a.code, *a.pairs[0]) for a in answers if not a.induction]
    induction = [(a.code, a.pairs) for a in answers if a.induction]
    outputs = iter(pool.check_outputs(abduction) if abduction else [])  # no round trip for nothing
    functions = iter(pool.check_functions(induction) if induction else [])
    return [
        g if not isinstance(g, _Answer) else _accuracy(next(functions) if g.induction else [next(outputs)])
        for g in graded
    ]
