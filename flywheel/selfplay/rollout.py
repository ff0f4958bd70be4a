"""One self-play step's rollouts: six (task, role) batches with rewards, and the new buffer entries.

Order and data flow follow the reference (docs/selfplay.md): every prompt of the step is drawn
from the buffers as they stand at its start (so proposals made now become solver tasks from the
next step on); per task, the proposer batch is generated and validated, every valid proposal is
posed N times to the solver at the rollout temperature to estimate its solve rate (those
estimation rollouts are not trained on), then the solver batch is generated and checked.
Each of those three executor phases is sent to the executor in batches (tasks.validate_many,
tasks.check_many): its workers run the phase's programs side by side, with the same verdicts as
one program at a time.

`selfPlay.batchSize` is the global batch per (task, role), as in the paper (64 x 6 = 384
sequences an update, whatever the number of GPUs). Every rank draws the same global batch (the
buffers and the step's draw RNG are equal on all ranks) and plays its own share: `share(size,
rank, world)` consecutive items, sizes differing by at most one.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from flywheel.api import selfplayrun
from flywheel.selfplay import buffers, policy, rewards, tasks

ORDER = (buffers.ABDUCTION, buffers.DEDUCTION, buffers.INDUCTION)
PROPOSE, SOLVE = "propose", "solve"
GENERATE_CHUNK = 64  # prompts per generate call (bounds activation memory)


@dataclasses.dataclass
class Batch:
    """One (task, role) batch: the trained samples and their scalar rewards."""

    task: str
    role: str
    samples: list[policy.Sample]
    rewards: list[float]


@dataclasses.dataclass
class Step:
    batches: list[Batch]
    new_entries: dict[str, list[Any]]
    valid_rate: dict[str, float]
    solve_rate: dict[str, float]
    proposer_reward: dict[str, float]


def generate(pol: policy.Policy, prompts: list[str], sp: selfplayrun.SelfPlay) -> list[policy.Sample]:
    out: list[policy.Sample] = []
    for i in range(0, len(prompts), GENERATE_CHUNK):
        out += pol.generate(
            prompts[i : i + GENERATE_CHUNK], temperature=sp.temperature, max_new_tokens=sp.max_new_tokens
        )
    return out


def share(size: int, rank: int, world: int) -> slice:
    """This rank's part of a global batch of `size`: the first size % world ranks take one more."""
    base, extra = divmod(size, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def fits(pol: policy.Policy, sp: selfplayrun.SelfPlay) -> tasks.Fits:
    """Whether a prompt reaches `pol` whole, leaving room for the response (prompts.fitted)."""
    return lambda prompt: pol.prompt_fits(prompt, sp.max_new_tokens)


def play(
    pol: policy.Policy,
    store: buffers.Buffers,
    pool: tasks.Executor,
    sp: selfplayrun.SelfPlay,
    step: int,
    rng: random.Random,
    rank: int = 0,
    world: int = 1,
) -> Step:
    """Generate and score this rank's share of the step's batches; the buffers are not modified.
    `rng` must draw the same on every rank (it picks the global batch)."""
    chosen = [t for t in ORDER if t in {str(x) for x in sp.task_types}]
    mine = share(sp.batch_size, rank, world)
    fit = fits(pol, sp)
    solver_tasks = {t: store.solver_batch(t, sp.batch_size, step, rng)[mine] for t in chosen}
    proposals = {
        t: [
            tasks.propose(t, store, sp.references, sp.induction_inputs, rng, fit)
            for _ in range(sp.batch_size)
        ][mine]
        for t in chosen
    }
    result = Step([], {}, {}, {}, {})
    for task in chosen:
        gen_batch, entries = _propose(pol, pool, sp, task, proposals[task], step)
        result.batches.append(gen_batch)
        result.new_entries[task] = entries
        result.valid_rate[task] = len(entries) / len(proposals[task]) if proposals[task] else 0.0
        result.proposer_reward[task] = rewards.mean(gen_batch.rewards) or 0.0
        solve_batch, accuracy = _solve(pol, pool, sp, task, solver_tasks[task])
        result.batches.append(solve_batch)
        result.solve_rate[task] = accuracy
    return result


def _propose(
    pol: policy.Policy,
    pool: tasks.Executor,
    sp: selfplayrun.SelfPlay,
    task: str,
    proposals: list[tasks.Proposal],
    step: int,
) -> tuple[Batch, list[Any]]:
    samples = generate(pol, [p.prompt for p in proposals], sp)
    texts = [s.text for s in samples]
    entries = tasks.validate_many(list(zip(proposals, texts, strict=True)), pool, sp.induction_inputs, step)
    valid = [e for e in entries if e is not None]
    n = sp.solve_rate_rollouts
    fit = fits(pol, sp)
    estimates = generate(pol, [tasks.solver_prompt(task, e, fit) for e in valid for _ in range(n)], sp)
    posed = [(entry, estimates[i * n + j].text) for i, entry in enumerate(valid) for j in range(n)]
    scores = tasks.check_many(task, posed, pool)
    rates = [
        rewards.solve_rate([ok and acc >= 1.0 for ok, acc in scores[i * n : (i + 1) * n]])
        for i in range(len(valid))
    ]
    rate_of = dict(zip(map(id, valid), rates, strict=True))
    scored = [rewards.proposer(e is not None, rate_of.get(id(e))) for e in entries]
    return Batch(task, PROPOSE, samples, scored), valid


def _solve(
    pol: policy.Policy, pool: tasks.Executor, sp: selfplayrun.SelfPlay, task: str, entries: list[Any]
) -> tuple[Batch, float]:
    fit = fits(pol, sp)
    samples = generate(pol, [tasks.solver_prompt(task, e, fit) for e in entries], sp)
    scores = tasks.check_many(task, list(zip(entries, [s.text for s in samples], strict=True)), pool)
    scored = [rewards.solver(ok, acc) for ok, acc in scores]
    accuracy = rewards.mean([acc if ok else 0.0 for ok, acc in scores]) or 0.0
    return Batch(task, SOLVE, samples, scored), accuracy
