"""The Great Expectations gate (real GX 1.x) on the example data and a corpus of corruptions.

Each corruption is written to a real file (CSV, or Parquet where a dtype must survive) and must be
blocked with a message that names the column and the spec field to change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from flywheel import errors
from flywheel.api import trainingrun
from flywheel.data import examples, gate

pytestmark = pytest.mark.slow  # importing GX and building its context takes ~5-15 s once


@pytest.fixture(scope="module")
def spec() -> trainingrun.TrainingRunSpec:
    gate.warm_up()
    return trainingrun.TrainingRunSpec(data=examples.data_spec("/unused"), model=examples.model_spec())


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return examples.period_frame(2)


def _every(n: int) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda d: pd.Series(d.index % n == 0, index=d.index)


def _nulls(d: pd.DataFrame) -> pd.DataFrame:
    return d.assign(f3=d.f3.astype("float64").mask(_every(10)(d)))


def _out_of_range(d: pd.DataFrame) -> pd.DataFrame:
    return d.assign(f5=d.f5.mask(_every(25)(d), 9999))


def _wrong_dtype(d: pd.DataFrame) -> pd.DataFrame:
    return d.assign(f2=d.f2.astype(str).mask(_every(7)(d), "n/a"))


def _duplicates(d: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([d, d.iloc[:300]], ignore_index=True)


def _truncated(path: Path, d: pd.DataFrame) -> None:
    text = d.to_csv(index=False)
    path.write_text(text[: text.rstrip("\n").rfind(",")])  # the last row loses its last fields


CORRUPTIONS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame] | None, list[str]]] = {
    "nulls": (_nulls, ["column 'f3': 400 missing values (10.0%)", "spec.model.features[f3].nullable: true"]),
    "out-of-range": (
        _out_of_range,
        [
            "column 'f5': 160 values (4.0%) outside [-188, 436]",
            "(e.g. 9999",
            "widen spec.model.features[f5].min/max",
        ],
    ),
    "renamed-column": (
        lambda d: d.rename(columns={"f7": "F7"}),
        ["column 'f7' is missing; found 'F7', was it renamed?"],
    ),
    "missing-column": (
        lambda d: d.drop(columns="f8"),
        ["column 'f8' is missing - restore it", "spec.model.features[f8]"],
    ),
    "wrong-dtype": (
        _wrong_dtype,
        [
            "column 'f2' has type object where numbers are expected (e.g. 'n/a')",
            "set spec.model.features[f2].type: categorical",
        ],
    ),
    "constant-target": (lambda d: d.assign(anomaly=0), ["target 'anomaly' is constant (0 in every row)"]),
    "missing-target": (
        lambda d: d.drop(columns="anomaly"),
        ["column 'anomaly' is missing", "spec.model.target"],
    ),
    "duplicates": (
        _duplicates,
        [
            "600 rows (14.0%) have an exact duplicate, more than 5.0%",
            "raise spec.data.validation.maxDuplicateFraction",
        ],
    ),
    "too-few-rows": (
        lambda d: d.iloc[:5],
        ["the data has 5 rows, fewer than 10", "lower spec.data.validation.minRows"],
    ),
    "empty-file": (None, ["is empty (0 bytes)"]),
    "truncated-csv": (
        None,
        ["is truncated (its last row is cut off): line 4001 has 9 fields, the header has 10"],
    ),
    "corrupt-parquet": (None, ["is not a readable Parquet file"]),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_is_blocked_with_an_actionable_message(
    name: str, spec: trainingrun.TrainingRunSpec, clean: pd.DataFrame, tmp_path: Path
) -> None:
    corrupt, expected = CORRUPTIONS[name]
    path = tmp_path / ("data.parquet" if name in ("wrong-dtype", "corrupt-parquet") else "data.csv")
    if corrupt is not None:
        frame = corrupt(clean.copy())
        frame.to_parquet(path, index=False) if path.suffix == ".parquet" else frame.to_csv(path, index=False)
    elif name == "empty-file":
        path.write_bytes(b"")
    elif name == "truncated-csv":
        _truncated(path, clean)
    else:
        path.write_bytes(b"PAR1\x00\x01garbage")
    result = gate.validate(path, spec)
    assert not result.success
    for fragment in expected:
        assert fragment in result.summary, result.summary
    assert len(result.failures) == len(result.summary.splitlines())  # one line per failure
    assert all(set(f) == {"expectation", "column", "observed", "message"} for f in result.failures)


@pytest.mark.parametrize("period", [1, 2])
def test_clean_periods_pass_from_csv_and_parquet(
    period: int, spec: trainingrun.TrainingRunSpec, tmp_path: Path
) -> None:
    for suffix in (".csv", ".parquet"):
        path = examples.write_period(tmp_path / f"p{suffix}", period)
        result = gate.validate(path, spec)
        assert result.success, result.summary
        assert result.evaluated == 2 + 4 * 9 + 3  # table checks, 4 per feature, 3 on the target
        assert result.summary == f"passed: {result.evaluated} expectations"


def test_inline_and_file_expectations_and_inferred_features(clean: pd.DataFrame, tmp_path: Path) -> None:
    file = tmp_path / "expectations.yaml"
    file.write_text(
        "expectations:\n  - type: expect_column_max_to_be_between\n    kwargs: {column: f1, max_value: 50}\n"
    )
    spec = trainingrun.TrainingRunSpec(
        data=trainingrun.Data(
            repo="/unused", path="d.csv",
            validation=trainingrun.Validation(expectations=[
                trainingrun.Expectation(type="expect_column_values_to_be_between",
                                        kwargs={"column": "f9", "min_value": 0, "max_value": 100}),
            ]),
        ),
        model=trainingrun.ModelSpec(task="classification", target="anomaly"),  # no features: inferred
    )  # fmt: skip
    result = gate.validate(clean, spec, extra_expectations_file=file)
    assert not result.success
    assert result.evaluated == 2 + 3 * 9 + 3 + 2  # inferred numeric features have no range check
    lines = result.summary.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("column 'f9': expect_column_values_to_be_between failed: ")
    assert lines[0].endswith("fix the rows or change spec.data.validation.expectations[0]")
    assert "expect_column_max_to_be_between failed: observed" in lines[1]
    assert "spec.data.validation.file (expectations.yaml) item 0" in lines[1]


def test_unknown_expectation_type_is_a_user_error(clean: pd.DataFrame) -> None:
    spec = trainingrun.TrainingRunSpec(
        data=trainingrun.Data(repo="/unused", path="d.csv", validation=trainingrun.Validation(
            expectations=[trainingrun.Expectation(type="expect_the_unexpected")])),
        model=trainingrun.ModelSpec(task="classification", target="anomaly"),
    )  # fmt: skip
    with pytest.raises(
        errors.UserError, match=r"^spec\.data\.validation\.expectations\[0\]: unknown Great Exp"
    ):
        gate.validate(clean, spec)
