"""A closed-loop async HTTP load generator (aiohttp) and the statistics bench/serving.py reports.

`concurrency` clients each send one request, wait for the whole answer, and send the next, until a
fixed number of requests has been sent (closed loop: the offered load adapts to the server, as with
`hey -c` or `wrk`). Warm-up requests go first, at the same concurrency, and are not counted. A request
is an error when it raises (connection reset, timeout, ...), answers non-2xx, or answers 2xx without
one prediction per record sent. Bodies are encoded before the clock starts, so the client spends its
CPU on HTTP alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

Encode = Callable[[Sequence[dict[str, Any]]], bytes]
Count = Callable[[Any], int]


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How a server wants records and where its answers are."""

    encode: Encode
    count: Count


PROTOCOLS = {
    "flywheel": Protocol(
        encode=lambda rows: json.dumps({"records": list(rows)}).encode(),
        count=lambda body: len(body["predictions"]),
    ),
    "kserve-v1": Protocol(
        encode=lambda rows: json.dumps({"instances": list(rows)}).encode(),
        count=lambda body: len(body["predictions"]),
    ),
}


def oip(features: Sequence[str]) -> Protocol:
    """The Open Inference Protocol v2 for an all-numeric model: one FP32 [N, F] tensor, features
    in `features` order (the model card's); rows counted from the first output."""

    def encode(rows: Sequence[dict[str, Any]]) -> bytes:
        data = [row[name] for row in rows for name in features]
        tensor = {"name": "input", "datatype": "FP32", "shape": [len(rows), len(features)], "data": data}
        return json.dumps({"inputs": [tensor]}).encode()

    return Protocol(encode=encode, count=lambda body: len(body["outputs"][0]["data"]))


@dataclasses.dataclass
class Stats:
    concurrency: int
    rows_per_request: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    error_samples: list[str]

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return (self.requests - self.errors) / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "rowsPerRequest": self.rows_per_request,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "requestsPerSecond": round(self.throughput, 1),
            "recordsPerSecond": round(self.throughput * self.rows_per_request, 1),
            "p50Ms": round(self.percentile(50), 2),
            "p99Ms": round(self.percentile(99), 2),
            "maxMs": round(max(self.latencies_ms, default=math.nan), 2),
            "errorSamples": self.error_samples,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]): a latency some request actually had; NaN if none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def bodies(protocol: Protocol, records: Sequence[dict[str, Any]], rows: int, count: int) -> list[bytes]:
    """`count` request bodies of `rows` records each, cycling through `records`."""
    out = []
    for i in range(count):
        start = (i * rows) % len(records)
        chunk = [records[(start + j) % len(records)] for j in range(rows)]
        out.append(protocol.encode(chunk))
    return out


async def _one(
    session: aiohttp.ClientSession, url: str, body: bytes, rows: int, count: Count
) -> tuple[float, str | None]:
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
            payload = await resp.read()
            elapsed = (time.perf_counter() - started) * 1000.0
            if not 200 <= resp.status < 300:
                return elapsed, f"HTTP {resp.status}: {payload[:200]!r}"
            answered = count(json.loads(payload))
            if answered != rows:
                return elapsed, f"HTTP {resp.status} with {answered} predictions for {rows} records"
            return elapsed, None
    except Exception as exc:  # any failure is an error of the run, never a crash of the bench
        return (time.perf_counter() - started) * 1000.0, f"{type(exc).__name__}: {exc}"[:200]


async def _drive(
    url: str, payloads: Sequence[bytes], concurrency: int, rows: int, count: Count, timeout: float
) -> tuple[list[float], list[str], float]:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    latencies: list[float] = []
    errors: list[str] = []
    cursor = iter(range(len(payloads)))

    async def client(session: aiohttp.ClientSession) -> None:
        for i in cursor:  # a shared iterator: each request index is taken by exactly one client
            elapsed, error = await _one(session, url, payloads[i], rows, count)
            latencies.append(elapsed)
            if error is not None:
                errors.append(error)

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return latencies, errors, seconds


def run(
    url: str,
    protocol: Protocol,
    records: Sequence[dict[str, Any]],
    *,
    concurrency: int,
    requests: int,
    warmup: int,
    rows: int = 1,
    timeout: float = 60.0,
) -> Stats:
    """Warm up, then send `requests` requests of `rows` records with `concurrency` clients."""
    warm = bodies(protocol, records, rows, warmup)
    measured = bodies(protocol, records, rows, requests)
    if warm:
        asyncio.run(_drive(url, warm, concurrency, rows, protocol.count, timeout))
    latencies, errors, seconds = asyncio.run(
        _drive(url, measured, concurrency, rows, protocol.count, timeout)
    )
    return Stats(concurrency, rows, requests, len(errors), seconds, latencies, errors[:5])
