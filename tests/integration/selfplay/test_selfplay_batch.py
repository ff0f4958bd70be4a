"""Batched executor calls give exactly the one-at-a-time verdicts, in the same order.

`tasks.validate_many` / `tasks.check_many` (one Pool.run_programs / check_outputs / check_functions
call per step phase) against `tasks.validate` / `tasks.check` in a loop, on a real jailed pool and
a corpus that interleaves valid, invalid, malformed, timing-out and hostile programs, so a batch
holds every kind side by side. The one-at-a-time path is the same pool behind an adapter that
exposes only the single-program calls (bench.selfplay_validate.OneAtATime). Stored outputs are
compared as values: a set's repr follows the hash seed of the worker that ran it first, and each
worker has its own seed, so even two one-at-a-time runs may spell {'a', 'b'} as {'b', 'a'}.
"""

from __future__ import annotations

import ast
import pathlib
import random
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bench import selfplay_validate as bench
from flywheel.api import selfplayrun
from flywheel.selfplay import buffers, executor, parsing, tasks
from tests.integration.selfplay.executor import corpus_data

PROGRAMS = corpus_data.load("programs.yaml")
HOSTILE = corpus_data.load("hostile.yaml")
DIVIDE = "def f(a, b):\n    return a // b"
STALL = "def f(n):\n    while n > 0:\n        pass\n    return n"


@pytest.fixture(scope="module")
def pool() -> Iterator[executor.Pool]:
    # 4 workers, as the spec's default: a batch is split over several workers and threads. 1 s
    # keeps the deliberate infinite loops cheap; the valid programs take milliseconds.
    with executor.Pool(workers=4, timeout_s=1.0, memory_mb=256) as p:
        yield p


def respond(body: str) -> str:
    return f" plan </think> <answer>{body}</answer>"


def io_proposal(task: str, code: str, given: str) -> tuple[tasks.Proposal, str]:
    return tasks.Proposal(task, "p", []), respond(f"```python\n{code}\n```\n```input\n{given}\n```")


def induction_proposal(code: str, inputs: list[str]) -> tuple[tasks.Proposal, str]:
    blocks = "".join(f"```input\n{given}\n```\n" for given in inputs)
    return tasks.Proposal("induction", "p", [buffers.Triplet(code, "1", "1")]), respond(
        blocks + "```message\nm\n```"
    )


def both_ways(pool: executor.Pool, items: list[tuple[tasks.Proposal, str]], n: int) -> tuple[Any, Any, Any]:
    """Verdicts one at a time and batched, and the batched path's call counter."""
    sequential = tasks.validate_many(items, bench.OneAtATime(pool), n, 5)
    counted = bench.Batched(pool)
    return sequential, tasks.validate_many(items, counted, n, 5), counted


def same(a: list[Any], b: list[Any]) -> bool:
    """Equal verdicts, outputs compared as values (bench.selfplay_validate.verdict): a set's repr
    follows the hash seed of whichever worker ran it first."""
    return list(map(bench.verdict, a)) == list(map(bench.verdict, b))


def test_batched_validation_gives_the_sequential_verdicts(pool: executor.Pool) -> None:
    items = [
        io_proposal(("abduction", "deduction")[i % 2], p["code"], p["input"])
        for i, p in enumerate(PROGRAMS["proposals"])
    ]
    items += [
        (tasks.Proposal("deduction", "p", []), "```python\ndef f(a): return a\n```"),  # no <think> shape
        io_proposal("abduction", "def f(a):\n    return a", ""),  # no input
        induction_proposal(DIVIDE, ["4, 2", "9, 3", "1, 1"]),  # valid
        induction_proposal(DIVIDE, ["1, 0", "4, 2", "9, 3"]),  # first input raises
        induction_proposal(DIVIDE, ["4, 2", "9, 3"]),  # too few inputs
        io_proposal("deduction", HOSTILE[0]["code"], "1"),  # fork bomb: rejected statically
    ]
    random.Random(7).shuffle(items)  # valid, failing and hostile programs share batches
    sequential, batched, counted = both_ways(pool, items, 3)
    assert same(batched, sequential)
    assert counted.calls == 3  # one run_programs call per input position (3 induction inputs)
    # The parser renames a proposal's first def to f (the reference's rule), which changes some
    # corpus programs; those left as written must get the executor corpus's verdict.
    stored = {(e.code, e.input): e.output for e in batched if isinstance(e, buffers.Triplet)}
    as_written = [p for p in PROGRAMS["proposals"] if parsing.rename_entry(p["code"]) == p["code"]]
    assert len(as_written) >= 15
    for p in as_written:
        key = (p["code"].strip(), p["input"])
        assert (key in stored) == (p["kind"] == "ok"), p["name"]
        if key in stored and "output" in p:
            assert ast.literal_eval(stored[key]) == ast.literal_eval(p["output"]), p["name"]
    assert sum(isinstance(e, buffers.FunctionTask) for e in batched) == 1  # the valid induction task


