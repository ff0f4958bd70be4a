"""Prometheus metrics of the operators: reconciles by result, their latency, and API calls that got
no answer (timed out or refused; flywheel.kube.client reports them through a hook).

prometheus_client is optional (the `operators` extra has it); without it these are no-ops.
"""

from __future__ import annotations

import logging

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
