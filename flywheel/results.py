"""Where a workload run leaves its outcome, the same for every workload that trains (flywheel.training,
flywheel.selfplay) and on both backends: result.json in the run's artifact root (and a copy at
FLYWHEEL_RESULT_PATH when that is set), and a compact copy in the container's termination message,
which is how the controller learns the outcome without reading the store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flywheel import artifacts
from flywheel.api import contract

MAX_TERMINATION_BYTES = 4096  # the kubelet truncates termination messages at 4 KiB


def termination_log_path() -> Path | None:
    """FLYWHEEL_TERMINATION_LOG, else /dev/termination-log when it exists and is writable (a pod)."""
    configured = os.environ.get(contract.ENV_TERMINATION_LOG)
    if configured:
        return Path(configured)
    default = Path(contract.TERMINATION_LOG)
    return default if default.exists() and os.access(default, os.W_OK) else None


def write(store: artifacts.Store, result: Mapping[str, Any], message: str) -> str:
    """result.json (atomic) in `store` and at FLYWHEEL_RESULT_PATH when set, and `message` (the
    caller's compact form, under MAX_TERMINATION_BYTES) in the termination log when there is one.
    Returns result.json's URI."""
    text = json.dumps(result, indent=2)
    uri = store.write_bytes(contract.RESULT_FILE, text.encode())
    copy = os.environ.get(contract.ENV_RESULT_PATH)
    if copy:
        artifacts.atomic_write_text(Path(copy), text)
    log = termination_log_path()
    if log is not None:
        # Not atomic on purpose: /dev/termination-log is a bind-mounted file and cannot be renamed over.
        log.write_text(message)
    return uri
