"""The per-resource run lock, between real processes (flock is per open file, so a second process
is the only honest test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from flywheel.local import lock as lock_mod

ROOT = Path(__file__).resolve().parents[3]


def _holder(home: Path, name: str = "iris") -> subprocess.Popen[str]:
    """A process that takes the lock, says so, and sleeps."""
    code = textwrap.dedent(
        f"""
        import time
        from flywheel.local import lock
        held = lock.ResourceLock({str(home)!r}, "TrainingRun", {name!r})
        assert held.acquire()
        print("held", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_cannot_take_a_held_lock_and_sees_the_holder(tmp_path):
    proc = _holder(tmp_path)
    try:
        mine = lock_mod.ResourceLock(tmp_path, "TrainingRun", "iris")
        assert mine.acquire() is False and not mine.held
        assert mine.holder() == proc.pid
        other = lock_mod.ResourceLock(tmp_path, "TrainingRun", "other")  # another resource: free
        assert other.acquire() and other.holder() == os.getpid()
        other.release()
    finally:
        proc.kill()
        proc.wait()


def test_the_kernel_drops_the_lock_of_a_process_killed_by_sigkill(tmp_path):
    proc = _holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    mine = lock_mod.ResourceLock(tmp_path, "TrainingRun", "iris")
    assert mine.wait_released(5.0) and mine.holder() is None
    assert mine.acquire() and mine.path.read_text().strip() == str(os.getpid())
    mine.release()


def test_wait_released_times_out_while_held_and_returns_when_the_holder_ends(tmp_path):
    proc = _holder(tmp_path)
    mine = lock_mod.ResourceLock(tmp_path, "TrainingRun", "iris")
    started = time.monotonic()
    assert mine.wait_released(0.3) is False and time.monotonic() - started >= 0.3
    proc.terminate()
    proc.wait()
    assert mine.wait_released(5.0) is True


def test_release_with_remove_deletes_the_file_and_a_replaced_file_is_not_the_locked_one(tmp_path):
    first = lock_mod.ResourceLock(tmp_path, "Deployment", "serve", "ml")
    assert first.acquire()
    assert first.path == tmp_path.resolve() / "locks" / "deployment" / "ml" / "serve.lock"
    fd = os.open(first.path, os.O_RDONLY)  # what a racer would hold: the old inode
    try:
        first.release(remove=True)
        assert not first.path.exists()
        second = lock_mod.ResourceLock(tmp_path, "Deployment", "serve", "ml")
        assert second.acquire()  # a new file, not the unlinked one
        assert not lock_mod._same_file(fd, second.path)
        second.release()
    finally:
        os.close(fd)
