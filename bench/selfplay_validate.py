"""A self-play step's executor wall time: one program at a time (before) beside one batch per phase (after).

Problem: the trainer waited on the sandbox one program at a time (`tasks.validate` and
`tasks.check` call `Pool.run_program` / `check_output` / `check_function` in a loop), so a step
was bound by per-call round trips, not by the pool's workers. `tasks.validate_many` and
`tasks.check_many` send each phase's programs (proposal validation, solve-rate estimation checks,
solver checks) as one batch.

Workload: `rollout.play` for one step over all three tasks with a scripted policy (canned texts,
so generation costs nothing and the step's wall time is the executor's plus parsing): proposals
mixing valid programs, programs that raise, return non-literals or depend on addresses, banned
imports and malformed responses (and, in the `timeouts` workload, an infinite loop every 16th
proposal), induction inputs that sometimes fail, solver answers right and wrong. The buffers are
first filled by one batched step, then the same step (same policy texts, same RNG) is played by
both paths, interleaved round by round on one pool; their Step results must be identical.

    python -m bench.selfplay_validate [--batch-size 16] [--rollouts 4] [--inputs 4] [--workers 4]
                                      [--timeout 1] [--rounds 2]

Prints a table; writes bench/results/selfplay_validate.json.
"""

from __future__ import annotations

import argparse
import ast
import os
import pathlib
import random
import re
import resource
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from bench import _common
from flywheel.api import selfplayrun
from flywheel.selfplay import buffers, executor, policy, rollout

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "selfplay_validate.json"

VALID = [
    ("def f(xs):\n    return sorted(xs, reverse=True)", "[{i}, 3, 9, 1]"),
    ("from collections import Counter\ndef f(s):\n    return dict(Counter(s))", "'abracadabra{i}'"),
    ("def f(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a", "{i} % 60"),
    ("def f(s):\n    return {{w: len(w) for w in s.split()}}", "'the quick brown fox {i}'"),
    ("import math\ndef f(x):\n    return [math.isqrt(x), math.gcd(x, 36), x % 7]", "{i} + 100"),
    ("def f(s):\n    return s[::-1].upper() + str(len(s))", "'level{i}'"),
]
INVALID = [
    ("def f(x):\n    return x / 0", "{i}"),  # raises
    ("def f(x):\n    return object()", "{i}"),  # not a literal
    ("import os\ndef f(x):\n    return os.getpid()", "{i}"),  # banned import: rejected statically
    ("def f(x):\n    return id(object()) % 1000003", "{i}"),  # non-deterministic
]
LOOP = ("def f(x):\n    while True:\n        x += 1", "{i}")
SOLVER_CODE = [
    "def f(a):\n    return a",
    "def f(a):\n    return 0",
    "def f(a):\n    return [a]",
    "import os\ndef f(a):\n    return a",
]


def _fill(template: tuple[str, str], i: int) -> tuple[str, str]:
    code, given = template
    return f"# proposal {i}\n" + code.format(i=i), given.format(i=i)


def _respond(body: str) -> str:
    return f" plan </think> <answer>{body}</answer>"


class ScriptedPolicy:
    """Canned responses by prompt kind, drawn from a seeded RNG: the same seed gives the same texts."""

    def __init__(self, seed: int, loop_every: int = 0) -> None:
        self.rng, self.loop_every, self.n = random.Random(seed), loop_every, 0

    def prompt_fits(self, prompt: str, max_new_tokens: int) -> bool:
        return True  # canned answers: no context to overflow, so the full prompts are used

    def generate(
        self, prompts: list[str], *, temperature: float, max_new_tokens: int, greedy: bool = False
    ) -> list[policy.Sample]:
        return [policy.Sample([1], [2] * (1 + i % 3), _respond(self._body(p))) for i, p in enumerate(prompts)]

    def _body(self, prompt: str) -> str:
        self.n += 1
        roll = self.rng.random()
        if "Create a Python code snippet" in prompt:
            return self._proposal(roll)
        if "Inputs that can be plugged" in prompt:
            n = int(re.search(r"Output (\d+) Inputs", prompt).group(1))  # type: ignore[union-attr]
            bad = ["None"] if roll < 0.15 else []  # fails for most programs: the proposal is invalid
            given = [f"[{self.n}, {k}]" for k in range(n - len(bad))] + bad
            return "".join(f"```input\n{g}\n```\n" for g in given) + "```message\nfind it\n```"
        if "Provide One Possible Input" in prompt:
            return f"```input\n{self.rng.choice(['1', '[1, 2, 3]', repr('abc'), str(self.n)])}\n```"
        if "Deduce the Output" in prompt:
            return f"```output\n{self.rng.choice(['1', '[3, 2, 1]', '6'])}\n```"
        return f"```python\n{self.rng.choice(SOLVER_CODE)}\n```"

    def _proposal(self, roll: float) -> str:
        if self.loop_every and self.n % self.loop_every == 0:
            template = LOOP
        elif roll < 0.1:
            return "no think shape at all"
        else:
            template = self.rng.choice(VALID if roll < 0.75 else INVALID)
        code, given = _fill(template, self.n)
        return f"```python\n{code}\n```\n```input\n{given}\n```"


