"""POST /feedback: ground truth for requests answered earlier, stored beside the traffic log.

    POST /feedback {"labels": [{"request_id": "...", "record_index": 0, "label": "Rad Flow"}, ...]}
                -> {"accepted": 2, "request_id": "<this request's id>"}

A label names the request it belongs to by the request id the server answered with (the reply's
`request_id`, or the caller's own `x-request-id`) and the record's position in that request
(`record_index`, default 0: requests of one record need nothing else). The label is the class
(classification, a string or a number written as the card's class names are) or the value
(regression). Labels arrive late, out of order and more than once: each POST is written at once as
one Parquet file, atomically (a 200 means it is stored), under <traffic sink>/feedback/, and the
join (flywheel.drift.feedback) keeps the last label received for a record. Ids the log does not know
are kept and counted there, never refused here: the traffic they belong to may still be in a
replica's buffer, or was not sampled.

Files with the same columns (request_id, label, optional record_index and received) dropped into
that folder by another system (a chargeback feed, an inspection report) join the same way; CSV
files are read too.

Nothing about the models is needed, so feedback is accepted whatever is loaded; the body is bounded
by the guard (maxBodyBytes, JSON only) and by MAX_LABELS here.
"""

from __future__ import annotations

import datetime
import itertools
import math
import os
import secrets
import socket
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.parquet as pq
import pydantic

from flywheel import artifacts
from flywheel.serving import guard

ROUTE = "/feedback"
FOLDER = "feedback"
MAX_LABELS = 10_000
"""Labels one request may carry; more is a 400 (split the upload, or drop a file)."""
LABEL_MAX = 256
COLUMNS = ("received", "request_id", "record_index", "label")
_HOST = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname()) or "host"

RequestId = Annotated[
    str, pydantic.StringConstraints(pattern=guard.REQUEST_ID_PATTERN, max_length=guard.REQUEST_ID_MAX)
]


class Label(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    request_id: RequestId
    record_index: int = pydantic.Field(default=0, ge=0, le=1_000_000)
    label: Annotated[str, pydantic.StringConstraints(min_length=1, max_length=LABEL_MAX)] | float | int

    @pydantic.field_validator("label", mode="before")  # before: the union would read True as 1
    @classmethod
    def _finite(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a label is a class name or a number, not a boolean")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("a numeric label must be finite")
        return value


class Feedback(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    labels: list[Label] = pydantic.Field(min_length=1, max_length=MAX_LABELS)


def label_text(value: str | float | int) -> str:
    """Labels are stored as text, as the log stores class predictions; a float keeps every digit."""
    return repr(value) if isinstance(value, float) else str(value)


class FeedbackWriter:
    """Writes each accepted batch of labels as one Parquet file under <sink>/feedback/."""

    def __init__(self, sink_uri: str) -> None:
        self.store = artifacts.Store(sink_uri).child(FOLDER)
        self._seq = itertools.count()

    def write(self, labels: list[Label], now: datetime.datetime | None = None) -> str:
        received = now or datetime.datetime.now(datetime.UTC)
        table = pa.table(
            {
                "received": pa.array([received] * len(labels), pa.timestamp("us", tz="UTC")),
                "request_id": pa.array([x.request_id for x in labels], pa.string()),
                "record_index": pa.array([x.record_index for x in labels], pa.int64()),
                "label": pa.array([label_text(x.label) for x in labels], pa.string()),
            }
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        stamp = received.strftime("%Y%m%dT%H%M%S.%fZ")
        # A random tag too: a file is never replaced, even by a restarted process with the same pid.
        name = f"{stamp}-{_HOST}-{os.getpid()}-{next(self._seq):06d}-{secrets.token_hex(4)}.parquet"
        return self.store.write_bytes(name, bytes(sink.getvalue().to_pybytes()))
