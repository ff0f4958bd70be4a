"""The three task buffers, their seed, and how proposers and solvers sample from them.

As in the reference (docs/selfplay.md): abduction and deduction buffers hold (program, input,
output) triplets, the induction buffer holds a program with n input/output pairs and a message.
Each entry remembers the step that added it. Proposers see K references drawn uniformly without
replacement from their own buffer (induction: one program from the union of the abduction and
deduction buffers); solver batches take last step's entries first and pad uniformly from the
whole buffer. A full buffer keeps its oldest entries and drops new ones, like the reference.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

ABDUCTION, DEDUCTION, INDUCTION = "abduction", "deduction", "induction"
TASKS = (ABDUCTION, DEDUCTION, INDUCTION)

IDENTITY = "def f(a):\n    return a"
IDENTITY_INPUT = '"Hello world"'
IDENTITY_OUTPUT = "'Hello world'"
# The reference's induction seed: the identity program with six inputs (3 shown, 3 hidden).
IDENTITY_INPUTS = (
    '"Hello world"',
    "1",
    "dict(a=1, b=2)",
    "(1.1, 1.2, 1.3)",
    '"[[1, 0, 0], [0, 0, 0], [0, 0, 0]]"',
    "1001101100010001",
)
IDENTITY_OUTPUTS = (
    "'Hello world'",
    "1",
    "{'a': 1, 'b': 2}",
    "(1.1, 1.2, 1.3)",
    "'[[1, 0, 0], [0, 0, 0], [0, 0, 0]]'",
    "1001101100010001",
)
IDENTITY_MESSAGE = "Write a function that returns whatever you input"


@dataclasses.dataclass(frozen=True)
class Triplet:
    """A program `f` (imports included), one argument list and the repr of f(input)."""

    code: str
    input: str
    output: str
    step: int = 0


@dataclasses.dataclass(frozen=True)
class FunctionTask:
    """An induction task: a program, its input/output pairs and the proposer's message."""

    code: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    message: str
    step: int = 0

    def split(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(shown, hidden): the first n//2 pairs are shown to the solver, the rest are held out."""
        pairs = list(zip(self.inputs, self.outputs, strict=True))
        half = len(pairs) // 2
        return pairs[:half], pairs[half:]


Entry = Triplet | FunctionTask


class Buffers:
    """abduction, deduction (triplets) and induction (function tasks), capped at `cap` each."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.entries: dict[str, list[Any]] = {task: [] for task in TASKS}

    @classmethod
    def seeded(cls, cap: int) -> Buffers:
        """Buffers holding the identity seed, added at step 0 (so step 1 treats it as new)."""
        buffers = cls(cap)
        seed = Triplet(IDENTITY, IDENTITY_INPUT, IDENTITY_OUTPUT, step=0)
        buffers.add(ABDUCTION, seed)
        buffers.add(DEDUCTION, seed)
        buffers.add(INDUCTION, FunctionTask(IDENTITY, IDENTITY_INPUTS, IDENTITY_OUTPUTS, IDENTITY_MESSAGE))
        return buffers

    def sizes(self) -> dict[str, int]:
        return {task: len(items) for task, items in self.entries.items()}

    def add(self, task: str, entry: Entry) -> bool:
        """Append; a full buffer drops the new entry (the reference keeps list[:cap])."""
        items = self.entries[task]
        if len(items) >= self.cap:
            return False
        items.append(entry)
        return True

    def references(self, task: str, k: int, rng: random.Random) -> list[Triplet]:
        """K triplets for an abduction/deduction proposer, uniform without replacement; all of
        them when the buffer holds fewer than K."""
        pool = self.entries[task]
        return rng.sample(pool, min(k, len(pool)))

    def induction_program(self, rng: random.Random) -> Triplet:
        """One program for an induction proposer, uniform over abduction + deduction entries
        (seeds sit in both, so they count twice, as in the reference)."""
        pool: list[Triplet] = self.entries[ABDUCTION] + self.entries[DEDUCTION]
        return rng.choice(pool)

    def solver_batch(self, task: str, size: int, step: int, rng: random.Random) -> list[Any]:
        """`size` solver tasks: entries added at step-1 or later first (without replacement), the
        rest uniform without replacement from the whole buffer (repeating when it is too small)."""
        pool = self.entries[task]
        if not pool:
            return []
        recent = [e for e in pool if e.step >= step - 1]
        batch = rng.sample(recent, min(size, len(recent)))
        while len(batch) < size:
            batch.extend(rng.sample(pool, min(size - len(batch), len(pool))))
        return batch

    # --- checkpointing -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "cap": self.cap,
            "entries": {t: [dataclasses.asdict(e) for e in items] for t, items in self.entries.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Buffers:
        buffers = cls(int(data["cap"]))
        for task, items in data["entries"].items():
            for item in items:
                if task == INDUCTION:
                    fixed = {**item, "inputs": tuple(item["inputs"]), "outputs": tuple(item["outputs"])}
                    buffers.entries[task].append(FunctionTask(**fixed))
                else:
                    buffers.entries[task].append(Triplet(**item))
        return buffers