class OneAtATime:
    """The executor as the trainer used it before: single-program calls only, counted and timed."""

    def __init__(self, pool: executor.Pool) -> None:
        self.pool, self.calls, self.verdicts, self.seconds = pool, 0, 0, 0.0

    def _timed(self, n: int, method: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls, self.verdicts = self.calls + 1, self.verdicts + n

    def run_program(self, code: str, inputs: str) -> Any:
        return self._timed(1, self.pool.run_program, code, inputs)

    def check_output(self, code: str, inputs: str, expected_repr: str) -> bool:
        return bool(self._timed(1, self.pool.check_output, code, inputs, expected_repr))

    def check_function(self, code: str, pairs: list[tuple[str, str]]) -> list[bool]:
        return list(self._timed(1, self.pool.check_function, code, pairs))

    def eval_literal_equal(self, a: str, b: str) -> bool:
        return self.pool.eval_literal_equal(a, b)


class Batched(OneAtATime):
    """The same, with the pool's batched calls (what tasks.validate_many / check_many use)."""

    def run_programs(self, items: Iterable[tuple[str, str]]) -> list[Any]:
        items = list(items)
        return list(self._timed(len(items), self.pool.run_programs, items))

    def check_outputs(self, items: Iterable[tuple[str, str, str]]) -> list[bool]:
        items = list(items)
        return list(self._timed(len(items), self.pool.check_outputs, items))

    def check_functions(self, items: Iterable[tuple[str, Sequence[tuple[str, str]]]]) -> list[list[bool]]:
        items = list(items)
        return list(self._timed(len(items), self.pool.check_functions, items))


def verdict(entry: buffers.Triplet | buffers.FunctionTask | None) -> Any:
    """A validation verdict with its output reprs read as values: a set's repr follows the hash seed
    of the worker that ran it first, and the pool's workers have different seeds, so two equal
    verdicts may spell a set in different orders (every later use compares values)."""
    if entry is None:
        return None
    if isinstance(entry, buffers.FunctionTask):
        return (
            entry.code,
            entry.inputs,
            tuple(map(ast.literal_eval, entry.outputs)),
            entry.message,
            entry.step,
        )
    return (entry.code, entry.input, ast.literal_eval(entry.output), entry.step)


def outcome(step: rollout.Step) -> dict[str, Any]:
    """Everything a step decides from the executor's verdicts (rewards, entries, rates)."""
    return {
        "rewards": [(b.task, b.role, b.rewards) for b in step.batches],
        "entries": {task: [verdict(e) for e in entries] for task, entries in step.new_entries.items()},
        "rates": (step.valid_rate, step.solve_rate, step.proposer_reward),
    }


def play(pool: Any, store: buffers.Buffers, sp: selfplayrun.SelfPlay, seed: int, loop_every: int) -> Any:
    pol = ScriptedPolicy(seed, loop_every)
    return rollout.play(pol, store, pool, sp, step=2, rng=random.Random(seed))  # type: ignore[arg-type]


def filled_store(pool: executor.Pool, sp: selfplayrun.SelfPlay) -> buffers.Buffers:
    """Buffers after one batched step, so induction programs and solver tasks are real proposals."""
    store = buffers.Buffers.seeded(sp.max_buffer_size)
    first = rollout.play(ScriptedPolicy(0), store, pool, sp, step=1, rng=random.Random(0))  # type: ignore[arg-type]
    for task, entries in first.new_entries.items():
        for entry in entries:
            store.add(task, entry)
    return store


def cpu_seconds(pool: executor.Pool) -> float:
    """CPU used so far by this process and the pool's zygotes with their reaped jailed children."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    for pid in pool.worker_pids:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime..cstime
    return total


def measure(pool: executor.Pool, sp: selfplayrun.SelfPlay, rounds: int, loop_every: int) -> dict[str, Any]:
    store = filled_store(pool, sp)
    runs: dict[str, list[dict[str, Any]]] = {"one_at_a_time": [], "batched": []}
    outcomes: dict[int, Any] = {}
    for r in range(rounds):
        order = ["one_at_a_time", "batched"] if r % 2 == 0 else ["batched", "one_at_a_time"]
        for name in order:
            meter = (OneAtATime if name == "one_at_a_time" else Batched)(pool)
            load, cpu, started = os.getloadavg()[0], cpu_seconds(pool), time.perf_counter()
            step = play(meter, store, sp, seed=100 + r, loop_every=loop_every)
            wall = time.perf_counter() - started
            cpu = cpu_seconds(pool) - cpu
            outcomes.setdefault(r, {})[name] = outcome(step)
            runs[name].append(
                {
                    "step_wall_s": round(wall, 3),
                    "executor_wall_s": round(meter.seconds, 3),
                    "executor_calls": meter.calls,
                    "verdicts": meter.verdicts,
                    "cpu_s": round(cpu, 3),
                    "cpu_busy_of_all_cores": round(cpu / wall / (os.cpu_count() or 1), 3),
                    "load_before": load,
                }
            )
    identical = all(o["one_at_a_time"] == o["batched"] for o in outcomes.values())
    summary = {
        name: {
            "executor_wall_s_median": statistics.median(x["executor_wall_s"] for x in rows),
            "step_wall_s_median": statistics.median(x["step_wall_s"] for x in rows),
            "cpu_s_median": statistics.median(x["cpu_s"] for x in rows),
            "cpu_busy_median": statistics.median(x["cpu_busy_of_all_cores"] for x in rows),
            "rounds": rows,
        }
        for name, rows in runs.items()
    }
    before, after = (summary[n]["executor_wall_s_median"] for n in ("one_at_a_time", "batched"))
    valid = outcomes[0]["batched"]["rates"][0]
    return {**summary, "identical_verdicts": identical, "speedup": before / after, "valid_rate": valid}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--inputs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sp = selfplayrun.SelfPlay(
        batch_size=args.batch_size,
        solve_rate_rollouts=args.rollouts,
        induction_inputs=args.inputs,
        references=6,
    )
    with executor.Pool(workers=args.workers, timeout_s=args.timeout, memory_mb=256) as pool:
        workloads = {
            "clean": measure(pool, sp, args.rounds, loop_every=0),
            "timeouts": measure(pool, sp, args.rounds, loop_every=16),
        }
    report = {
        "command": "python -m bench.selfplay_validate " + " ".join(sys.argv[1:]),
        **_common.machine(),
        "args": vars(args),
        "workloads": workloads,
    }
    _common.write_results(RESULTS, report, default=str)
    _print(report)


def _print(report: dict[str, Any]) -> None:
    a = report["args"]
    print(
        f"nproc={report['nproc']} cpu={report['cpu']} workers={a['workers']} timeout={a['timeout']}s "
        f"batch={a['batch_size']} rollouts={a['rollouts']} inputs={a['inputs']} rounds={a['rounds']}"
    )
    print(
        f"{'workload':<10}{'path':<15}{'exec wall s':>12}{'step wall s':>12}{'calls':>7}{'verdicts':>9}"
        f"{'CPU s':>7}{'CPU busy':>9}"
    )
    for name, w in report["workloads"].items():
        for path in ("one_at_a_time", "batched"):
            row = w[path]
            first = row["rounds"][0]
            print(
                f"{name:<10}{path:<15}{row['executor_wall_s_median']:>12.2f}{row['step_wall_s_median']:>12.2f}"
                f"{first['executor_calls']:>7}{first['verdicts']:>9}{row['cpu_s_median']:>7.2f}"
                f"{row['cpu_busy_median']:>9.0%}"
            )
        print(
            f"{'':<10}speedup {w['speedup']:.2f}x, identical verdicts: {w['identical_verdicts']}, "
            f"valid proposal rate {w['valid_rate']}"
        )


if __name__ == "__main__":
    main()
