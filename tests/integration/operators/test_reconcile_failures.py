"""operators.reconcile's failure path without kopf, against the emulator: the per-object backoff
(seeded jitter, capped, reset on success) and what a failing object shows: Ready=False with
reason ReconcileError and the API's message, one Warning event per distinct error, at most one
per EVENT_INTERVAL."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from flywheel.api import conditions
from flywheel.controllers import settings as settings_mod
from flywheel.controllers import trainingrun
from flywheel.kube import client, throttle
from operators import reconcile
from tests.integration.operators import test_trainingrun_operator as tr

pytestmark = pytest.mark.timeout(60)
KEY = (tr.NS, "iris")


def binding(seed: int = 3) -> reconcile.Binding:
    return reconcile.Binding("TrainingRun", trainingrun, settings_mod.Settings(), rng=random.Random(seed))


def test_backoff_grows_per_object_is_capped_and_resets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconcile, "RETRY_BACKOFF", 1.0)
    monkeypatch.setattr(reconcile, "RETRY_CAP", 8.0)
    monkeypatch.setattr(reconcile, "RETRIES", throttle.TokenBucket(qps=0, burst=1))  # per object only
    b = binding()
    delays = [reconcile._failed(b, KEY, RuntimeError("x")) for _ in range(6)]
    for delay, raw in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert raw / 2 <= delay <= raw
    assert reconcile._failed(b, ("default", "other"), RuntimeError("x")) <= 1.0  # per object
    again = binding()
    assert [reconcile._failed(again, KEY, RuntimeError("x")) for _ in range(6)] == delays  # seeded
    b.failures.pop(KEY)  # what a successful reconcile does
    assert reconcile._failed(b, KEY, RuntimeError("x")) <= 1.0


def events(em: Any) -> list[dict[str, Any]]:
    return [e for e in em.live("v1/events", tr.NS) if e["reason"] == conditions.R_RECONCILE_ERROR]


async def test_a_failing_object_says_so_once_per_distinct_error(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await tr.create(tr.run_manifest())
    b = binding()
    forbidden = client.ApiError(
        403, "Forbidden", 'pytorchjobs.kubeflow.org is forbidden: User "op" cannot create'
    )
    await asyncio.to_thread(reconcile._report, b, KEY, run, forbidden)
    ready = tr.ready(emulator)
    assert (ready["status"], ready["reason"]) == ("False", "ReconcileError")
    assert ready["message"] == f"403 Forbidden: {forbidden.message}"
    conds = tr.run_status(emulator)["conditions"]
    reconciling = next(c for c in conds if c["type"] == "Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "ReconcileError")  # kstatus: InProgress
    assert [e["type"] for e in events(emulator)] == ["Warning"]

    writes = len(emulator.writes())
    live = emulator.live(tr.RUNS, tr.NS)[0]
    await asyncio.to_thread(reconcile._report, b, KEY, live, forbidden)  # the same error again
    assert len(emulator.writes()) == writes  # status already says it; no event within the interval

    other = client.Unavailable(
        "Timeout", "POST /apis/kubeflow.org/v1/namespaces/default/pytorchjobs: no answer"
    )
    await asyncio.to_thread(reconcile._report, b, KEY, live, other)
    assert "no answer" in tr.ready(emulator)["message"] and len(events(emulator)) == 1  # rate-limited
    monkeypatch.setattr(reconcile, "EVENT_INTERVAL", 0.0)
    await asyncio.to_thread(reconcile._report, b, KEY, emulator.live(tr.RUNS, tr.NS)[0], other)
    assert len(events(emulator)) == 2  # a new, distinct error, once the interval has passed
    await asyncio.to_thread(reconcile._report, b, KEY, emulator.live(tr.RUNS, tr.NS)[0], other)
    assert len(events(emulator)) == 2  # the same one is not posted twice (its name is its text)


async def test_a_successful_reconcile_clears_the_error(emulator: Any) -> None:
    run = await tr.create(tr.run_manifest())
    await asyncio.to_thread(reconcile._report, binding(), KEY, run, client.ApiError(500, "Internal", "boom"))
    live = emulator.live(tr.RUNS, tr.NS)[0]
    await asyncio.to_thread(reconcile.reconcile_once, trainingrun, live, settings_mod.Settings())
    assert tr.ready(emulator)["reason"] == "JobCreated"


def test_bad_settings_stop_the_start_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flywheel import errors
    from operators import main

    monkeypatch.setattr(reconcile, "RETRY_BACKOFF", reconcile.RETRY_BACKOFF)  # restored after
    monkeypatch.setattr(reconcile, "RETRY_CAP", reconcile.RETRY_CAP)
    monkeypatch.setattr(reconcile, "RETRIES", reconcile.RETRIES)
    for env, text in [
        ({"FLYWHEEL_RETRY_BACKOFF": "abc"}, "FLYWHEEL_RETRY_BACKOFF='abc' is not a number of seconds"),
        ({"FLYWHEEL_RETRY_BACKOFF_CAP": "-1"}, "FLYWHEEL_RETRY_BACKOFF_CAP='-1' must be >= 0"),
        ({"FLYWHEEL_KUBE_QPS": "fast"}, "FLYWHEEL_KUBE_QPS='fast' is not a number"),
        ({"FLYWHEEL_KUBE_BURST": "0"}, "FLYWHEEL_KUBE_BURST='0' must be >= 1"),
        ({"FLYWHEEL_RETRY_BURST": "0.5"}, "FLYWHEEL_RETRY_BURST='0.5' must be >= 1"),
    ]:
        with pytest.raises(errors.UserError) as caught:
            main.check_settings(env)
        assert str(caught.value) == text
    main.check_settings(
        {"FLYWHEEL_RETRY_BACKOFF": "0.25", "FLYWHEEL_RETRY_BACKOFF_CAP": "5", "FLYWHEEL_RETRY_QPS": "3"}
    )
    assert (reconcile.RETRY_BACKOFF, reconcile.RETRY_CAP, reconcile.RETRIES.qps) == (0.25, 5.0, 3.0)