def test_batched_checks_give_the_sequential_verdicts(pool: executor.Pool) -> None:
    cases: dict[str, list[tuple[Any, str, float]]] = {"abduction": [], "induction": [], "deduction": []}
    for case in PROGRAMS["abduction"]:
        triplet = buffers.Triplet(case["code"], "0", case["gold"])
        cases["abduction"].append(
            (triplet, respond(f"```input\n{case['input']}\n```"), float(case["expect"]))
        )
    for case in PROGRAMS["induction"]:
        inputs = [a for a, _ in case["pairs"]]
        outputs = [b for _, b in case["pairs"]]
        # the shown half is padding, so the corpus pairs are exactly the hidden ones
        entry = buffers.FunctionTask(
            "def f(a):\n    return a",
            tuple(["0"] * len(inputs) + inputs),
            tuple(["0"] * len(outputs) + outputs),
            "m",
        )
        cases["induction"].append(
            (entry, respond(f"```python\n{case['code']}\n```"), float(all(case["expect"])))
        )
    sets = buffers.Triplet("def f(a):\n    return {1, 2}", "0", "{1, 2}")
    cases["deduction"] = [
        (sets, respond("```output\n{2, 1}\n```"), 1.0),
        (sets, respond("```output\n{3}\n```"), 0.0),
    ]
    for task, rows in cases.items():
        rows.append((rows[0][0], "```input\n1\n```", 0.0))  # malformed: no <think> shape
        random.Random(3).shuffle(rows)
        items = [(entry, text) for entry, text, _ in rows]
        sequential = tasks.check_many(task, items, bench.OneAtATime(pool))
        batched = tasks.check_many(task, items, bench.Batched(pool))
        assert batched == sequential, task
        assert [acc for _, acc in batched] == [expected for _, _, expected in rows], task


def test_a_whole_step_is_identical_batched_and_one_at_a_time(pool: executor.Pool) -> None:
    """rollout.play with a scripted fake policy (canned texts; no model) over both executors."""
    sp = selfplayrun.SelfPlay(batch_size=6, solve_rate_rollouts=2, induction_inputs=4, references=6)
    store = bench.filled_store(pool, sp)
    one, batched = bench.OneAtATime(pool), bench.Batched(pool)
    before = bench.outcome(bench.play(one, store, sp, seed=11, loop_every=0))
    after = bench.outcome(bench.play(batched, store, sp, seed=11, loop_every=0))
    assert after == before
    assert any(before["entries"].values())  # the step did accept proposals
    # abduction: validate, estimate checks, solver checks; deduction: validate (its checks run no
    # code); induction: one validation batch per input position, then the two check batches
    assert batched.calls <= 3 + 1 + (sp.induction_inputs + 2) < one.calls


@pytest.mark.slow  # ~14 s: several programs run into the 1 s timeout, once per path
def test_hostile_and_timing_out_proposals_batched_as_sequential(pool: executor.Pool) -> None:
    canary = pathlib.Path(tempfile.mkdtemp(prefix="flywheel-canary-"))
    marker = pathlib.Path(tempfile.gettempdir()) / f"flywheel-pwned-{uuid.uuid4().hex}"

    def fill(text: str) -> str:
        return text.replace("{canary}", str(canary)).replace("{marker}", str(marker))

    # "ok or timeout" programs are left out: which of the two they get depends on the load.
    hostile = [h for h in HOSTILE if "ok" not in h.get("expect", [])]
    items = [io_proposal("abduction", fill(h["code"]), fill(h.get("input", "1"))) for h in hostile]
    valid = [
        p for p in PROGRAMS["proposals"] if p["kind"] == "ok" and parsing.rename_entry(p["code"]) == p["code"]
    ]
    items += [io_proposal("deduction", p["code"], p["input"]) for p in valid[:6]]
    items += [induction_proposal(STALL, ["0", "1", "0"]), induction_proposal(STALL, ["0", "-1", "0"])]
    random.Random(11).shuffle(items)
    sequential, batched, _ = both_ways(pool, items, 3)
    assert same(batched, sequential)
    assert sum(e is not None for e in batched) == 6 + 1  # the corpus programs and one induction task
    assert not marker.exists() and list(canary.iterdir()) == []
    assert pool.run_program("def f(x):\n    return x + 1", "1").output_repr == "2"  # pool still serves
    canary.rmdir()
