"""What the gate checks, and how a failed check is explained to a person.

Schema checks are derived from model.features and model.target (each column exists, numeric
columns are numeric, values are not null unless declared nullable, within min/max, within the
declared categories), plus table checks (row count, duplicate rows, a target that varies), plus the
inline and file expectations. Each check remembers which spec field a person would change, so a
failure reads "column 'age': 37 values (3.7%) outside [0, 120] - fix the rows or widen
spec.model.features[age].min/max" instead of a Great Expectations result dump.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

import pandas as pd
import pydantic
import yaml

from flywheel import errors
from flywheel.api import trainingrun

NUMERIC_TYPES = [
    *(f"int{b}" for b in (8, 16, 32, 64)),
    *(f"uint{b}" for b in (8, 16, 32, 64)),
    *(f"Int{b}" for b in (8, 16, 32, 64)),
    *(f"UInt{b}" for b in (8, 16, 32, 64)),
    "float16", "float32", "float64", "Float32", "Float64", "bool", "boolean",
]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Check:
    """One expectation to run, and the spec field a person changes when the data is right."""

    type: str
    kwargs: dict[str, Any]
    field: str
    role: str = "feature"  # feature | target | table | declared


def derive(spec: trainingrun.TrainingRunSpec, frame: pd.DataFrame) -> list[Check]:
    """Schema and table checks for `frame` under `spec`, then the inline expectations."""
    validation = spec.data.validation
    checks = [
        Check("expect_table_row_count_to_be_between", {"min_value": validation.min_rows},
              "spec.data.validation.minRows", "table"),
    ]  # fmt: skip
    if len(frame.columns) and len(frame):
        columns = [str(c) for c in frame.columns]
        unique = {"column_list": columns, "mostly": 1 - validation.max_duplicate_fraction}
        field = "spec.data.validation.maxDuplicateFraction"
        checks.append(Check("expect_compound_columns_to_be_unique", unique, field, "table"))
    for feature in features(spec, frame):
        checks.extend(_column_checks(feature, frame, f"spec.model.features[{feature.name}]"))
    target = spec.model.target
    checks.append(Check("expect_column_to_exist", {"column": target}, "spec.model.target", "target"))
    if target in frame.columns:
        checks.append(
            Check("expect_column_values_to_not_be_null", {"column": target}, "spec.model.target", "target")
        )
        checks.append(
            Check("expect_column_unique_value_count_to_be_between", {"column": target, "min_value": 2},
                  "spec.model.target", "target")
        )  # fmt: skip
    for i, exp in enumerate(validation.expectations):
        checks.append(
            Check(exp.type, dict(exp.kwargs), f"spec.data.validation.expectations[{i}]", "declared")
        )
    return checks


def features(spec: trainingrun.TrainingRunSpec, frame: pd.DataFrame) -> list[trainingrun.Feature]:
    """The declared features, or (none declared) every column but the target, typed from the data."""
    if spec.model.features:
        return list(spec.model.features)
    return [
        trainingrun.Feature(name=str(col), type="numeric" if _is_numeric(frame[col]) else "categorical")
        for col in frame.columns
        if col != spec.model.target
    ]


def _column_checks(feature: trainingrun.Feature, frame: pd.DataFrame, field: str) -> list[Check]:
    name = feature.name
    checks = [Check("expect_column_to_exist", {"column": name}, field)]
    if name not in frame.columns:
        return checks  # the other checks would only repeat "missing"
    if not feature.nullable:
        checks.append(Check("expect_column_values_to_not_be_null", {"column": name}, field))
    if feature.type == "numeric":
        checks.append(
            Check(
                "expect_column_values_to_be_in_type_list", {"column": name, "type_list": NUMERIC_TYPES}, field
            )
        )
        bounds = {k: v for k, v in (("min_value", feature.min), ("max_value", feature.max)) if v is not None}
        if bounds and _is_numeric(frame[name]):  # a range on text would fail with a type error
            checks.append(Check("expect_column_values_to_be_between", {"column": name, **bounds}, field))
    elif feature.categories:
        checks.append(
            Check(
                "expect_column_values_to_be_in_set", {"column": name, "value_set": feature.categories}, field
            )
        )
    return checks


def _is_numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series))


def load_file(path: Path) -> list[Check]:
    """Expectations from a YAML file: a list of {type, kwargs}, or {expectations: [...]}."""
    field = f"spec.data.validation.file ({path.name})"
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise errors.UserError(f"{field}: cannot read expectations ({exc}); fix the YAML file") from None
    items = loaded.get("expectations") if isinstance(loaded, dict) else loaded
    if not isinstance(items, list):
        raise errors.UserError(f"{field}: expected a list of {{type, kwargs}} or {{expectations: [...]}}")
    checks = []
    for i, item in enumerate(items):
        try:
            exp = trainingrun.Expectation.model_validate(item)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            raise errors.UserError(
                f"{field} item {i}: {first['msg']}; each item needs type: expect_..."
            ) from None
        checks.append(Check(exp.type, dict(exp.kwargs), f"{field} item {i}", "declared"))
    return checks


def describe(check: Check, result: dict[str, Any], frame: pd.DataFrame) -> str:
    """One line: what is wrong in the data, and which change fixes it."""
    column = check.kwargs.get("column")
    count, pct = result.get("unexpected_count"), result.get("unexpected_percent") or 0.0
    examples = ", ".join(repr(v) for v in (result.get("partial_unexpected_list") or [])[:3])
    eg = f" (e.g. {examples})" if examples else ""
    kind = check.type
    if check.role == "declared":
        detail = (
            f"{count} values ({pct:.1f}%){eg}"
            if count is not None
            else f"observed {result.get('observed_value')!r}"
        )
        where = f"column {column!r}: " if column else ""
        return f"{where}{kind} failed: {detail} - fix the rows or change {check.field}"
    if kind == "expect_column_to_exist":
        by_lower = {str(c).lower(): str(c) for c in frame.columns}
        near = difflib.get_close_matches(str(column).lower(), list(by_lower), n=1, cutoff=0.6)
        hint = f"; found {by_lower[near[0]]!r}, was it renamed?" if near else ""
        return f"column {column!r} is missing{hint} - restore it in the data or change {check.field}"
    if kind == "expect_column_values_to_not_be_null":
        return (f"column {column!r}: {count} missing values ({pct:.1f}%) - fill or drop those rows"
                + ("" if check.role == "target" else f", or set {check.field}.nullable: true"))  # fmt: skip
    if kind == "expect_column_values_to_be_in_type_list":
        values = frame[column]
        bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
        eg = f" (e.g. {', '.join(repr(v) for v in bad.unique()[:3])})" if len(bad) else ""
        return (f"column {column!r} has type {frame[column].dtype} where numbers are expected{eg} - fix the "
                f"non-numeric values or set {check.field}.type: categorical")  # fmt: skip
    if kind == "expect_column_values_to_be_between":
        lo, hi = _bound(check.kwargs.get("min_value"), "-inf"), _bound(check.kwargs.get("max_value"), "inf")
        return (f"column {column!r}: {count} values ({pct:.1f}%) outside [{lo}, {hi}]{eg} - fix the rows "
                f"or widen {check.field}.min/max")  # fmt: skip
    if kind == "expect_column_values_to_be_in_set":
        return (f"column {column!r}: {count} values ({pct:.1f}%) not in the declared categories{eg} - fix "
                f"the rows or add them to {check.field}.categories")  # fmt: skip
    if kind == "expect_column_unique_value_count_to_be_between":
        value = frame[column].dropna().unique()[:1].tolist() if column in frame.columns else []
        return (f"target {column!r} is constant ({value[0]!r} in every row) - a model cannot learn from it; "
                "check the export or filter that produced the data" if value else
                f"target {column!r} has no values - check the export that produced the data")  # fmt: skip
    if kind == "expect_compound_columns_to_be_unique":
        limit = 1 - check.kwargs["mostly"]
        return (f"{count} rows ({pct:.1f}%) have an exact duplicate, more than {limit:.1%} - deduplicate the "
                f"data or raise {check.field}")  # fmt: skip
    if kind == "expect_table_row_count_to_be_between":
        return (f"the data has {result.get('observed_value')} rows, fewer than {check.kwargs['min_value']} - "
                f"add data or lower {check.field}")  # fmt: skip
    return f"{kind} failed (observed {result.get('observed_value')!r}) - fix the data or {check.field}"


def _bound(value: float | None, default: str) -> str:
    return default if value is None else f"{value:g}"
