"""One driver per resource: an flock on <home>/locks/<kind>/<namespace>/<name>.lock.

`flywheel run` holds the lock of the resource it drives for as long as it drives it, and writes its
pid into the file. A second `flywheel run` of the same resource finds the lock taken and attaches
to the first (follows it and exits with its result) instead of starting the workload again, which
would stop the first one's processes. `flywheel stop` and `flywheel delete` find the driver through
the pid in the file.

flock, not a pid file alone: the kernel drops the lock when the holder dies, even by SIGKILL, so a
stale lock cannot exist, and taking it is atomic across processes. Deleting a lock file while
another process waits on it would let two holders in (one on the unlinked inode), so `acquire`
checks, once it holds the lock, that the path still names the file it locked, and retries if not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType


def lock_path(home: Path, kind: str, name: str, namespace: str = "default") -> Path:
    return home / "locks" / kind.lower() / namespace / f"{name}.lock"


class ResourceLock:
    """The lock of one resource in one home. Not reentrant; one instance per holder."""

    def __init__(self, home: str | Path, kind: str, name: str, namespace: str = "default") -> None:
        self.path = lock_path(Path(home).resolve(), kind, name, namespace)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock without waiting; True when this process now holds it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            if _same_file(fd, self.path):
                break
            os.close(fd)  # removed (delete) between our open and our lock: lock the new file
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self, remove: bool = False) -> None:
        """Let go; `remove` deletes the file too (while still holding it: see the module docstring)."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)  # closing the last descriptor drops the flock
        self._fd = None

    def holder(self) -> int | None:
        """The pid of the process holding the lock, or None when no process holds it (0: held, but
        the holder has not written its pid yet; never signal 0).

        Probes with a shared lock, which conflicts only with a holder: a racing `acquire` may fail
        during the probe, which is why callers retry when this returns None."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_pid(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def wait_released(self, timeout: float, poll: float = 0.1) -> bool:
        """Block until nobody holds the lock; False when it is still held after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.holder() is not None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True

    def __enter__(self) -> ResourceLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _read_pid(fd: int) -> int:
    """The holder's pid; it writes it right after locking, so wait briefly for it to appear."""
    for _ in range(50):
        with contextlib.suppress(ValueError):
            return int(os.pread(fd, 32, 0).decode().strip())
        time.sleep(0.01)
    return 0
