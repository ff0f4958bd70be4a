"""One drift check: Evidently's DataDriftPreset on sampled current vs reference rows.

Both sides are sampled (seeded) down to `max_rows` first, so a check costs the same whether the window
holds 10k or 1M rows. Column types come from the data (numbers are numerical, everything else
categorical) and are given to Evidently explicitly rather than guessed. The spec's Drift model maps to
the preset's per-column method and threshold: a column override wins, then drift.method where it
applies to the column's type (ks and wasserstein are numerical-only, chisquare and z categorical-only),
else Evidently's automatic choice. A column counts as drifted when Evidently's own per-column test
fails; the dataset is drifted when the drifted share reaches drift.datasetDriftShare.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import pandas as pd

from flywheel import errors
from flywheel.api import driftmonitor
from flywheel.controllers import plans
from flywheel.drift import window

NUMERICAL_ONLY = frozenset({"ks", "wasserstein"})
CATEGORICAL_ONLY = frozenset({"chisquare", "z"})


@dataclasses.dataclass(frozen=True)
class ColumnResult:
    column: str
    score: float
    method: str
    threshold: float | None
    drifted: bool


@dataclasses.dataclass(frozen=True)
class CheckResult:
    drift_share: float
    drifted: bool
    """drift_share >= drift.datasetDriftShare."""
    columns: list[ColumnResult]
    rows_current: int
    rows_reference: int
    seconds: float
    """Sampling and Evidently's computation; rendering the HTML is not included."""
    json: dict[str, Any] = dataclasses.field(repr=False)
    render: Callable[[], str] = dataclasses.field(repr=False, compare=False, default=lambda: "")
    """Renders Evidently's HTML report; called at most once, through `html`."""

    @functools.cached_property
    def html(self) -> str:
        """The standalone HTML report (several MB; rendered on first access, by reports.write)."""
        return self.render()

    @property
    def drifted_columns(self) -> list[ColumnResult]:
        return [c for c in self.columns if c.drifted]

    def to_status(self, report_uri: str | None, now: datetime.datetime) -> dict[str, Any]:
        """The DriftMonitor status fields of this check (camelCase, as patched)."""
        moment = now if now.tzinfo else now.replace(tzinfo=datetime.UTC)
        columns = [
            {"column": c.column, "score": c.score, "method": c.method}
            | ({"threshold": c.threshold} if c.threshold is not None else {})
            for c in self.drifted_columns
        ]
        return {
            "lastCheckTime": plans.now_rfc3339(moment),  # the API's format, as every other time
            "rowsChecked": self.rows_current,
            "datasetDriftShare": self.drift_share,
            "drifted": self.drifted,
            "driftedColumns": columns,
            "reportUri": report_uri,
        }


def check(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    drift: driftmonitor.Drift,
    features: list[str],
    max_rows: int,
    seed: int = 0,
) -> CheckResult:
    """Run the preset on `features`, both sides sampled to at most `max_rows` rows."""
    started = time.perf_counter()
    _require(current, features, "the traffic window")
    _require(reference, features, "the reference data")
    cur = window.sample(current[features], max_rows, seed)
    ref = window.sample(reference[features], max_rows, seed + 1)
    numerical = [f for f in features if _is_numerical(ref[f]) and _is_numerical(cur[f])]
    categorical = [f for f in features if f not in numerical]
    for col in categorical:  # one categorical type on both sides, whatever each side was parsed as
        cur[col], ref[col] = cur[col].astype("string"), ref[col].astype("string")
    methods, thresholds = column_options(drift, features, set(numerical))
    snapshot = _run(cur, ref, drift, features, numerical, categorical, methods, thresholds)
    report = json.loads(snapshot.json())
    share, columns = parse(report)
    return CheckResult(
        drift_share=share,
        drifted=share >= drift.dataset_drift_share,
        columns=columns,
        rows_current=len(cur),
        rows_reference=len(ref),
        seconds=time.perf_counter() - started,
        json=report,
        render=functools.partial(snapshot.get_html_str, as_iframe=False),
    )


