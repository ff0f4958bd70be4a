"""Process-wide switches that must be set before DVC is imported: no analytics, no update checks.

DVC reads DVC_NO_ANALYTICS when it decides whether to send usage data; the repositories Flywheel
creates also set `core.analytics false`, but a repository someone else made may not, so the env
switch is the one that holds everywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

OFFLINE_ENV = {
    "DVC_NO_ANALYTICS": "1",
    "DVC_NO_UPDATER": "1",  # DVC otherwise checks its release feed
    "GIT_TERMINAL_PROMPT": "0",  # a private git URL must fail, never wait for a password on a tty
}


def ensure_offline() -> None:
    """Set the offline switches (keeping any value the user chose)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep DVC's INFO chatter (hints such as "To track the changes with git, run: ...") out of the
    caller's output; its own handlers print straight to stdout. Warnings still show."""
    ensure_offline()
    import dvc  # noqa: F401 - its import configures these loggers; do it first so our level sticks

    logs = [logging.getLogger(name) for name in ("dvc", "dvc_objects", "dvc_data")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for log, level in zip(logs, levels, strict=True):
            log.setLevel(level)
