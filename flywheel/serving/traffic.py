"""Request and prediction logging: sampled, buffered, written as Parquet files; read back for drift.

Each served request (with probability logging.sampleRate) adds one row per record, for the model
that answered it and, in shadow mode, for the challenger that scored it too. Rows are buffered and
written as one Parquet file when flushRows are waiting or flushSeconds have passed since the first.
Files are written atomically (temp + rename, or one S3 PUT) under the sink:

    <sink>/<UTC time of flush: %Y%m%dT%H%M%S.%fZ>-<host>-<pid>-<seq>.parquet

(host is the pod name in Kubernetes, so replicas sharing a sink never write the same name).

Schema (one row per scored record):

    timestamp      timestamp[us, UTC]  when the request arrived
    request_id     string              the x-request-id header, or a generated UUID
    role           string              champion | challenger
    served         bool                this model's answer went back to the caller (false: shadow)
    model_version  string              the model card's version
    <feature>...   float64 | string    every feature column, named as in the model card
    prediction     string | float64    class label (classification) or value (regression)
    probability    float64             probability of the predicted class (null for regression)
    latency_ms     float64             time spent scoring the request's batch, queueing included
"""

from __future__ import annotations

import datetime
import io
import itertools
import os
import socket
import threading
import time
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import artifacts

FIXED_COLUMNS = ("timestamp", "request_id", "role", "served", "model_version")
OUTPUT_COLUMNS = ("prediction", "probability", "latency_ms")
RESERVED = frozenset(FIXED_COLUMNS + OUTPUT_COLUMNS)
SUFFIX = ".parquet"
_HOST = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname()) or "host"


class TrafficLogger:
    """Buffers rows and writes Parquet files; thread-safe, flushes from the caller's thread."""

    def __init__(self, sink_uri: str, flush_rows: int, flush_seconds: float) -> None:
        self.store = artifacts.Store(sink_uri)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._rows: list[dict[str, Any]] = []
        self._first_at: float | None = None
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self.files_written = 0

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            if not self._rows:
                self._first_at = time.monotonic()
            self._rows.extend(rows)

    def due(self) -> bool:
        with self._lock:
            if not self._rows or self._first_at is None:
                return False
            waited = time.monotonic() - self._first_at
            return len(self._rows) >= self.flush_rows or waited >= self.flush_seconds

    def flush(self) -> str | None:
        """Write what is buffered as one file; return its URI (None when nothing was buffered)."""
        with self._lock:
            rows, self._rows, self._first_at = self._rows, [], None
        if not rows:
            return None
        data = _parquet(rows)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{_HOST}-{os.getpid()}-{next(self._seq):06d}{SUFFIX}"
        uri = self.store.write_bytes(name, data)
        self.files_written += 1
        return uri


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    """The rows as one Parquet file. Arrow builds the columns straight from the row dicts, 3-4x
    less CPU than a pandas DataFrame (the flush shares the GIL with the event loop, so its CPU is
    serving CPU). A column Arrow cannot type (say, a label that is an int in one row and a string
    in the next) is written as strings rather than losing the batch."""
    try:
        table = pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        names = list(dict.fromkeys(k for row in rows for k in row))
        table = pa.table({name: _column([row.get(name) for row in rows]) for name in names})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def _column(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _stamp(name: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(name.split("-", 1)[0], "%Y%m%dT%H%M%S.%fZ").replace(
            tzinfo=datetime.UTC
        )
    except ValueError:
        return None


def read(sink_uri: str, last_rows: int | None = None, since: datetime.datetime | None = None) -> pd.DataFrame:
    """Logged traffic under `sink_uri`, oldest first: all of it, the newest `last_rows`, and/or
    rows with timestamp >= `since` (timezone-aware; naive means UTC). Empty frame when none."""
    store = artifacts.Store(sink_uri)
    names = [n for n in store.list() if n.endswith(SUFFIX) and not n.startswith(".")]
    if since is not None:
        since = since if since.tzinfo else since.replace(tzinfo=datetime.UTC)
        # A file's name is its flush time, never earlier than its rows: older files are skipped.
        names = [n for n in names if (s := _stamp(n)) is None or s >= since]
    frames: list[pd.DataFrame] = []
    count = 0
    for name in reversed(names):
        frame = pd.read_parquet(io.BytesIO(store.read_bytes(name)))
        frames.append(frame)
        count += len(frame)
        if last_rows is not None and since is None and count >= last_rows:
            break
    if not frames:
        return pd.DataFrame(columns=[*FIXED_COLUMNS, *OUTPUT_COLUMNS])
    out = pd.concat(reversed(frames), ignore_index=True)
    out = out.sort_values("timestamp", kind="stable", ignore_index=True)
    if since is not None:
        out = out[out["timestamp"] >= pd.Timestamp(since)].reset_index(drop=True)
    if last_rows is not None:
        out = out.tail(last_rows).reset_index(drop=True)
    return out
