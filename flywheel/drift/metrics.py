"""Prometheus metrics of drift checks, on the operator's metrics endpoint (default registry):

flywheel_drift_share{namespace,monitor}           gauge: drifted share of columns at the last check
flywheel_drift_detected_total{namespace,monitor}  counter: checks that found the dataset drifted
"""

from __future__ import annotations

import functools
from typing import Any

from flywheel.drift import checks


@functools.cache
def _m() -> dict[str, Any]:
    import prometheus_client as prom  # on first use, like flywheel.serving.metrics

    return {
        "share": prom.Gauge(
            "flywheel_drift_share",
            "Share of drifted columns at the DriftMonitor's last check",
            ["namespace", "monitor"],
        ),
        "detected": prom.Counter(
            "flywheel_drift_detected",
            "Checks that found the dataset drifted (share >= drift.datasetDriftShare)",
            ["namespace", "monitor"],
        ),
    }


def observe(namespace: str, monitor: str, result: checks.CheckResult) -> None:
    """Record one check: set the share; count it when the dataset drifted."""
    _m()["share"].labels(namespace=namespace, monitor=monitor).set(result.drift_share)
    if result.drifted:
        _m()["detected"].labels(namespace=namespace, monitor=monitor).inc()
