"""The data gate: Great Expectations 1.x over the training data, before anything is trained.

A failed gate is a result, not an exception: the run ends with the failures in its status and
nothing trained. Unreadable data (an empty file, a truncated CSV, a damaged Parquet file) is a
failed result too, with a message that says what happened to the file. Only a mistake in the
expectations themselves (an unknown expectation type, bad arguments) raises UserError.

Great Expectations takes seconds to import and to build a context, so one ephemeral context with
one pandas datasource is made per process, on first use, and reused by every validation.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from flywheel import errors
from flywheel.api import trainingrun
from flywheel.data import expectations, frames

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # before GX is imported: no usage events


@dataclasses.dataclass
class GateResult:
    """The gate's verdict; `to_status()` is what goes into TrainingRun status.validation."""

    success: bool
    evaluated: int
    failures: list[dict[str, Any]]
    """Each: {expectation, column, observed, message}."""
    summary: str
    """One line per failure, each saying what to fix; "passed: N expectations" on success."""

    def to_status(self) -> dict[str, Any]:
        return {"success": self.success, "evaluated": self.evaluated, "failures": self.failures[:20],
                "summary": self.summary}  # fmt: skip


def validate(
    frame_or_path: pd.DataFrame | Path | str,
    spec: trainingrun.TrainingRunSpec,
    extra_expectations_file: Path | None = None,
) -> GateResult:
    """Run the schema checks, spec.data.validation.expectations and the file's expectations."""
    if isinstance(frame_or_path, pd.DataFrame):
        frame = frame_or_path
    else:
        try:
            frame = frames.read(Path(frame_or_path))
        except frames.ReadError as exc:
            return _failed_read(str(exc))
    frame = frame.rename(columns=str)  # GX and our messages address columns by name
    checks = expectations.derive(spec, frame)
    if extra_expectations_file is not None:
        checks.extend(expectations.load_file(extra_expectations_file))
    results = _run(checks, frame)
    failures = [
        _failure(check, result, frame)
        for check, result in zip(checks, results, strict=True)
        if not result["success"]
    ]
    summary = "\n".join(f["message"] for f in failures) if failures else f"passed: {len(checks)} expectations"
    return GateResult(success=not failures, evaluated=len(checks), failures=failures, summary=summary)


def _failed_read(message: str) -> GateResult:
    failure = {"expectation": "readable_table", "column": None, "observed": None, "message": message}
    return GateResult(success=False, evaluated=1, failures=[failure], summary=message)


def _failure(check: expectations.Check, result: dict[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
    if result.get("exception"):
        message = f"{check.type} could not run ({result['exception']})"
        if check.role == "declared":
            message += f" - fix its arguments in {check.field}"
    else:
        message = expectations.describe(check, result, frame)
    observed = result.get("observed_value", result.get("unexpected_count"))
    return {"expectation": check.type, "column": check.kwargs.get("column"), "observed": _plain(observed),
            "message": message}  # fmt: skip


def _plain(value: Any) -> Any:
    """A JSON- and YAML-safe form of an observed value (numpy scalars become Python ones)."""
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, TypeError):
            return str(value)
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def _run(checks: list[expectations.Check], frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Validate `frame` against `checks` in one GX suite; one result dict per check, in order."""
    import great_expectations as gx
    from great_expectations.expectations import registry

    # The context must exist before a suite is built: GX 1.x resolves the current project on
    # add_expectation and raises DataContextRequiredError in a fresh process otherwise.
    source = _datasource()
    suite = gx.ExpectationSuite(name=f"flywheel-{uuid.uuid4().hex[:8]}")
    for index, check in enumerate(checks):
        suite.add_expectation(_expectation(registry, check, index))
    # One asset per validation: GX keys cached metrics by batch id, and a reused asset would let one
    # frame's results answer for the next one.
    name = suite.name
    asset = source.add_dataframe_asset(name)
    try:
        batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
            batch_parameters={"dataframe": frame}
        )
        validation = batch.validate(suite, result_format="SUMMARY")
    finally:
        source.delete_asset(name)
    # Unsaved suites have no expectation ids; the index in `meta` ties each result to its check.
    by_index = {r.expectation_config.meta["flywheel_check"]: r for r in validation.results}
    out = []
    for index in range(len(checks)):
        res = by_index[index]
        raised = res.exception_info.get("raised_exception") if res.exception_info else False
        message = res.exception_info.get("exception_message") if raised else None
        out.append({"success": bool(res.success), **(res.result or {}), "exception": message})
    return out


def _expectation(registry: Any, check: expectations.Check, index: int) -> Any:
    """The GX expectation object for a check; a bad type or bad arguments is a UserError."""
    try:
        cls = registry.get_expectation_impl(check.type)
    except Exception:
        raise errors.UserError(
            f"{check.field}: unknown Great Expectations type {check.type!r}; "
            "use one from https://greatexpectations.io/expectations"
        ) from None
    try:
        return cls(**check.kwargs, meta={"flywheel_check": index})
    except Exception as exc:
        raise errors.UserError(f"{check.field}: bad kwargs for {check.type} ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in text[:3]) if text else type(exc).__name__


@functools.cache
def _datasource() -> Any:
    """The per-process GX ephemeral context and its pandas datasource."""
    import great_expectations as gx
    from great_expectations.data_context.types import base

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = base.ProgressBarsConfig(globally=False)
    return context.data_sources.add_pandas("flywheel")


def warm_up() -> None:
    """Import GX and build the context now (e.g. while the data downloads), not on first use."""
    _datasource()
