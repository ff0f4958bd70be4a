"""What a finished (or failed) run reports: result.json in the artifact root and a compact copy in the
container's termination log, which is how the operator learns the outcome without store access.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from flywheel import artifacts, results
from flywheel.api import common, contract, trainingrun

MAX_TERMINATION_BYTES = results.MAX_TERMINATION_BYTES


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


def write(result: Result, store: artifacts.Store) -> str:
    """result.json and the termination message (flywheel.results.write); returns result.json's URI."""
    return results.write(store, result.to_dict(), compact(result))


def read(store: artifacts.Store) -> Result:
    return Result.model_validate_json(store.read_bytes(contract.RESULT_FILE))
