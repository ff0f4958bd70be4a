"""What the self-play trainer tells the operator, read tolerantly (the SelfPlayRun twin of
trainingresult.py).

Two channels, one shape ({"step", "buffers", "validProposalRate", "solveRate", "proposerReward",
"checkpoint", "batch": {"size", "perRank", "ranks"}, "heldOut": {"step", "solveRate",
"sampledSolveRate"}}, camelCase, per-task figures keyed by task type):
- the result: the JSON summary rank 0 writes to the Master pod's termination message when the run
  ends ({"phase", "message", ...});
- progress: the JSON `{"event": "step", ...}` line rank 0 prints after every step, read from the
  tail of the Master pod's log while the job runs (the operator adapter fetches the tail; the pods
  hold no API credentials, so they cannot write status themselves).
A missing, truncated or odd message never breaks a reconcile: what cannot be read is dropped.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pydantic

from flywheel.api import selfplayrun as api

PER_TASK = ("buffers", "validProposalRate", "solveRate", "proposerReward")
STEP_EVENT = "step"


def fields(result: dict[str, Any]) -> dict[str, Any]:
    """The SelfPlayRunStatus fields a result or step event carries; malformed parts are dropped."""
    out: dict[str, Any] = {}
    step = result.get("step")
    if isinstance(step, int) and not isinstance(step, bool) and step >= 0:
        out["step"] = step
    if isinstance(result.get("checkpoint"), str):
        out["checkpoint"] = result["checkpoint"]
    for key in PER_TASK:
        parsed = _per_task(result.get(key))
        if parsed:
            out[key] = parsed
    batch = result.get("batch")
    if isinstance(batch, dict):
        with contextlib.suppress(pydantic.ValidationError):
            share = api.BatchShare.model_validate({k: v for k, v in batch.items() if _count(v)}).to_dict()
            if share:
                out["batch"] = share
    held = result.get("heldOut")
    if isinstance(held, dict) and _count(held.get("step")):
        rates = {k: _per_task(held.get(k)) for k in ("solveRate", "sampledSolveRate")}
        out["heldOut"] = {"step": held["step"], **{k: v for k, v in rates.items() if v}}
    return out


def _per_task(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    finite = {k: v for k, v in value.items() if _number(v)}  # NaN/inf are not JSON to the API
    with contextlib.suppress(pydantic.ValidationError):
        return api.PerTask.model_validate(finite).to_dict() or None
    return None


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse(raw: str | None) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(status fields, the parsed result, a note when the termination message is missing or garbled)."""
    if raw is None:
        return {}, {}, "the Master pod left no result in its termination message"
    result = _loads(raw)
    if result is None:
        return {}, {}, f"the Master pod's termination message is not a JSON result: {raw[:80]!r}"
    return fields(result), result, None


def progress(log_tail: str | None) -> dict[str, Any]:
    """The status fields of the newest complete step event in a log tail ({} when there is none).
    torchrun may prefix worker lines with "[default0]:"; that prefix is skipped."""
    for line in reversed((log_tail or "").splitlines()):
        start = line.find("{")
        event = _loads(line[start:]) if start >= 0 else None
        if event is not None and event.get("event") == STEP_EVENT:
            found = fields(event)
            if "step" in found:
                return found
    return {}


def summary(result: dict[str, Any], total: int | None = None) -> str:
    """One line for status.message: the step and the solve rate per task."""
    rates = result.get("solveRate") if isinstance(result.get("solveRate"), dict) else {}
    shown = ", ".join(f"{k}={v:.3g}" for k, v in sorted((rates or {}).items()) if _number(v))
    step = result.get("step")
    where = f"step {step}/{total}" if total else f"step {step}"
    return where + (f"; solve rate {shown}" if shown else "")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _loads(text: str) -> dict[str, Any] | None:
    with contextlib.suppress(ValueError):
        # NaN/Infinity parse in Python but are not JSON: the API server would refuse the status.
        value = json.loads(text, parse_constant=lambda _: None)
        if isinstance(value, dict):
            return value
    return None
