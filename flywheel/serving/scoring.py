"""Scoring one role's model, with BentoML's adaptive batching, and swapping the model in place.

Routing needs each request's headers, and a batchable @bentoml.api loses them (its one parameter
is concatenated across requests), while calling a batchable API of the same service re-enters
the whole HTTP stack. So each role gets BentoML's own adaptive batcher (the CorkDispatcher behind
batchable APIs, same algorithm and maxBatchSize / maxLatencyMs semantics) after routing. Like a
batchable API, a request the batcher cannot serve within maxLatencyMs is shed (Overloaded -> 503).

The model is read once per batch, so a swap (promotion) is one reference assignment: batches
already running finish on the old model, the next batch uses the new one, no request fails.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import anyio
import pandas as pd
from bentoml._internal.marshal import dispatcher

from flywheel.api import deployment
from flywheel.serving import models

Row = tuple[Any, float | None, str]  # prediction, probability, model version


class Overloaded(Exception):
    """The batcher could not serve the request within maxLatencyMs."""


@dataclasses.dataclass(frozen=True)
class Result:
    predictions: list[Any]
    probabilities: list[float | None]
    version: str
    seconds: float


def _shed() -> Any:
    raise Overloaded("the server is overloaded: the request could not be served within maxLatencyMs")


class Scorer:
    """One role (champion or challenger): its current model and its batcher."""

    def __init__(self, model: models.LoadedModel, batching: deployment.Batching) -> None:
        self.model = model
        self._batched: Any = None
        if batching.enabled:
            cork: dispatcher.CorkDispatcher[list[dict[str, Any]], list[Row]] = dispatcher.CorkDispatcher(
                max_latency_in_ms=batching.max_latency_ms,
                max_batch_size=batching.max_batch_size,
                fallback=_shed,
                get_batch_size=len,
                batch_dim=(0, 0),
            )
            self._batched = cork(self._score_batch)

    def swap(self, model: models.LoadedModel) -> models.LoadedModel:
        """Serve `model` from the next batch on; return the one it replaced."""
        old, self.model = self.model, model
        return old

    def _rows(self, model: models.LoadedModel, records: list[dict[str, Any]]) -> list[Row]:
        frame = pd.DataFrame.from_records(records, columns=model.card.feature_names)
        preds, probs = models.outputs(model, frame)
        return [(p, q, model.version) for p, q in zip(preds, probs, strict=True)]

    async def _score_batch(self, jobs: Sequence[list[dict[str, Any]]]) -> list[list[Row]]:
        model = self.model  # one read: the whole batch is scored by one model
        flat = [record for job in jobs for record in job]
        rows = await anyio.to_thread.run_sync(self._rows, model, flat)
        out, start = [], 0
        for job in jobs:
            out.append(rows[start : start + len(job)])
            start += len(job)
        return out

    async def score(self, records: list[dict[str, Any]]) -> Result:
        started = time.perf_counter()
        if self._batched is not None:
            rows: list[Row] = await self._batched(records)
        else:
            rows = await anyio.to_thread.run_sync(self._rows, self.model, records)
        return Result(
            predictions=[r[0] for r in rows],
            probabilities=[r[1] for r in rows],
            # A request split across two batches around a swap reports the newer version.
            version=rows[-1][2],
            seconds=time.perf_counter() - started,
        )
