"""The faster execution path keeps every execution fresh and every failure local.

What changed and is tested here: programs are compiled once in the trainer and shipped as code
objects, the first call of an execution uses the fork's own builtins table (no copy), the child
reports in plain text that the zygote parses as untrusted, and the trainer checks the literal
round trip. Each test runs on a real jailed pool.
"""

from __future__ import annotations

from typing import Any

import pytest

from flywheel.selfplay import executor

LEAKERS = [
    # (mutating program, reading program, what the reader must see in a fresh process)
    (
        "import math\ndef f(x):\n    math.pi = 3\n    return math.pi",
        "import math\ndef f(x):\n    return math.pi",
        "3.141592653589793",
    ),
    (
        "import decimal\ndef f(x):\n    decimal.getcontext().prec = 3\n    return str(decimal.Decimal(1) / 7)",
        "import decimal\ndef f(x):\n    return str(decimal.Decimal(1) / 7)",
        "'0.1428571428571428571428571429'",
    ),
    (
        "from collections import Counter\ndef f(x):\n    Counter.most_common = None\n    return 0",
        "from collections import Counter\ndef f(x):\n    return Counter('aab').most_common(1)",
        "[('a', 2)]",
    ),
]


def _raw(pool: executor.Pool, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run jobs bypassing the static check (as the jail tests do), all on one worker, in order."""
    (results,) = pool._execute([jobs])
    return results


@pytest.mark.parametrize(
    "mutator, reader, fresh", LEAKERS, ids=["module_attr", "decimal_context", "class_attr"]
)
def test_state_from_one_program_never_reaches_the_next(
    pool: executor.Pool, mutator: str, reader: str, fresh: str
) -> None:
    # The same batch, so the same zygotes fork both: what the first changed must not be there.
    first, second, third = pool.run_programs([(mutator, "1"), (reader, "1"), (mutator, "2")])
    assert first.ok and third.ok, (first, third)
    assert (second.ok, second.output_repr) == (True, fresh)


def test_builtins_are_pristine_for_each_call_and_each_execution(pool: executor.Pool) -> None:
    code = "def f(x):\n    if x == 1:\n        __builtins__['len'] = lambda v: 42\n    return len([0])"
    both_calls = {"code": code, "calls": ["f(1)", "f(2)"], "mode": "value"}
    only_second = {"code": code, "calls": ["f(2)"], "mode": "value"}
    one, two = _raw(pool, [both_calls, only_second])
    # Call 1 poisoned its own table; call 2 of the same execution got a copy taken before it ran.
    assert [o.get("repr") for o in one["outcomes"]] == ["42", "1"]
    # The next execution is a new fork: its table was never touched.
    assert [o.get("repr") for o in two["outcomes"]] == ["1"]


def test_unseeded_random_draws_fail_and_seeded_ones_are_deterministic(pool: executor.Pool) -> None:
    # `statistics.NormalDist.samples` is the sandbox's one way to `random`'s global generator, which
    # no longer exists in the zygote (nor its reseed in every fork): an unseeded draw fails at once.
    draw = "from statistics import NormalDist\ndef f(seed):\n    return NormalDist().samples(3, seed=seed)"
    unseeded, seeded, again = pool.run_programs([(draw, "None"), (draw, "7"), (draw, "7")])
    assert unseeded.kind == "error" and "unseeded random" in (unseeded.error or ""), unseeded
    assert seeded.ok and seeded.output_repr == again.output_repr, (seeded, again)
    assert len(eval(seeded.output_repr or "")) == 3


def test_a_timeout_crash_or_memory_bomb_fails_only_its_own_program() -> None:
    normal = ("def f(x):\n    return [x, x * 2]", "3")
    with executor.Pool(workers=2, timeout_s=0.5, memory_mb=256) as own:
        pids = own.worker_pids
        results = own.run_programs(
            [
                normal,
                ("def f(x):\n    while True:\n        pass", "1"),
                normal,
                ("def f(x):\n    return len(bytearray(1 << 30))", "1"),
                normal,
                ("def f(x):\n    return f(x + 1)", "1"),
                normal,
            ]
        )
        assert [r.kind for r in results] == ["ok", "timeout", "ok", "error", "ok", "error", "ok"]
        assert "MemoryError" in (results[3].error or "") and "RecursionError" in (results[5].error or "")
        assert {r.output_repr for r in results[0::2]} == {"[3, 6]"}
        assert own.worker_pids == pids and own.replaced == 0  # no zygote was harmed


def test_memory_limit_holds_per_execution_not_per_worker() -> None:
    take = "def f(mb):\n    return len(bytearray(mb * 2 ** 20))"
    with executor.Pool(workers=1, timeout_s=5.0, memory_mb=256) as own:
        results = own.run_programs([(take, "150"), (take, "150"), (take, "400"), (take, "150")])
    # 150 MB fits under 256 MB every time (nothing accumulates across forks); 400 MB never does.
    assert [r.kind for r in results] == ["ok", "ok", "error", "ok"]
    assert "MemoryError" in (results[2].error or "")


def test_a_compile_time_error_is_reported_like_before(pool: executor.Pool) -> None:
    # Parses (so the static check passes) but does not compile; the trainer compiles now.
    result = pool.run_program("def f(x):\n    nonlocal y\n    return x", "1")
    assert result.kind == "error" and "SyntaxError" in (result.error or "")
    assert pool.run_program("def f(x):\n    return x", "5").output_repr == "5"


@pytest.mark.parametrize(
    "payload, kind",
    [
        (b"ok\x00ok", "crashed"),  # too few fields
        (b"ok\x00sure\x00[1]", "crashed"),  # unknown status
        (b"\xff\xfe garbage", "crashed"),
        (b"ok\x00ok\x00__import__('os')", "not_literal"),  # claims ok, but is no literal
        (b"ok\x00ok\x00" + b"[" * 5000, "not_literal"),
    ],
    ids=["short", "unknown_status", "bytes", "code_as_repr", "deep_brackets"],
)
def test_forged_child_output_is_never_trusted(payload: bytes, kind: str) -> None:
    # The program escapes every in-process layer (static check and audit hook off) and writes
    # its own "result" to the result pipe, then exits before the real one is written.
    code = (
        "def f(x):\n"
        "    os = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]"
        ".__init__.__globals__\n"
        "    for fd in range(3, 64):  # the one descriptor left open: the result pipe\n"
        "        try:\n"
        "            os['fstat'](fd)\n"
        "            break\n"
        "        except OSError:\n"
        "            pass\n"
        f"    os['write'](fd, {payload!r})\n"
        "    os['_exit'](0)\n"
    )
    with executor.Pool(workers=1, timeout_s=2.0) as own:
        job = {"code": code, "calls": ["f(1)"], "mode": "value", "audit_hook": False}
        (raw,) = _raw(own, [job])
        if kind == "crashed":
            assert raw["status"] == "crashed", raw
        else:
            assert raw["status"] == "ok", raw
            verdict = executor.pool._outcome(raw)
            assert (verdict.ok, verdict.kind) == (False, kind)
        assert own.replaced == 0 and own.run_program("def f(x):\n    return x", "2").output_repr == "2"
