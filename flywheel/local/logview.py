"""`flywheel logs`: a workload's log as people read it, and following a log that is still written.

Workloads print JSON event lines ({"event": "epoch", "time": ..., "loss": ...}); `render` turns
each into `time level message key=value ...`, and passes any other line (torchrun, BentoML, the
supervisor's `--- ... started:` headers) through as it is. `-o json` prints the file unchanged.

`tail` follows a file in fixed-size reads and never holds more than one line (cut at MAX_LINE),
so following a server for days uses bounded memory; it notices rotation (flywheel.local.logwriter
renames LOG to LOG.1 and starts a new LOG) and goes on in the new file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flywheel.local import progress

CHUNK = 64 * 1024
MAX_LINE = 64 * 1024
"""A longer line is yielded in pieces of this size (bounded memory)."""
_ERROR_EVENTS = {"error", "failed", "failure"}
_WARNING_EVENTS = {"warning", "suspended"}


def render(line: str) -> str:
    """One log line as `time level message key=value`; not a JSON event: the line as it is."""
    event = progress.parse_event(line)
    if event is None:
        return line
    fields = dict(event)
    name = str(fields.pop("event"))
    stamp = str(fields.pop("time", None) or fields.pop("ts", None) or "-")
    level = str(fields.pop("level", None) or _level(name)).upper()
    said = fields.pop("message", None)
    message = f"{name}: {said}" if said else name
    pairs = " ".join(f"{key}={_value(value)}" for key, value in fields.items())
    return " ".join(part for part in (stamp, level, message, pairs) if part)


def tail(path: Path, offset: int, running: Callable[[], bool], poll: float = 0.2) -> Iterator[str]:
    """Lines appended to `path` from byte `offset` on, until `running()` is False and the file is
    read to its end. Waits for the file when it does not exist yet."""
    fh = None
    pending = b""
    try:
        while True:
            alive = running()  # read after checking, so nothing written before the end is missed
            if fh is None:
                try:
                    fh = path.open("rb")
                except FileNotFoundError:
                    if not alive:
                        return
                    time.sleep(poll)
                    continue
                if offset > os.fstat(fh.fileno()).st_size:
                    offset = 0  # rotated or truncated since the offset was taken
                fh.seek(offset)
            chunk = fh.read(CHUNK)
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    yield raw.decode(errors="replace")
                while len(pending) >= MAX_LINE:
                    piece, pending = pending[:MAX_LINE], pending[MAX_LINE:]
                    yield piece.decode(errors="replace")
                continue
            if _rotated(fh, path):
                fh.close()
                fh, offset = None, 0  # the old file is read to its end: go on in the new one
                continue
            if not alive:
                if pending:
                    yield pending.decode(errors="replace")
                return
            time.sleep(poll)
    finally:
        if fh is not None:
            fh.close()


def _rotated(fh: Any, path: Path) -> bool:
    try:
        now = path.stat()
    except FileNotFoundError:
        return False  # between the rename and the new file: keep reading the old one
    mine = os.fstat(fh.fileno())
    return (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino)


def _level(event: str) -> str:
    lowered = event.lower()
    if lowered in _ERROR_EVENTS:
        return "error"
    if lowered in _WARNING_EVENTS:
        return "warning"
    return "info"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return json.dumps(value) if (not value or any(c.isspace() or c in '"=' for c in value)) else value
    return json.dumps(value, separators=(",", ":"), default=str)
