"""Per-model Prometheus metrics, exported on BentoML's /metrics beside its bentoml_service_* ones.

prometheus_client is imported on first use (in the service's __init__, inside a BentoML worker), after
BentoML has set PROMETHEUS_MULTIPROC_DIR: imported earlier, the metrics would live in process memory
and never reach /metrics (what the deprecated bentoml.metrics shim used to defer for us).
Labels stay low-cardinality: role (champion | challenger), model version, class label.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import math
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@functools.cache
def _m() -> dict[str, Any]:
    import prometheus_client as prom

    return {
        "requests": prom.Counter(
            name="flywheel_serving_requests",
            documentation="Requests scored per model; served=false is shadow scoring",
            labelnames=["role", "model_version", "served"],
        ),
        "errors": prom.Counter(
            name="flywheel_serving_errors",
            documentation="Requests that failed, by model role and reason",
            labelnames=["role", "reason"],
        ),
        "latency": prom.Histogram(
            name="flywheel_serving_latency_seconds",
            documentation="Time to score a request (queueing in the batcher included)",
            labelnames=["role"],
            buckets=LATENCY_BUCKETS,
        ),
        "predictions": prom.Counter(
            name="flywheel_serving_predictions",
            documentation="Predicted class distribution per model",
            labelnames=["role", "prediction"],
        ),
        "feedback": prom.Counter(
            name="flywheel_serving_feedback_labels",
            documentation="Ground-truth labels accepted by POST /feedback",
        ),
        "probability": prom.Histogram(
            name="flywheel_serving_probability",
            documentation="Probability of the predicted class per model",
            labelnames=["role"],
            buckets=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
        ),
    }


def feedback(labels: int) -> None:
    _m()["feedback"].inc(labels)


def init() -> None:
    """Register the metrics (call once the server has configured prometheus_client)."""
    _m()


# Labelled children, looked up once: labels() takes a lock, validates and hashes its keyword
# arguments on every call (~2/3 of observe()'s CPU before). Label values are low-cardinality.
_children: dict[tuple[str, ...], Any] = {}


def _child(metric: str, *values: str) -> Any:
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = _m()[metric].labels(*values)
    return child


# Counter increments of one event-loop iteration, written as one inc() per label set: a batch's
# requests all finish in one iteration, and each inc() is a locked mmap write plus a getpid()
# syscall in prometheus_client's multiprocess mode. Written in the next iteration, before /metrics
# can be asked again. Histograms have no bulk observe, so they are observed at once.
_pending: collections.Counter[tuple[str, ...]] = collections.Counter()
_scheduled = False


def _count(key: tuple[str, ...], amount: int = 1) -> None:
    global _scheduled
    _pending[key] += amount
    if _scheduled:
        return
    try:
        asyncio.get_running_loop().call_soon(_write_counts)
    except RuntimeError:  # no event loop in this thread: write now
        _write_counts()
    else:
        _scheduled = True


def _write_counts() -> None:
    global _scheduled
    _scheduled = False
    pending = list(_pending.items())
    _pending.clear()
    for (metric, *values), amount in pending:
        _child(metric, *values).inc(amount)


def observe(
    role: str, version: str, served: bool, seconds: float, preds: list[Any], probs: list[Any], task: str
) -> None:
    _count(("requests", role, version, "true" if served else "false"))
    _child("latency", role).observe(seconds)
    if task != "classification":
        return
    if len(preds) == 1:  # most requests: no Counter
        _count(("predictions", role, str(preds[0])))
    else:
        for label, count in collections.Counter(map(str, preds)).items():
            _count(("predictions", role, label), count)
    histogram = _child("probability", role)
    for prob in probs:
        if prob is not None and math.isfinite(prob):  # one NaN would make the sum NaN for good
            histogram.observe(prob)


def error(role: str, reason: str) -> None:
    _child("errors", role, reason).inc()
