"""Prometheus metrics of the operators: reconciles by result, their latency, and API calls that got
no answer (timed out or refused; flywheel.kube.client reports them through a hook); and what a
DriftMonitor's check found, from the status its reconcile writes (the check itself runs in a Job).

prometheus_client is optional (the `operators` extra has it); without it these are no-ops.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

try:
    import prometheus_client
except ImportError:  # pragma: no cover - the operator image always has it
    prometheus_client = None  # type: ignore[assignment]

logger = logging.getLogger("flywheel.operator")

if prometheus_client is not None:
    RECONCILES = prometheus_client.Counter(
        "flywheel_operator_reconciles",
        "Reconciles by kind and result (changed, unchanged, invalid, error)",
        ["kind", "result"],
    )
    LATENCY = prometheus_client.Histogram(
        "flywheel_operator_reconcile_seconds",
        "Wall time of one observe-plan-execute reconcile",
        ["kind"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )
    UNAVAILABLE = prometheus_client.Counter(
        "flywheel_operator_api_unavailable",
        "Kubernetes API calls that got no answer, by method and reason (Timeout, ConnectionError)",
        ["method", "reason"],
    )

    DRIFT_SHARE = prometheus_client.Gauge(
        "flywheel_driftmonitor_drift_share",
        "Share of drifted feature columns in the last check",
        ["namespace", "monitor"],
    )
    PREDICTION_DRIFT = prometheus_client.Gauge(
        "flywheel_driftmonitor_prediction_drift",
        "Distance of the served predictions from the champion's on its holdout (last check)",
        ["namespace", "monitor"],
    )
    LIVE = prometheus_client.Gauge(
        "flywheel_driftmonitor_live_metric",
        "The model's metric on labelled traffic in the last check's window, with its 95% interval",
        ["namespace", "monitor", "model_version", "metric", "bound"],
    )
    LABELLED = prometheus_client.Gauge(
        "flywheel_driftmonitor_labelled_rows",
        "Labelled rows the live metric of a model version was computed on",
        ["namespace", "monitor", "model_version"],
    )

_LIVE_SERIES: dict[tuple[str, str], set[tuple[str, ...]]] = {}
"""Label values of each monitor's live series, so versions gone from status are removed (bounded)."""


def status(kind: str, key: tuple[str, str], written: dict[str, Any]) -> None:
    """Export what a DriftMonitor's status patch says about its last check (no-op for other kinds
    and for patches without a check)."""
    if prometheus_client is None or kind != "DriftMonitor":
        return
    namespace, name = key
    if isinstance(written.get("datasetDriftShare"), int | float):
        DRIFT_SHARE.labels(namespace, name).set(float(written["datasetDriftShare"]))
    drift = written.get("predictionDrift")
    if isinstance(drift, dict) and isinstance(drift.get("distance"), int | float):
        PREDICTION_DRIFT.labels(namespace, name).set(float(drift["distance"]))
    perf = written.get("performance")
    if not isinstance(perf, dict):
        return
    metric = str(perf.get("metric") or "")
    now: set[tuple[str, ...]] = set()
    for item in perf.get("versions") or []:
        version = str(item.get("version") or "")
        for bound in ("value", "low", "high"):
            if isinstance(item.get(bound), int | float):
                LIVE.labels(namespace, name, version, metric, bound).set(float(item[bound]))
                now.add((namespace, name, version, metric, bound))
        LABELLED.labels(namespace, name, version).set(float(item.get("rows") or 0))
    for gone in _LIVE_SERIES.get(key, set()) - now:
        with contextlib.suppress(KeyError):
            LIVE.remove(*gone)
        if not any(s[2] == gone[2] for s in now):
            with contextlib.suppress(KeyError):
                LABELLED.remove(gone[0], gone[1], gone[2])
    _LIVE_SERIES[key] = now


def unavailable(method: str, reason: str) -> None:
    if prometheus_client is not None:
        UNAVAILABLE.labels(method, reason).inc()


def observe(kind: str, result: str, seconds: float) -> None:
    if prometheus_client is None:
        return
    RECONCILES.labels(kind, result).inc()
    LATENCY.labels(kind).observe(seconds)


def serve(port: int) -> bool:
    """Expose /metrics on `port` from a daemon thread; False when the client library is missing."""
    if prometheus_client is None:
        logger.warning("prometheus_client is not installed: no metrics on port %s", port)
        return False
    prometheus_client.start_http_server(port)
    return True