def column_options(
    drift: driftmonitor.Drift, features: list[str], numerical: set[str]
) -> tuple[dict[str, str], dict[str, float]]:
    """Per-column method and threshold for the preset, from drift.method/columnThreshold/columns."""
    methods: dict[str, str] = {}
    thresholds: dict[str, float] = {}
    for col in features:
        if drift.method != driftmonitor.DriftMethod.AUTO and _applies(drift.method, col in numerical):
            methods[col] = str(drift.method)
        if drift.column_threshold is not None:
            thresholds[col] = drift.column_threshold
    for i, override in enumerate(drift.columns):
        if override.column not in features:
            raise errors.UserError(
                f"drift.columns[{i}].column {override.column!r} is not a model feature; use one of {features}"
            )
        if override.method is not None and override.method != driftmonitor.DriftMethod.AUTO:
            kind = "numerical" if override.column in numerical else "categorical"
            if not _applies(override.method, kind == "numerical"):
                raise errors.UserError(
                    f"drift.columns[{i}].method {override.method} does not apply to the {kind} column "
                    f"{override.column!r}; use psi, jensenshannon, kl_div or auto"
                )
            methods[override.column] = str(override.method)
        elif override.method == driftmonitor.DriftMethod.AUTO:
            methods.pop(override.column, None)
        if override.threshold is not None:
            thresholds[override.column] = override.threshold
    return methods, thresholds


def parse(report: dict[str, Any]) -> tuple[float, list[ColumnResult]]:
    """(drifted share, per-column results) from a DataDriftPreset snapshot's JSON."""
    failed = {
        t["metric_config"]["metric_id"]
        for t in report.get("tests", [])
        if t.get("id") == "drift" and t.get("status") == "FAIL"
    }
    share: float | None = None
    columns = []
    for metric in report["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif config["type"].endswith("ValueDrift"):
            threshold = config.get("threshold")
            columns.append(
                ColumnResult(
                    column=config["column"],
                    score=float(metric["value"]),
                    method=str(config.get("method")),
                    threshold=None if threshold is None else float(threshold),
                    drifted=metric["id"] in failed,
                )
            )
    if share is None:
        raise ValueError("the Evidently report has no DriftedColumnsCount metric")
    return share, columns


def _run(
    cur: pd.DataFrame,
    ref: pd.DataFrame,
    drift: driftmonitor.Drift,
    features: list[str],
    numerical: list[str],
    categorical: list[str],
    methods: dict[str, str],
    thresholds: dict[str, float],
) -> Any:
    ev = evidently()
    preset = ev.presets.DataDriftPreset(
        columns=features,
        drift_share=drift.dataset_drift_share,
        per_column_method=methods or None,
        per_column_threshold=thresholds or None,
    )
    definition = ev.DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    report = ev.Report([preset], include_tests=True)  # the tests carry each column's verdict
    with warnings.catch_warnings():
        # A column constant on one side (a pixel that is always blank in the reference images) has
        # no variance: Evidently's statistics divide by it and numpy warns. The column's verdict
        # is still computed (a blank pixel that starts to vary is drift).
        warnings.filterwarnings(
            "ignore", "invalid value encountered in (divide|scalar divide)", RuntimeWarning
        )
        return report.run(
            current_data=ev.Dataset.from_pandas(cur, data_definition=definition),
            reference_data=ev.Dataset.from_pandas(ref, data_definition=definition),
        )


def evidently() -> Any:
    """Import Evidently on first use (seconds of import time the controllers never pay). Its UI
    imports litestar, which warns about litestar's own deprecated API on import: not ours to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import evidently
        import evidently.presets

    return evidently


def _require(frame: pd.DataFrame, features: list[str], what: str) -> None:
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise errors.UserError(f"{what} lacks feature column(s) {missing}: it must carry every model feature")
    if frame.empty:
        raise errors.UserError(f"{what} has no rows: nothing to compare")


def _is_numerical(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def _applies(method: driftmonitor.DriftMethod, numerical: bool) -> bool:
    return str(method) not in (CATEGORICAL_ONLY if numerical else NUMERICAL_ONLY)
