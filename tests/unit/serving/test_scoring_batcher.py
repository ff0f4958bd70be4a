"""The serving batcher (flywheel.serving.scoring): splitting, shedding, errors, cancellation, and
where the model runs (event loop for short calls, a worker thread for slow ones). The predictor is a
small pure-Python stand-in that records each call's batch size and thread."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pandas as pd
import pytest

from flywheel.api import deployment
from flywheel.serving import models, scoring

CARD = models.parse_card(
    {"version": "v1", "task": "classification", "classes": ["a", "b"], "features": [{"name": "x"}]}
)


class Recorder:
    """Predicts each row's x as its label; sleeps `seconds` per call; fails on x == -1."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.batches: list[int] = []
        self.threads: list[int] = []

    def predict(self, frame: pd.DataFrame) -> tuple[list[str], list[list[float]]]:
        self.batches.append(len(frame))
        self.threads.append(threading.get_ident())
        if self.seconds:
            time.sleep(self.seconds)
        if (frame["x"] == -1).any():
            raise ValueError("bad row")
        return [f"{x:g}" for x in frame["x"]], [[0.3, 0.7]] * len(frame)


def scorer(seconds: float = 0.0, max_rows: int = 4, max_latency_ms: int = 5000) -> scoring.Scorer:
    model = models.LoadedModel(uri="file:///m", quantized=True, card=CARD, predictor=Recorder(seconds))
    return scoring.Scorer(model, deployment.Batching(max_batch_size=max_rows, max_latency_ms=max_latency_ms))


def rows(*xs: float) -> list[dict[str, float]]:
    return [{"x": x} for x in xs]


def recorder(s: scoring.Scorer) -> Recorder:
    predictor = s.model.predictor
    assert isinstance(predictor, Recorder)
    return predictor


async def test_a_request_larger_than_a_batch_is_split_and_reassembled_in_order() -> None:
    s = scorer(max_rows=4)
    result = await s.score(rows(*range(10)))
    assert result.predictions == [str(i) for i in range(10)] and result.probabilities == [0.7] * 10
    assert recorder(s).batches == [4, 4, 2]


async def test_an_idle_batcher_scores_at_once_and_a_busy_one_batches_what_queued() -> None:
    s = scorer(seconds=0.1, max_rows=8)
    first = asyncio.ensure_future(s.score(rows(0)))
    await asyncio.sleep(0.005)  # the first batch (one row) is running in a thread now
    rest = await asyncio.gather(*(s.score(rows(i)) for i in range(1, 7)))
    assert (await first).predictions == ["0"]
    assert [r.predictions for r in rest] == [[str(i)] for i in range(1, 7)]
    assert recorder(s).batches == [1, 6]


async def test_requests_waiting_past_max_latency_are_shed_and_the_rest_served() -> None:
    s = scorer(seconds=0.05, max_rows=1, max_latency_ms=20)
    results = await asyncio.gather(*(s.score(rows(i)) for i in range(3)), return_exceptions=True)
    assert results[0].predictions == ["0"]  # type: ignore[union-attr]
    assert all(isinstance(r, scoring.Overloaded) for r in results[1:])
    assert (await s.score(rows(9))).predictions == ["9"]  # idle again: served at once


async def test_a_model_error_fails_its_batch_only() -> None:
    s = scorer(seconds=0.1, max_rows=8)
    blocker = asyncio.ensure_future(s.score(rows(0)))
    await asyncio.sleep(0.002)
    bad, good = await asyncio.gather(s.score(rows(-1)), s.score(rows(2)), return_exceptions=True)
    assert isinstance(bad, ValueError) and isinstance(good, ValueError)  # same batch, same error
    assert (await blocker).predictions == ["0"]
    assert (await s.score(rows(3))).predictions == ["3"]


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    s = scorer(seconds=0.1, max_rows=8)
    blocker = asyncio.ensure_future(s.score(rows(0)))
    await asyncio.sleep(0.005)
    gone = asyncio.ensure_future(s.score(rows(1)))
    kept = asyncio.ensure_future(s.score(rows(2)))
    await asyncio.sleep(0)
    gone.cancel()
    assert (await kept).predictions == ["2"] and (await blocker).predictions == ["0"]
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert recorder(s).batches == [1, 1]  # the cancelled row was never scored


@pytest.mark.parametrize("batched", [True, False])
async def test_short_calls_run_on_the_event_loop_and_slow_ones_in_a_thread(
    batched: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The threshold is the GIL switch interval; widen it so a loaded CI machine cannot make the
    # stand-in's fast calls look slow.
    monkeypatch.setattr(sys, "getswitchinterval", lambda: 0.05)
    loop_thread = threading.get_ident()
    fast = scorer()
    if not batched:
        fast = scoring.Scorer(fast.model, deployment.Batching(enabled=False))
    for i in range(3):
        await fast.score(rows(i))
    threads = recorder(fast).threads
    assert threads[0] != loop_thread and threads[1:] == [loop_thread, loop_thread]  # first: not yet timed
    slow = scorer(seconds=0.1)  # longer than the switch interval
    for i in range(3):
        await slow.score(rows(i))
    assert loop_thread not in recorder(slow).threads
