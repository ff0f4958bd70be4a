"""Pool lifecycle on real processes: dead or hung workers are replaced, threads do not cross-talk."""

from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

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
    for layer in ("seccomp", "userns", "netns", "chroot", "setuid", "no_new_privs", "audit_hook", "rlimits"):
        assert isinstance(pool.isolation[layer], bool)
    assert pool.isolation["seccomp"] is True and isinstance(pool.isolation["landlock"], int)


def test_a_killed_worker_is_replaced_and_the_pool_keeps_serving() -> None:
    with executor.Pool(workers=2, timeout_s=5.0) as own:
        victim = own.worker_pids[0]
        os.kill(victim, signal.SIGKILL)  # our own child process, by pid
        results = [own.run_program(DOUBLE, str(i)) for i in range(4)]
        assert {r.kind for r in results} <= {"ok", "crashed"}
        assert results[-1].ok and results[-1].output_repr == "6"
        assert own.replaced == 1 and victim not in own.worker_pids and len(own.worker_pids) == len(own._all)


@pytest.mark.slow
def test_a_hung_worker_is_killed_by_the_watchdog() -> None:
    with executor.Pool(workers=1, timeout_s=0.5) as own:
        own.watchdog_slack_s = 0.5
        frozen = own.worker_pids
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)  # zygotes that never answer
        result = own.run_program(DOUBLE, "1")
        assert result.kind == "crashed" and "replaced" in (result.error or "")
        assert own.replaced == 2 and sum(_gone(pid) for pid in frozen) == 2  # the two that ran it
        for pid in own.worker_pids:
            os.kill(pid, signal.SIGCONT)
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
    # Each zygote has its own hash seed and the runs of a program go to different zygotes, so
    # every verdict is `nondeterministic` and names the hashes of the two workers that disagreed.
    with executor.Pool(workers=8, timeout_s=5.0) as own:
        results = own.run_programs([("def f(x):\n    return str(x) * 2", str(i)) for i in range(16)])
        hashes = own.run_programs([("def f(x):\n    return hash('flywheel')", str(i)) for i in range(16)])
    assert [r.output_repr for r in results] == [repr(str(i) * 2) for i in range(16)]
    assert {r.kind for r in hashes} == {"nondeterministic"}
    seen = {int(h) for r in hashes for h in re.findall(r"'(-?\d+)'", r.error or "")}
    assert len(seen) >= 6, hashes  # not one pair of zygotes: the runs were spread


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
        for victim in own._all:
            os.kill(victim.proc.pid, signal.SIGKILL)  # our own child processes, by pid
            victim.proc.wait()  # dead for sure before the sends below
        results = own.run_programs([(DOUBLE, str(i)) for i in range(4)])
        assert {r.kind for r in results} <= {"ok", "crashed"}
        assert own.replaced >= 2 and len(own.worker_pids) == len(own._all)
        assert own.run_program(DOUBLE, "3").output_repr == "6"


def test_a_worker_that_fails_to_start_leaves_no_jail_and_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []
    real = executor.pool._Worker.__init__

    def broken_after_two(self: Any, *args: Any) -> None:
        if len(started) == 2:
            raise OSError("no more processes")
        real(self, *args)
        started.append(self.proc.pid)

    monkeypatch.setattr(executor.pool._Worker, "__init__", broken_after_two)
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "flywheel-jail-*")))
    with pytest.raises(OSError, match="no more processes"):
        executor.Pool(workers=2)
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "flywheel-jail-*"))) == before
    assert len(started) == 2 and all(_gone(pid) for pid in started)


TRAINER = """
import sys, time
from flywheel.selfplay import executor
pool = executor.Pool(workers=2, timeout_s=30)
print(" ".join(map(str, pool.worker_pids)), flush=True)
pool.run_programs([("def f(x):\\n    while True:\\n        pass", str(i)) for i in range(6)])
"""


def test_zygotes_and_their_children_die_with_a_killed_trainer() -> None:
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER], stdout=subprocess.PIPE, text=True)
    assert trainer.stdout is not None
    zygotes = [int(pid) for pid in trainer.stdout.readline().split()]
    time.sleep(0.5)  # the batch is running: every zygote has a child spinning
    children = [c.pid for z in zygotes for c in psutil.Process(z).children()]
    trainer.kill()
    trainer.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(_gone(pid) for pid in zygotes + children):
        time.sleep(0.1)
    assert children and all(_gone(pid) for pid in zygotes + children)


def test_a_failed_restart_reports_crashed_and_the_next_call_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    with executor.Pool(workers=2, timeout_s=5.0) as own:
        for victim in own._all:
            os.kill(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait()
        real = executor.pool._Worker.__init__
        monkeypatch.setattr(executor.pool._Worker, "__init__", _raise_oserror)
        results = own.run_programs([(DOUBLE, str(i)) for i in range(8)])  # no exception escapes
        assert {r.kind for r in results} == {"crashed"}
        monkeypatch.setattr(executor.pool._Worker, "__init__", real)
        assert own.run_program(DOUBLE, "5").output_repr == "10"  # restarted on the next call


def _raise_oserror(self: Any, *args: Any) -> None:
    raise OSError("Resource temporarily unavailable")
