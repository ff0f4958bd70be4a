"""Copy stdin to a log file that is rotated by size: what keeps a long-running local server's log bounded.

    <server> | python -m flywheel.local.logwriter LOG MAX_BYTES BACKUPS

When LOG would grow past MAX_BYTES it becomes LOG.1 (LOG.1 becomes LOG.2, ..., up to BACKUPS
files), and writing goes on in a fresh LOG: at most (BACKUPS + 1) x MAX_BYTES on disk. The writer
ignores SIGTERM and SIGINT, which the supervisor sends to the whole process group, so it still
records what the server says while it shuts down; it exits when the server's end of the pipe
closes (the server and everything it started have exited), or on SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import BinaryIO

CHUNK = 64 * 1024


def rotate(path: Path, backups: int) -> None:
    """LOG -> LOG.1 -> ... -> LOG.<backups> (the oldest dropped)."""
    if backups < 1:
        path.unlink(missing_ok=True)
        return
    for i in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
    if path.exists():
        os.replace(path, path.with_name(f"{path.name}.1"))


def copy(source: BinaryIO, path: Path, max_bytes: int, backups: int) -> None:
    """Copy `source` to `path` until end of file, rotating by size. A line is never split
    across files (one longer than max_bytes gets a file of its own)."""
    out = path.open("ab")
    size = out.tell()
    pending = b""
    try:
        while chunk := source.read1(CHUNK) if hasattr(source, "read1") else source.read(CHUNK):
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if cut == 0 and len(pending) < max_bytes:
                continue  # wait for the end of the line
            data, pending = (pending[:cut], pending[cut:]) if cut else (pending, b"")
            for line in data.splitlines(keepends=True):
                if size and size + len(line) > max_bytes:
                    out.close()
                    rotate(path, backups)
                    out, size = path.open("ab"), 0
                out.write(line)
                size += len(line)
            out.flush()
        if pending:
            out.write(pending)
    finally:
        out.close()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m flywheel.local.logwriter LOG MAX_BYTES BACKUPS", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    copy(sys.stdin.buffer, Path(argv[0]), int(argv[1]), int(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
