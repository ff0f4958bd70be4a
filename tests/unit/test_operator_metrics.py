"""The DriftMonitor gauges the operator exports from the status its reconcile writes: set from a
check's figures, and a model version's series removed once it leaves the status (bounded)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from operators import metrics


def _live(version: str, bound: str) -> float | None:
    labels = {"namespace": "ml", "monitor": "m", "model_version": version, "metric": "f1", "bound": bound}
    return REGISTRY.get_sample_value("flywheel_driftmonitor_live_metric", labels)


def test_live_performance_and_drift_are_exported_and_old_versions_removed() -> None:
    def perf(*versions: str) -> dict[str, object]:
        items = [{"version": v, "value": 0.9, "low": 0.8, "high": 0.95, "rows": 120} for v in versions]
        return {"metric": "f1", "versions": items}

    metrics.status("DriftMonitor", ("ml", "m"), {"datasetDriftShare": 0.25, "predictionDrift": {"distance": 0.31},
                                                  "performance": perf("v1", "v2")})  # fmt: skip
    assert _live("v1", "low") == 0.8 and _live("v2", "high") == 0.95
    labels = {"namespace": "ml", "monitor": "m"}
    assert REGISTRY.get_sample_value("flywheel_driftmonitor_drift_share", labels) == 0.25
    assert REGISTRY.get_sample_value("flywheel_driftmonitor_prediction_drift", labels) == 0.31
    rows = {"namespace": "ml", "monitor": "m", "model_version": "v2"}
    assert REGISTRY.get_sample_value("flywheel_driftmonitor_labelled_rows", rows) == 120
    metrics.status("DriftMonitor", ("ml", "m"), {"performance": perf("v2", "v3")})
    assert _live("v1", "value") is None and _live("v3", "value") == 0.9
    assert (
        REGISTRY.get_sample_value("flywheel_driftmonitor_labelled_rows", {**rows, "model_version": "v1"})
        is None
    )
    metrics.status("TrainingRun", ("ml", "m"), {"performance": perf("x")})  # other kinds: nothing
    assert _live("x", "value") is None
