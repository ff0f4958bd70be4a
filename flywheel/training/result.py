"""What a finished (or failed) run reports: result.json in the artifact root and a compact copy in the
container's termination log, which is how the operator learns the outcome without store access.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from flywheel import artifacts
from flywheel.api import common, contract, trainingrun

MAX_TERMINATION_BYTES = 4096  # the kubelet truncates termination messages at 4 KiB


class Result(common.Model):
    """The reporting contract; the operator parses the same camelCase keys."""

    phase: Literal["Succeeded", "Failed"]
    message: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    model: trainingrun.ModelArtifacts | None = None
    data: trainingrun.DataLineage | None = None
    checkpoint: trainingrun.Checkpoint | None = None
    validation: dict[str, Any] | None = None


def compact(result: Result) -> str:
    """The result as JSON under 4 KiB: the validation detail and the message shrink first."""
    text = json.dumps(result.to_dict(), separators=(",", ":"))
    if len(text.encode()) <= MAX_TERMINATION_BYTES:
        return text
    validation = result.validation or {}
    slim = {k: v for k, v in validation.items() if isinstance(v, (bool, int, float, str))}
    smaller = result.model_copy(update={"validation": slim or None, "message": result.message[:500]})
    text = json.dumps(smaller.to_dict(), separators=(",", ":"))
    if len(text.encode()) <= MAX_TERMINATION_BYTES:
        return text
    bare = smaller.model_copy(update={"validation": None, "message": result.message[:200]})
    return json.dumps(bare.to_dict(), separators=(",", ":"))


def termination_log_path() -> Path | None:
    """FLYWHEEL_TERMINATION_LOG, else /dev/termination-log when it exists and is writable (a pod)."""
    configured = os.environ.get(contract.ENV_TERMINATION_LOG)
    if configured:
        return Path(configured)
    default = Path(contract.TERMINATION_LOG)
    return default if default.exists() and os.access(default, os.W_OK) else None


def write(result: Result, store: artifacts.Store) -> str:
    """Write result.json (atomic) and the termination message; return result.json's URI."""
    uri = store.write_bytes(contract.RESULT_FILE, json.dumps(result.to_dict(), indent=2).encode())
    extra = os.environ.get(contract.ENV_RESULT_PATH)
    if extra:
        artifacts.atomic_write_text(Path(extra), json.dumps(result.to_dict(), indent=2))
    log = termination_log_path()
    if log is not None:
        # Not atomic on purpose: /dev/termination-log is a bind-mounted file and cannot be renamed over.
        log.write_text(compact(result))
    return uri


def read(store: artifacts.Store) -> Result:
    return Result.model_validate_json(store.read_bytes(contract.RESULT_FILE))
