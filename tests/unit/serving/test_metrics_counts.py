"""Per-model metrics: counters of one event-loop iteration are written once, in the next one, and
add up to what one inc() per request wrote (in-process registry: no multiprocess dir here)."""

from __future__ import annotations

import asyncio

import prometheus_client

from flywheel.serving import metrics


def _value(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


def test_counts_of_one_iteration_are_written_together_and_all_of_them() -> None:
    metrics.init()
    role, version = "champion", "unit-counts"
    before = _value("flywheel_serving_predictions_total", role=role, prediction="yes")
    latency_before = _value("flywheel_serving_latency_seconds_count", role=role)

    async def batch() -> tuple[float, float]:
        for preds in (["yes"], ["yes", "no", "yes"], ["no"]):
            metrics.observe(role, version, True, 0.002, preds, [0.9] * len(preds), "classification")
        pending = _value("flywheel_serving_requests_total", role=role, model_version=version, served="true")
        await asyncio.sleep(0)  # the next iteration writes them
        return pending, _value(
            "flywheel_serving_requests_total", role=role, model_version=version, served="true"
        )

    pending, written = asyncio.run(batch())
    assert (pending, written) == (0.0, 3.0)
    assert _value("flywheel_serving_predictions_total", role=role, prediction="yes") == before + 3
    assert _value("flywheel_serving_latency_seconds_count", role=role) == latency_before + 3


def test_without_an_event_loop_counts_are_written_at_once() -> None:
    metrics.init()
    metrics.observe("challenger", "unit-sync", False, 0.001, [1.5], [None], "regression")
    labels = {"role": "challenger", "model_version": "unit-sync", "served": "false"}
    assert _value("flywheel_serving_requests_total", **labels) == 1.0
    metrics.error("challenger", "overloaded")
    assert _value("flywheel_serving_errors_total", role="challenger", reason="overloaded") >= 1.0
