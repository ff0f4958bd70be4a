"""Request and prediction logging: sampled, buffered, written as Parquet files; read back for drift.

Sampling is per request: with probability logging.sampleRate a request is logged whole, one row per
record for the model that answered it and, in shadow mode, one per record for the challenger that
scored it too (so a DriftMonitor can pair them); otherwise none of its rows is. A scoring that
failed is logged too, its rows marked by `error`. Rows are buffered and written as one Parquet file
when flushRows are waiting or flushSeconds have passed since the first.
Files are written atomically (temp + rename, or one S3 PUT) under the sink:

    <sink>/<UTC time of flush: %Y%m%dT%H%M%S.%fZ>-<host>-<pid>-<seq>.parquet

(host is the pod name in Kubernetes, so replicas sharing a sink never write the same name).

Schema (one row per scored record):

    timestamp      timestamp[us, UTC]  when the request arrived
    request_id     string              the x-request-id header, or a generated id (32 hex digits:
                                       a random per-process prefix and a counter)
    role           string              champion | challenger
    served         bool                this model's answer went back to the caller (false: shadow)
    model_version  string              the model card's version
    <feature>...   float64 | string    every feature column, named as in the model card
    prediction     string | float64    class label (classification) or value (regression)
    probability    float64             probability of the predicted class (null for regression)
    latency_ms     float64             time spent scoring the request's batch, queueing included
                                       (for a failure: until it failed)
    error          string              null when the model scored the request; else why it failed
                                       ("overloaded", "model: <exception>"), prediction and
                                       probability are then null. Added later: files written
                                       before it lack the column (read back as null)
    record_index   int64               the record's position in its request (0-based): with
                                       request_id, the key ground truth is joined on
                                       (flywheel.drift.feedback). Added later: null in older files

Ground truth sent later (POST /feedback, or files dropped by another system) lives beside the log
in <sink>/feedback/ (flywheel.serving.feedback); readers of the log list only the sink's own
*.parquet files, so the folder never mixes into the traffic.
"""

from __future__ import annotations

import datetime
import io
import itertools
import operator
import os
import socket
import threading
import time
import typing
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import artifacts

FIXED_COLUMNS = ("timestamp", "request_id", "role", "served", "model_version")
OUTPUT_COLUMNS = ("prediction", "probability", "latency_ms", "error")
ERROR = "error"
RECORD_INDEX = "record_index"
RESERVED = frozenset((*FIXED_COLUMNS, *OUTPUT_COLUMNS, RECORD_INDEX))
SUFFIX = ".parquet"
_HOST = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname()) or "host"


Columns = dict[str, list[Any]]


class Request(typing.NamedTuple):
    """One request's rows for one model, as the service has them: the log's columns are built at
    flush time for all buffered requests at once (per request, building a dict of lists cost more
    than writing the Parquet did). `errors` None: no row failed."""

    arrived_us: int  # microseconds since the epoch, UTC
    request_id: str
    role: str
    served: bool
    model_version: str
    records: list[dict[str, Any]]  # the request's records, keyed by feature name
    predictions: list[Any]
    probabilities: list[float | None]
    latency_ms: float
    errors: list[str | None] | None = None


class TrafficLogger:
    """Buffers rows and writes Parquet files; thread-safe, flushes from the caller's thread.

    Rows are buffered as columns (one dict of equal-length lists per request): Arrow builds a
    column from a list ~15x faster than from row dicts, and the flush runs in a worker thread that
    shares the GIL with the event loop, so its CPU is serving CPU."""

    def __init__(self, sink_uri: str, flush_rows: int, flush_seconds: float) -> None:
        self.store = artifacts.Store(sink_uri)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._chunks: list[tuple[int, Columns | Request]] = []
        self._rows = 0
        self._first_at: float | None = None
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self.files_written = 0
        # The feature columns of requests (add_request), in order: set by the service.
        self.features: tuple[str, ...] = ()

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Buffer rows given as dicts (a key missing from a row is null there)."""
        names = dict.fromkeys(k for row in rows for k in row)
        self.add_columns({name: [row.get(name) for row in rows] for name in names})

    def add_columns(self, columns: Columns) -> None:
        """Buffer rows given as columns: equal-length lists, one per column name."""
        self._buffer(len(next(iter(columns.values()), [])), columns)

    def add_request(self, request: Request) -> None:
        """Buffer one request's rows (one per record), its features named by `features`."""
        self._buffer(len(request.records), request)

    def _buffer(self, n: int, columns: Columns | Request) -> None:
        if n == 0:
            return
        with self._lock:
            if not self._rows:
                self._first_at = time.monotonic()
            self._chunks.append((n, columns))
            self._rows += n

    def due(self) -> bool:
        with self._lock:
            if not self._rows or self._first_at is None:
                return False
            waited = time.monotonic() - self._first_at
            return self._rows >= self.flush_rows or waited >= self.flush_seconds

    def flush(self) -> str | None:
        """Write what is buffered as one file; return its URI (None when nothing was buffered)."""
        with self._lock:
            chunks, self._chunks, self._rows, self._first_at = self._chunks, [], 0, None
        if not chunks:
            return None
        data = _parquet(chunks, self.features)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{stamp}-{_HOST}-{os.getpid()}-{next(self._seq):06d}{SUFFIX}"
        uri = self.store.write_bytes(name, data)
        self.files_written += 1
        return uri


