"""Scoring one role's model, with adaptive batching, and swapping the model in place.

Routing needs each request's headers, and a batchable @bentoml.api loses them (its one parameter
is concatenated across requests), so each role batches after routing, in its own Batcher.

The Batcher batches adaptively without timers: one batch runs at a time (in a worker thread, so the
event loop keeps reading requests), and when it finishes, the next batch takes every request queued
meanwhile, up to maxBatchSize rows. Idle, a request is scored at once (batch of one, no added
latency); under load, batches grow with the arrival rate. A request that has waited longer than
maxLatencyMs when its batch forms is shed (Overloaded -> 503), as a batchable BentoML API sheds.
Requests larger than maxBatchSize are split into chunks and reassembled.
(BentoML's CorkDispatcher, used before, polls its queue every millisecond while a batch runs and
cost more CPU per request than it saved: bench/serving.py measured it at concurrency 1 and 64.)

The model is read once per batch, so a swap (promotion) is one reference assignment: batches
already running finish on the old model, the next batch uses the new one, no request fails.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import numpy as np
import pandas as pd

from flywheel.api import deployment
from flywheel.serving import models

Row = tuple[Any, float | None, str]  # prediction, probability, model version
Records = list[dict[str, Any]]


class Overloaded(Exception):
    """The batcher could not serve the request within maxLatencyMs."""


@dataclasses.dataclass(frozen=True)
class Result:
    predictions: list[Any]
    probabilities: list[float | None]
    version: str
    seconds: float


@dataclasses.dataclass
class _Job:
    records: Records
    future: asyncio.Future[list[Row]]
    queued_at: float


class Batcher:
    """Queues requests and scores them in batches, one batch at a time (see the module docstring)."""

    def __init__(
        self, score: Callable[[Records], Awaitable[list[Row]]], max_rows: int, max_latency_s: float
    ) -> None:
        self._score = score
        self.max_rows = max_rows
        self.max_latency_s = max_latency_s
        self._queue: collections.deque[_Job] = collections.deque()
        self._worker: asyncio.Task[None] | None = None

    async def __call__(self, records: Records) -> list[Row]:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        jobs = [
            _Job(records[i : i + self.max_rows], loop.create_future(), now)
            for i in range(0, len(records), self.max_rows)
        ]
        self._queue.extend(jobs)
        if self._worker is None:
            self._worker = loop.create_task(self._drain())
        if len(jobs) == 1:
            return await jobs[0].future
        parts = await asyncio.gather(*(job.future for job in jobs))
        return [row for part in parts for row in part]

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                if batch:
                    await self._run(batch)
        finally:
            self._worker = None

    def _take(self) -> list[_Job]:
        """The oldest queued jobs that fit in one batch; jobs past their latency budget are shed."""
        batch: list[_Job] = []
        rows = 0
        deadline = time.monotonic() - self.max_latency_s
        while self._queue and rows + len(self._queue[0].records) <= self.max_rows:
            job = self._queue.popleft()
            if job.future.done():  # the caller went away
                continue
            if job.queued_at < deadline:
                job.future.set_exception(
                    Overloaded(
                        "the server is overloaded: the request could not be served within maxLatencyMs"
                    )
                )
                continue
            batch.append(job)
            rows += len(job.records)
        return batch

    async def _run(self, batch: list[_Job]) -> None:
        flat = [record for job in batch for record in job.records]
        try:
            scored = await self._score(flat)
        except Exception as exc:  # every caller of the batch gets the model's error
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        start = 0
        for job in batch:
            end = start + len(job.records)
            if not job.future.done():
                job.future.set_result(scored[start:end])
            start = end


class Scorer:
    """One role (champion or challenger): its current model and its batcher."""

    def __init__(self, model: models.LoadedModel, batching: deployment.Batching) -> None:
        self.model = model
        self._batched: Batcher | None = None
        if batching.enabled:
            max_latency_s = batching.max_latency_ms / 1000.0
            self._batched = Batcher(self._call_model, batching.max_batch_size, max_latency_s)
        # Seconds of the last model call; unknown (a thread) until the first call has been timed.
        self._last_call_s = float("inf")

    def swap(self, model: models.LoadedModel) -> models.LoadedModel:
        """Serve `model` from the next batch on; return the one it replaced."""
        old, self.model = self.model, model
        self._last_call_s = float("inf")  # time the new model afresh
        return old

    def _rows(self, model: models.LoadedModel, records: Records) -> list[Row]:
        started = time.perf_counter()
        if model.row_independent or len(records) == 1:
            preds, probs = self._outputs(model, records)
        else:  # per-batch scales: each row alone, as it would be scored without neighbours
            preds, probs = [], []
            for record in records:
                p, q = self._outputs(model, [record])
                preds += p
                probs += q
        version = model.version
        out = [(p, q, version) for p, q in zip(preds, probs, strict=True)]
        self._last_call_s = time.perf_counter() - started
        return out

    @staticmethod
    def _outputs(model: models.LoadedModel, records: Records) -> tuple[list[Any], list[float | None]]:
        return models.outputs(model, records if model.takes_records else _frame(records, model.card))

    async def _call_model(self, records: Records) -> list[Row]:
        """Score on the event loop when a call is shorter than the GIL switch interval, else in a
        worker thread. Preprocessing holds the GIL, so a thread cannot overlap a short call with
        request handling; it only adds a hand-off and makes the loop wait for the GIL (measured in
        bench/serving.py). A slow model still runs in a thread and keeps the loop responsive."""
        model = self.model  # one read: the whole batch is scored by one model
        if self._last_call_s < sys.getswitchinterval():
            return self._rows(model, records)
        return await anyio.to_thread.run_sync(self._rows, model, records)

    async def score(self, records: Records) -> Result:
        started = time.perf_counter()
        if self._batched is not None:
            rows = await self._batched(records)
        else:
            rows = await self._call_model(records)
        return Result(
            predictions=[r[0] for r in rows],
            probabilities=[r[1] for r in rows],
            # A request split across two batches around a swap reports the newer version.
            version=rows[-1][2],
            seconds=time.perf_counter() - started,
        )


def _frame(records: Records, card: models.Card) -> pd.DataFrame:
    """The records as the predictor's DataFrame, columns in the card's order. All-numeric rows
    (validated floats or null) go through one float64 matrix: a single-block frame, 3-4x cheaper to
    build than from_records and read back by the preprocessor in one step."""
    names = card.feature_names
    if records and all(f.type == "numeric" for f in card.features):
        try:
            matrix = np.array([[r.get(n) for n in names] for r in records], dtype=np.float64)
        except (ValueError, TypeError):  # not validated rows (no model card schema): the slow path
            pass
        else:
            return pd.DataFrame(matrix, columns=names, copy=False)
    return pd.DataFrame.from_records(records, columns=names)
