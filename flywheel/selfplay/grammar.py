"""A seeded grammar of small Python programs, the tiny policy's only data (no outside data).

Each rule is a program template with its meaning written as a Python function and an input
generator, so a program's output is computed here without executing program text (the sandbox
is for model-written code; tests/unit/selfplay checks that the executor agrees with these
outputs). From a rule and an RNG come the three task types' material: a triplet (program, input,
output) for deduction and abduction, and a function task (program, n inputs, their outputs and a
message naming what the program does) for induction.

Used twice with different seeds, kept apart by construction: the warm-start corpus (pretrain)
and the held-out evaluation set (heldout).
"""

from __future__ import annotations

import dataclasses
import random
import string
from collections.abc import Callable
from typing import Any

from flywheel.selfplay import buffers


@dataclasses.dataclass(frozen=True)
class Rule:
    """One program template: `code` and `message` are formatted with the rule's constant k."""

    code: str
    message: str
    meaning: Callable[[Any, int], Any]
    make_input: Callable[[random.Random], Any]


def _int(rng: random.Random) -> int:
    return rng.randint(0, 20)


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase[:8]) for _ in range(rng.randint(1, 4)))


def _ints(rng: random.Random) -> list[int]:
    return [rng.randint(0, 9) for _ in range(rng.randint(1, 3))]


RULES = (
    Rule(
        "def f(a):\n    return a", "returns its input", lambda a, k: a, lambda r: r.choice([_int, _word])(r)
    ),
    Rule("def f(a):\n    return a + {k}", "adds {k}", lambda a, k: a + k, _int),
    Rule("def f(a):\n    return a * {k}", "multiplies by {k}", lambda a, k: a * k, _int),
    Rule("def f(a):\n    return a - {k}", "subtracts {k}", lambda a, k: a - k, _int),
    Rule("def f(a):\n    return a % {k}", "remainder by {k}", lambda a, k: a % k, _int),
    Rule("def f(s):\n    return s[::-1]", "reverses it", lambda s, k: s[::-1], _word),
    Rule("def f(s):\n    return s.upper()", "upper case", lambda s, k: s.upper(), _word),
    Rule("def f(s):\n    return s + 'x' * {k}", "appends {k} x", lambda s, k: s + "x" * k, _word),
    Rule(
        "def f(a):\n    return len(a)", "length", lambda a, k: len(a), lambda r: r.choice([_word, _ints])(r)
    ),
    Rule("def f(a):\n    return sorted(a)", "sorts it", lambda a, k: sorted(a), _ints),
    Rule("def f(a):\n    return max(a)", "largest item", lambda a, k: max(a), _ints),
    Rule("def f(a):\n    return sum(a)", "sum of items", lambda a, k: sum(a), _ints),
    Rule(
        "def f(a):\n    return a[0]", "first item", lambda a, k: a[0], lambda r: r.choice([_word, _ints])(r)
    ),
    Rule(
        "def f(a):\n    return [x + {k} for x in a]",
        "adds {k} to each",
        lambda a, k: [x + k for x in a],
        _ints,
    ),
    Rule(
        "def g(x):\n    return x * 2\ndef f(a):\n    return g(a) + {k}",
        "doubles, adds {k}",
        lambda a, k: a * 2 + k,
        _int,
    ),
)


@dataclasses.dataclass(frozen=True)
class Program:
    code: str
    message: str
    rule: Rule
    k: int

    def run(self, value: Any) -> str:
        return repr(self.rule.meaning(value, self.k))


def program(rng: random.Random) -> Program:
    rule = rng.choice(RULES)
    k = rng.randint(1, 5)
    return Program(rule.code.format(k=k), rule.message.format(k=k), rule, k)


def triplet(rng: random.Random, step: int = 0) -> buffers.Triplet:
    prog = program(rng)
    value = prog.rule.make_input(rng)
    return buffers.Triplet(prog.code, repr(value), prog.run(value), step)


def function_task(rng: random.Random, n: int, step: int = 0) -> buffers.FunctionTask:
    """A program with n distinct inputs where the rule has that many (else repeats)."""
    prog = program(rng)
    values: list[Any] = []
    for _ in range(n * 4):
        value = prog.rule.make_input(rng)
        if repr(value) not in map(repr, values):
            values.append(value)
        if len(values) == n:
            break
    while len(values) < n:
        values.append(values[len(values) % max(1, len(values))])
    inputs = tuple(repr(v) for v in values)
    return buffers.FunctionTask(prog.code, inputs, tuple(prog.run(v) for v in values), prog.message, step)
