"""The trainer's result as the operator reads it: the JSON summary rank 0 writes to the Master pod's
termination message (flywheel.training.result.Result, camelCase). Tolerant by design: a missing,
truncated or odd message never breaks a reconcile; what cannot be read is dropped and said.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pydantic

from flywheel.api import trainingrun as api


def summary(result: dict[str, Any]) -> str:
    metrics = result.get("metrics") if isinstance(result.get("metrics"), dict) else {}
    shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(numbers(metrics or {}).items()))
    return f"training finished: {shown}" if shown else "training finished"


def numbers(values: dict[str, Any]) -> dict[str, float]:
    # bool is an int, and NaN/inf are not JSON the API server accepts.
    return {
        str(k): float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


RESULT_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "model": api.ModelArtifacts,
    "data": api.DataLineage,
    "checkpoint": api.Checkpoint,
}


def parse(raw: str | None) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
    """(status fields, the parsed result, a note when it is missing or garbled)."""
    if raw is None:
        return {}, None, "the Master pod left no result in its termination message (no metrics recorded)"
    try:
        # NaN/Infinity parse in Python but are not JSON: the API server would refuse the status.
        result = json.loads(raw, parse_constant=lambda _: None)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        return {}, None, f"the Master pod's termination message is not a JSON result: {raw[:80]!r}"
    fields: dict[str, Any] = {}
    metrics = numbers(result["metrics"]) if isinstance(result.get("metrics"), dict) else {}
    if metrics:
        fields["metrics"] = metrics
    for key, model in RESULT_MODELS.items():
        value = result.get(key)
        if not isinstance(value, dict):
            continue
        known = {info.alias or n for n, info in model.model_fields.items()}
        # A malformed block is dropped; the rest of the result still counts.
        with contextlib.suppress(pydantic.ValidationError):
            parsed = model.model_validate({k: v for k, v in value.items() if k in known})
            fields[key] = parsed.model_dump(by_alias=True, exclude_none=True, mode="json")
    if isinstance(result.get("validation"), dict):
        fields["validation"] = result["validation"]
    return fields, result, None
