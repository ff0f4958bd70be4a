"""Local workload processes: start, track, stop, and never leave orphans.

Each workload runs in its own session (process group), so Ctrl-C in the terminal reaches only the
CLI, which then stops the group cleanly (SIGTERM, a grace period, SIGKILL). A workload tied to the
CLI also gets the kernel's parent-death signal (SIGTERM when the CLI dies, even by SIGKILL), so
`kill -9` on the CLI does not leave training running. torchrun starts its workers in sessions of
their own, which a group signal does not reach; every process started here therefore carries a tag
in its environment (inherited by all descendants) and `stop` sweeps the tagged processes too.

Bookkeeping lives under the home: <home>/runs/<kind>/<name>/process.json (pid, start time, argv),
written atomically, and the output of the workload in <home>/logs/<kind>/<name>.log (appended, one
header line per attempt). The pid file carries the process start time, so a recycled pid is never
mistaken for the workload.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flywheel import artifacts

TAG_ENV = "FLYWHEEL_LOCAL_TAG"
_PR_SET_PDEATHSIG = 1


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """What process.json records about a started workload."""

    pid: int
    start_ticks: int | None
    argv: list[str]
    started: str
    tag: str


class Supervisor:
    """Starts and tracks workload processes of one local home."""

    def __init__(self, home: str | Path) -> None:
        self.home = Path(home).resolve()
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # --- paths ----------------------------------------------------------------------------------
    def run_dir(self, kind: str, name: str) -> Path:
        return self.home / "runs" / kind.lower() / name

    def log_path(self, kind: str, name: str) -> Path:
        return self.home / "logs" / kind.lower() / f"{name}.log"

    def tag(self, kind: str, name: str) -> str:
        return f"{self.home}:{kind.lower()}/{name}"

    # --- lifecycle ------------------------------------------------------------------------------
    def start(
        self,
        kind: str,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        tie_to_parent: bool = True,
        rotate: tuple[int, int] | None = None,
    ) -> ProcessInfo:
        """Start `argv` in a new session, output appended to the log. Whatever still runs of an
        earlier start of the same workload is stopped first (one live attempt per workload).
        `rotate` (max bytes, backups): the output goes through flywheel.local.logwriter, which
        rotates the log by size, for workloads that run for days (servers)."""
        self.stop(kind, name)
        log = self.log_path(kind, name)
        log.parent.mkdir(parents=True, exist_ok=True)
        tag = self.tag(kind, name)
        full_env = {**os.environ, **(env or {}), TAG_ENV: tag, "PYTHONUNBUFFERED": "1"}
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        with log.open("ab") as out:
            out.write(f"--- {started} started: {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out if rotate is None else subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()) if tie_to_parent else None,  # noqa: PLW1509
            )
            if rotate is not None and proc.stdout is not None:
                # Not tied to the CLI: it ends when the workload's end of the pipe closes, so it
                # still writes what the workload says while it stops. Tagged: stop() sweeps it.
                subprocess.Popen(
                    [sys.executable, "-m", "flywheel.local.logwriter", str(log), *map(str, rotate)],
                    stdin=proc.stdout,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=full_env,
                    start_new_session=True,
                )
                proc.stdout.close()
        self._children[proc.pid] = proc
        info = ProcessInfo(proc.pid, _start_ticks(proc.pid), list(argv), started, tag)
        artifacts.atomic_write_text(
            self.run_dir(kind, name) / "process.json", json.dumps(dataclasses.asdict(info))
        )
        return info

    def find(self, kind: str, name: str) -> ProcessInfo | None:
        """The recorded process of a workload, or None when none was started."""
        path = self.run_dir(kind, name) / "process.json"
        try:
            return ProcessInfo(**json.loads(path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def forget(self, kind: str, name: str) -> None:
        """Drop the record of a workload's (stopped) process."""
        (self.run_dir(kind, name) / "process.json").unlink(missing_ok=True)

    def alive(self, info: ProcessInfo) -> bool:
        """Whether the recorded process still runs (and is the same process, not a recycled pid)."""
        child = self._children.get(info.pid)
        if child is not None:
            return child.poll() is None
        ticks = _start_ticks(info.pid)
        if ticks is None:
            return False
        return info.start_ticks is None or ticks == info.start_ticks

    def exit_code(self, info: ProcessInfo) -> int | None:
        """Exit status of a process this Supervisor started; None while it runs or when unknown."""
        child = self._children.get(info.pid)
        return child.poll() if child is not None else None

    def wait(self, info: ProcessInfo, poll: float = 0.2) -> int | None:
        """Block until the process ends; its exit code when it was our child, else None."""
        while self.alive(info):
            time.sleep(poll)
        return self.exit_code(info)

    def stop(self, kind: str, name: str, grace: float = 10.0) -> None:
        """Stop a workload and everything it started: SIGTERM to its group and to tagged processes,
        then SIGKILL to whatever is left after `grace` seconds."""
        info = self.find(kind, name)
        tag = self.tag(kind, name)
        if info is not None and self.alive(info):
            _signal_group(info.pid, signal.SIGTERM)
        for pid in tagged(tag):
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self._reap()
            if not (info is not None and self.alive(info)) and not tagged(tag):
                return
            time.sleep(0.1)
        if info is not None and self.alive(info):
            _signal_group(info.pid, signal.SIGKILL)
        for pid in tagged(tag):
            _signal_group(pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                self._children.pop(pid, None)


def tagged(tag: str) -> list[int]:
    """Live processes (not zombies) whose environment carries `tag`: a workload and its descendants."""
    needle = f"{TAG_ENV}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by `pid`, or the process alone when it leads none."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
                return
        except ProcessLookupError:
            return
        os.kill(pid, sig)


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (field 22 of /proc/<pid>/stat); None when
    the process is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return int(fields[19])


def _die_with_parent(parent: int) -> Any:
    """A preexec_fn: ask the kernel to SIGTERM the child when the CLI dies (Linux only)."""

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the CLI died before prctl took effect
            os._exit(1)

    return preexec