def _parquet(chunks: list[tuple[int, Columns | Request]], features: tuple[str, ...]) -> bytes:
    """The buffered chunks as one Parquet file; a column a chunk lacks is null in its rows."""
    types = _TYPES
    if all(isinstance(c, Request) for _, c in chunks):  # the service's case: timestamps as ints
        merged = _request_columns([c for _, c in chunks if isinstance(c, Request)], features)
        types = {**_TYPES, "timestamp": _TIMESTAMP}
    else:
        dicts = [(n, c if isinstance(c, dict) else _request_dicts(c, features)) for n, c in chunks]
        names = dict.fromkeys(name for _, columns in dicts for name in columns)
        merged = {name: [v for n, c in dicts for v in c.get(name) or [None] * n] for name in names}
    table = pa.table({name: _column(values, types.get(name)) for name, values in merged.items()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


# Columns whose type is fixed, not inferred: `error` is null in almost every row, and a file where
# it is null throughout would otherwise get Arrow's null type instead of string.
# (probability and latency: a file of failures only would otherwise hold them as null, not float).
_TYPES: dict[str, pa.DataType] = {
    ERROR: pa.string(),
    RECORD_INDEX: pa.int64(),
    "probability": pa.float64(),
    "latency_ms": pa.float64(),
}


_TIMESTAMP = pa.timestamp("us", tz="UTC")  # what Arrow infers from the service's aware datetimes
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _request_columns(requests: list[Request], features: tuple[str, ...]) -> Columns:
    """Requests as columns, in the order (and with the types) rows logged as dicts had."""
    counts = [len(r.records) for r in requests]

    def repeated(values: list[Any]) -> list[Any]:
        if all(n == 1 for n in counts):
            return values
        return list(itertools.chain.from_iterable(map(itertools.repeat, values, counts)))

    columns: Columns = {
        "timestamp": repeated([r.arrived_us for r in requests]),
        "request_id": repeated([r.request_id for r in requests]),
        "role": repeated([r.role for r in requests]),
        "served": repeated([r.served for r in requests]),
        "model_version": repeated([r.model_version for r in requests]),
    }
    records = [record for r in requests for record in r.records]
    columns.update(zip(features, _transpose(records, features), strict=True))
    columns["prediction"] = [p for r in requests for p in r.predictions]
    columns["probability"] = [p for r in requests for p in r.probabilities]
    columns["latency_ms"] = repeated([r.latency_ms for r in requests])
    columns[ERROR] = [e for r, n in zip(requests, counts, strict=True) for e in (r.errors or [None] * n)]
    columns[RECORD_INDEX] = [i for n in counts for i in range(n)]
    return columns


def _request_dicts(request: Request, features: tuple[str, ...]) -> Columns:
    """One request's columns beside rows added as dicts: its timestamp as a datetime, as theirs."""
    columns = _request_columns([request], features)
    stamp = _EPOCH + datetime.timedelta(microseconds=request.arrived_us)
    columns["timestamp"] = [stamp] * len(request.records)
    return columns


def _transpose(records: list[dict[str, Any]], names: tuple[str, ...]) -> list[list[Any]]:
    """Feature columns of the records: C-level itemgetter + zip when every record has every
    feature (validated records do), else a lookup per value (a missing one is null)."""
    if len(names) > 1:
        try:
            return [list(col) for col in zip(*map(operator.itemgetter(*names), records), strict=True)]
        except KeyError:
            pass
    return [[record.get(name) for record in records] for name in names]


def _column(values: list[Any], type_: pa.DataType | None = None) -> pa.Array:
    """Arrow infers the type (UTC timestamps, floats, strings, bools) unless `type_` is given; a
    column it cannot type (say, a label that is an int in one row and a string in the next) is
    written as strings rather than losing the batch."""
    try:
        return pa.array(values, type=type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames read from several files as one, every column of any of them kept (in first-seen
    order; null where a file lacks it, as files from before `error` do). A column that is null
    throughout one file (say, `prediction` in a file of failures only) is left out of that file
    before concatenating: it adds only nulls, and pandas deprecates letting it type the result."""
    names = list(dict.fromkeys(c for f in frames for c in f.columns))
    kept = [f.loc[:, f.notna().any().to_numpy()] if len(f) else f for f in frames]
    return pd.concat(kept, ignore_index=True).reindex(columns=names)


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
    out = concat(list(reversed(frames)))
    out = out.sort_values("timestamp", kind="stable", ignore_index=True)
    if since is not None:
        out = out[out["timestamp"] >= pd.Timestamp(since)].reset_index(drop=True)
    if last_rows is not None:
        out = out.tail(last_rows).reset_index(drop=True)
    return out
