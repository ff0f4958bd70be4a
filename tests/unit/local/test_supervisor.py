"""The process supervisor with real processes: logs, pid files, stop without orphans, parent death."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from flywheel.local import supervisor

# A workload that, like torchrun, starts a worker in a session of its own, then waits.
SPAWNER = textwrap.dedent(
    """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    print("worker", child.pid, flush=True)
    time.sleep(60)
    """
)


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if supervisor._start_ticks(pid) is None:
            return True
        time.sleep(0.05)
    return False


def _worker_pid(log, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("worker "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise AssertionError(f"no worker line in {log.read_text()!r}")


def test_start_writes_log_and_pid_file_and_reports_exit_code(tmp_path):
    sup = supervisor.Supervisor(tmp_path)
    info = sup.start("TrainingRun", "a", [sys.executable, "-c", "print('hello'); raise SystemExit(3)"])
    assert sup.wait(info) == 3
    log = sup.log_path("TrainingRun", "a")
    assert log == tmp_path.resolve() / "logs" / "trainingrun" / "a.log"
    lines = log.read_text().splitlines()
    assert lines[0].startswith("--- ") and "started:" in lines[0]
    assert lines[1] == "hello"
    recorded = json.loads((tmp_path / "runs" / "trainingrun" / "a" / "process.json").read_text())
    assert recorded["pid"] == info.pid
    assert sup.find("TrainingRun", "a") == info


def test_stop_kills_the_group_and_workers_in_their_own_sessions(tmp_path):
    sup = supervisor.Supervisor(tmp_path)
    info = sup.start("TrainingRun", "b", [sys.executable, "-c", SPAWNER])
    worker = _worker_pid(sup.log_path("TrainingRun", "b"))
    assert os.getpgid(worker) != os.getpgid(info.pid)  # a group signal alone would miss it
    assert set(supervisor.tagged(sup.tag("TrainingRun", "b"))) == {info.pid, worker}
    sup.stop("TrainingRun", "b", grace=5)
    assert not sup.alive(info)
    assert _gone(worker)


def test_a_fresh_supervisor_finds_a_live_process_and_rejects_a_recycled_pid(tmp_path):
    first = supervisor.Supervisor(tmp_path)
    info = first.start(
        "TrainingRun", "c", [sys.executable, "-c", "import time; time.sleep(60)"], tie_to_parent=False
    )
    try:
        other = supervisor.Supervisor(tmp_path)  # e.g. `flywheel get` in another process
        found = other.find("TrainingRun", "c")
        assert found is not None and other.alive(found)
        recycled = dataclasses.replace(found, start_ticks=found.start_ticks - 1)
        assert not other.alive(recycled)
        assert other.exit_code(found) is None  # not its child: unknown
    finally:
        first.stop("TrainingRun", "c", grace=5)
    assert not supervisor.Supervisor(tmp_path).alive(info)


def test_starting_again_stops_the_previous_attempt(tmp_path):
    sup = supervisor.Supervisor(tmp_path)
    old = sup.start("TrainingRun", "d", [sys.executable, "-c", "import time; time.sleep(60)"])
    new = sup.start("TrainingRun", "d", [sys.executable, "-c", "print('second')"])
    assert not sup.alive(old)
    assert sup.wait(new) == 0
    assert sup.log_path("TrainingRun", "d").read_text().count("started:") == 2


def test_workload_dies_when_the_cli_is_killed(tmp_path):
    """SIGKILL on the CLI cannot be caught; the parent-death signal still stops the workload,
    and the workload's own handler (torchrun's) takes its workers with it."""
    cli = textwrap.dedent(
        f"""
        import sys, time
        from flywheel.local import supervisor
        sup = supervisor.Supervisor({str(tmp_path)!r})
        info = sup.start("TrainingRun", "e", [sys.executable, "-c", "import time; time.sleep(60)"])
        print(info.pid, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", cli], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        pid = int(proc.stdout.readline())
        assert supervisor._start_ticks(pid) is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        assert _gone(pid), "the workload outlived the killed CLI"
        found = supervisor.Supervisor(tmp_path).find("TrainingRun", "e")
        assert found is not None and not supervisor.Supervisor(tmp_path).alive(found)
    finally:
        proc.kill()
