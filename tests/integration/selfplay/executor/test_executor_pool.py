"""Pool lifecycle on real processes: dead or hung workers are replaced, threads do not cross-talk."""

from __future__ import annotations

import os
import re
import signal
import time

import psutil
import pytest

from flywheel.selfplay import executor

DOUBLE = "def f(x):\n    return x * 2"


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_isolation_report_names_every_layer(pool: executor.Pool) -> None:
    for layer in ("netns", "chroot", "setuid", "no_new_privs", "audit_hook", "restricted_builtins"):
        assert isinstance(pool.isolation[layer], bool)


def test_a_killed_worker_is_replaced_and_the_pool_keeps_serving() -> None:
    with executor.Pool(workers=2, timeout_s=5.0) as own:
        victim = own.worker_pids[0]
        os.kill(victim, signal.SIGKILL)  # our own child process, by pid
        results = [own.run_program(DOUBLE, str(i)) for i in range(4)]
        assert {r.kind for r in results} <= {"ok", "crashed"}
        assert results[-1].ok and results[-1].output_repr == "6"
        assert own.replaced == 1 and victim not in own.worker_pids and len(own.worker_pids) == 2


@pytest.mark.slow
def test_a_hung_worker_is_killed_by_the_watchdog() -> None:
    with executor.Pool(workers=1, timeout_s=0.5) as own:
        own.watchdog_slack_s = 0.5
        (frozen,) = own.worker_pids
        os.kill(frozen, signal.SIGSTOP)  # a zygote that never answers
        started = time.monotonic()
        result = own.run_program(DOUBLE, "1")
        assert result.kind == "crashed" and "replaced" in (result.error or "")
        assert time.monotonic() - started < 5
        assert _gone(frozen) and own.replaced == 1
        assert own.run_program(DOUBLE, "21").output_repr == "42"


def test_concurrent_callers_get_their_own_answers(pool: executor.Pool) -> None:
    items = [(DOUBLE, str(i)) for i in range(40)]
    results = pool.run_programs(items)
    assert [r.output_repr for r in results] == [str(2 * i) for i in range(40)]
    pairs = pool.check_functions([(DOUBLE, [(str(i), str(2 * i)), (str(i), str(i))]) for i in range(1, 11)])
    assert pairs == [[True, False]] * 10


def test_close_kills_workers_and_removes_the_jail() -> None:
    own = executor.Pool(workers=2, timeout_s=1.0)
    pids, jail = own.worker_pids, own.jail
    own.close()
    own.close()  # idempotent
    assert all(_gone(pid) for pid in pids)
    assert not os.path.exists(jail)
    with pytest.raises(RuntimeError, match="closed"):
        own.run_program(DOUBLE, "1")


def test_a_small_batch_runs_on_every_worker() -> None:
    # Each zygote has its own hash seed and the two runs of a program go to two different zygotes,
    # so every verdict is `nondeterministic` and names the hashes of the two workers that ran it.
    with executor.Pool(workers=4, timeout_s=5.0) as own:
        results = own.run_programs([("def f(x):\n    return hash('flywheel')", str(i)) for i in range(8)])
    assert {r.kind for r in results} == {"nondeterministic"}
    seen = {int(h) for r in results for h in re.findall(r"'(-?\d+)'", r.error or "")}
    assert len(seen) == 4, results  # 8 proposals: all 4 workers, not one pair of them


def test_programs_heading_for_a_timeout_do_not_hold_up_their_batch() -> None:
    loop = ("def f(x):\n    while True:\n        x += 1", "1")
    with executor.Pool(workers=2, timeout_s=0.6) as own:
        started = time.monotonic()
        results = own.run_programs([loop, loop, loop] + [(DOUBLE, str(i)) for i in range(5)])
        elapsed = time.monotonic() - started
        pids = own.worker_pids
        assert own.run_program(DOUBLE, "4").output_repr == "8" and own.worker_pids == pids
    assert [r.kind for r in results] == ["timeout"] * 3 + ["ok"] * 5
    assert [r.output_repr for r in results[3:]] == ["0", "2", "4", "6", "8"]
    # One after the other, the three loops alone would take 1.8 s; beside each other about 0.7 s.
    assert elapsed < 1.5, elapsed


@pytest.mark.parametrize(
    "items, workers, size", [(400, 4, 16), (10, 4, 3), (8, 2, 4), (1, 4, 1), (3, 1, 2), (0, 2, 1)]
)
def test_chunk_size_spreads_small_batches_and_caps_large_ones(items: int, workers: int, size: int) -> None:
    assert executor.pool._chunk_size(items, workers) == size


def test_a_worker_that_died_before_a_send_is_replaced_without_a_broken_pipe() -> None:
    """The race CI hit: the worker is dead before the send, so the request stays in the pipe's
    buffer and closing that pipe raised BrokenPipeError out of the replacement."""
    with executor.Pool(workers=2, timeout_s=5.0) as own:
        victim = own._all[0]
        os.kill(victim.proc.pid, signal.SIGKILL)  # our own child process, by pid
        victim.proc.wait()  # dead for sure before the send below
        assert victim.send({"id": 0, "jobs": [], "opts": {}}) is False
        results = own.run_programs([(DOUBLE, str(i)) for i in range(4)])
        assert {r.kind for r in results} <= {"ok", "crashed"}
        assert own.replaced >= 1 and len(own.worker_pids) == 2
        assert own.run_program(DOUBLE, "3").output_repr == "6"
