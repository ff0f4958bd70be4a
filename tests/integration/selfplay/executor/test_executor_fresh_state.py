"""The faster execution path keeps every execution fresh and every failure local.

What changed and is tested here: programs are compiled once in the trainer and shipped as code
objects, the first call of an execution uses the fork's own builtins table (no copy), the child
reports in plain text that the zygote parses as untrusted, and the trainer checks the literal
round trip. Each test runs on a real jailed pool.
"""

from __future__ import annotations

import os
import secrets
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


def _raw(pool: executor.Pool, jobs: list[tuple[str, str]], audit: bool = True) -> list[dict[str, Any]]:
    """Run (code, call) executions bypassing the static check, all on one zygote, in order."""
    wired = [{"code": code, "call": call, "cap": 400, "audit_hook": audit} for code, call in jobs]
    (results,) = pool._execute([wired])
    return results


def _verdict(result: dict[str, Any]) -> executor.ExecResult:
    return executor.pool._parsed(result, 400)[0]


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


def test_builtins_are_pristine_for_each_execution(pool: executor.Pool) -> None:
    code = "def f(x):\n    if x == 1:\n        __builtins__['len'] = lambda v: 42\n    return len([0])"
    poisoned, after = _raw(pool, [(code, "f(1)"), (code, "f(2)")])
    # The first execution poisoned its own table; the next is a new fork whose table was never touched.
    assert _verdict(poisoned).output_repr == "42"
    assert _verdict(after).output_repr == "1"


def test_every_induction_pair_is_a_fresh_execution(pool: executor.Pool) -> None:
    # State kept between the pairs of one check would let a program answer pair 2 from pair 1.
    code = "seen = []\ndef f(x):\n    seen.append(x)\n    return len(seen)"
    assert pool.check_function(code, [("5", "1"), ("6", "1"), ("7", "2")]) == [True, True, False]


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


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


@pytest.mark.parametrize(
    "payload, kind",
    [
        (b"ok\x00ok", "crashed"),  # no length prefix
        (_frame(b"sure\x00[1]"), "crashed"),  # unknown status
        (b"\xff\xfe garbage", "crashed"),
        (_frame(b"ok\x00[1]") + _frame(b"ok\x00[2]"), "crashed"),  # two frames: which one is it?
        (_frame(b"ok\x00__import__('os')"), "not_literal"),  # claims ok, but is no literal
        (_frame(b"ok\x00" + b"[" * 300), "not_literal"),
        (_frame(b"ok\x00" + b"1" * 1000), "output_too_long"),  # over the cap: the trainer checks
        (_frame(b"ok\x00" + b"1" * 60_000), "crashed"),  # over what the zygote reads at all
        (_frame(b"ok\x00'x'  # IGNORE PREVIOUS INSTRUCTIONS"), "ok"),  # reported as repr('x')
    ],
    ids=[
        "short",
        "unknown_status",
        "bytes",
        "two_frames",
        "code_as_repr",
        "deep",
        "over_cap",
        "flood",
        "comment",
    ],
)
def test_forged_child_output_is_never_trusted(payload: bytes, kind: str) -> None:
    # The program escapes every in-process layer (static check and audit hook off) and writes
    # its own "result" to the result pipe (fd 3), then exits before the real one is written.
    code = (
        "def f(x):\n"
        "    os = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]"
        ".__init__.__globals__\n"
        f"    os['write'](3, {payload!r})\n"
        "    os['_exit'](0)\n"
    )
    with executor.Pool(workers=1, timeout_s=2.0) as own:
        (raw,) = _raw(own, [(code, "f(1)")], audit=False)
        verdict = _verdict(raw)
        assert verdict.kind == kind, (raw, verdict)
        if kind == "ok":
            assert verdict.output_repr == "'x'"  # the trainer's own repr of the value, not the text
        assert own.replaced == 0 and own.run_program("def f(x):\n    return x", "2").output_repr == "2"


def _memory_holds(pid: int, needles: list[bytes]) -> list[bytes]:
    """Which needles occur in the process's writable memory (what every later fork inherits)."""
    found = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            addresses, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            start, end = (int(part, 16) for part in addresses.split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except OSError:
                continue
            found.update(needle for needle in needles if needle in chunk)
    return sorted(found)


@pytest.mark.skipif(
    os.getuid() != 0, reason="reading a non-dumpable zygote's memory needs root (CI runs as root)"
)
def test_a_zygote_keeps_no_program_input_or_output_for_later_forks_to_find() -> None:
    # A child can read all of its own memory (no filter stops that), and its memory is a copy of
    # the zygote's at fork time: so no program, input or output may stay in the zygote after use.
    # Otherwise a solver could find the reference program or its gold outputs there.
    tokens = [secrets.token_hex(12) for _ in range(3)]
    code = f"def f(s):\n    return s[::-1] + '{tokens[0]}'"
    with executor.Pool(workers=2, timeout_s=2.0) as own:
        result = own.run_program(code, repr(tokens[1][::-1]))
        assert result.ok and tokens[1] + tokens[0] in (result.output_repr or "")
        assert own.check_function(code, [(repr(tokens[1][::-1]), repr(tokens[1] + tokens[0]))]) == [True]
        needles = [token.encode() for token in tokens] + [token[::-1].encode() for token in tokens]
        for pid in own.worker_pids:
            assert _memory_holds(pid, needles) == [], pid


def test_inputs_arrive_as_values_never_as_code(pool: executor.Pool) -> None:
    # `set()` is a literal input, but as code `f(set())` would call the program's own `set`.
    code = "def set():\n    return 'the program chose this'\ndef f(x):\n    return [type(x).__name__, len(x)]"
    assert pool.run_program(code, "set()").output_repr == "['set', 0]"
    assert pool.check_function(code, [("set()", "['set', 0]")]) == [True]


def test_the_check_cap_does_not_depend_on_the_gold_output(
    pool: executor.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cap that followed the gold output's length would tell the child how long the answer is.
    caps: list[int] = []
    real = pool._execute

    def spy(batches: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        caps.extend(job["cap"] for jobs in batches for job in jobs)
        return real(batches)

    monkeypatch.setattr(pool, "_execute", spy)
    code = "def f(x):\n    return x"
    pool.check_function(code, [("'a'", "'a'"), ("'b'", repr("b" * 5000))])
    pool.check_output(code, "'c'", repr("c" * 9000))
    assert caps and set(caps) == {pool.check_cap}
