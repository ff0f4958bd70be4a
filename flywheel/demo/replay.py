"""Replay recorded rows against a live /predict endpoint, the way production traffic arrives.

An open-loop load generator: requests arrive as a Poisson process at `rate` per second (exponential
gaps, seeded), each carrying 1..max_batch records, and are sent by up to `concurrency` threads over
one pooled HTTP client. Open-loop means a slow server does not slow the arrivals down (until every
sender is busy, which `Stats.backlogged` counts), so latency under a model swap is measured honestly.

Every request is counted: a non-200 answer or a transport error is a failure, kept with its reason.
The x-flywheel-model-version header of each answer is tallied, so the summary shows which models
served the traffic and when the champion changed. Rows cycle through the given records, so the
replay can run for as long as the demo needs (through retraining and the promotion).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import random
import threading
import time
from concurrent import futures
from typing import Any

import httpx

VERSION_HEADER = "x-flywheel-model-version"


@dataclasses.dataclass
class Stats:
    """What the replay saw; a consistent copy is taken under the lock by Replayer.stats()."""

    requests: int = 0
    ok: int = 0
    failed: int = 0
    rows: int = 0
    backlogged: int = 0
    """Arrivals that waited because every sender was busy."""
    failures: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    versions: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile of request latency in ms (None before any answer)."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "rows": self.rows,
            "backlogged": self.backlogged,
            "failures": dict(self.failures),
            "versions": dict(self.versions),
            "p50Ms": _round(self.percentile(50)),
            "p99Ms": _round(self.percentile(99)),
            "seconds": round(self.seconds, 2),
            "requestsPerSecond": round(self.requests / self.seconds, 1) if self.seconds else None,
        }


class Replayer:
    """Sends `records` to `url`/predict in a background thread until stop()."""

    def __init__(
        self,
        url: str,
        records: list[dict[str, Any]],
        *,
        rate: float = 20.0,
        concurrency: int = 8,
        max_batch: int = 8,
        seed: int = 0,
        timeout: float = 30.0,
    ) -> None:
        if not records:
            raise ValueError("nothing to replay: records is empty")
        self.url = url.rstrip("/") + "/predict"
        self.records = records
        self.rate = rate
        self.max_batch = max_batch
        self._rng = random.Random(seed)
        self._cursor = 0
        self._lock = threading.Lock()
        self._stats = Stats()
        self._stop = threading.Event()
        self._slots = threading.Semaphore(concurrency)
        self._pool = futures.ThreadPoolExecutor(concurrency, thread_name_prefix="replay")
        self._client = httpx.Client(
            timeout=timeout,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._thread = threading.Thread(target=self._arrivals, name="replay-arrivals", daemon=True)
        self._started = 0.0

    # --- control --------------------------------------------------------------------------------
    def start(self) -> Replayer:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def set_rate(self, rate: float) -> None:
        """Change the arrival rate (requests per second) from the next arrival on."""
        self.rate = rate

    def wait_rows(self, rows: int, timeout: float) -> bool:
        """Block until `rows` records were answered successfully; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._stats.rows >= rows:
                    return True
            time.sleep(0.05)
        return False

    def stats(self) -> Stats:
        """A copy of the counters so far."""
        with self._lock:
            copy = dataclasses.replace(
                self._stats,
                failures=collections.Counter(self._stats.failures),
                versions=collections.Counter(self._stats.versions),
                latencies_ms=list(self._stats.latencies_ms),
            )
        copy.seconds = time.monotonic() - self._started if self._started else 0.0
        return copy

    def stop(self) -> Stats:
        """Stop new arrivals, wait for requests in flight, close the client; the final counts."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._pool.shutdown(wait=True)
        self._client.close()
        return self.stats()

    def __enter__(self) -> Replayer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- workers --------------------------------------------------------------------------------
    def _arrivals(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            due += self._rng.expovariate(self.rate) if self.rate > 0 else 0.1
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            if self.rate <= 0:
                continue
            if not self._slots.acquire(blocking=False):
                with self._lock:
                    self._stats.backlogged += 1
                while not self._slots.acquire(timeout=0.1):
                    if self._stop.is_set():
                        return
                due = max(due, time.monotonic())  # do not burst to catch up after a backlog
            self._pool.submit(self._send, self._next_batch())

    def _next_batch(self) -> list[dict[str, Any]]:
        size = self._rng.randint(1, self.max_batch)
        batch = [self.records[(self._cursor + i) % len(self.records)] for i in range(size)]
        self._cursor = (self._cursor + size) % len(self.records)
        return batch

    def _send(self, batch: list[dict[str, Any]]) -> None:
        started = time.monotonic()
        reason = None
        version = None
        try:
            response = self._client.post(self.url, json={"records": batch})
            if response.status_code != 200:
                reason = f"HTTP {response.status_code}"
            version = response.headers.get(VERSION_HEADER)
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
        finally:
            self._slots.release()
        elapsed_ms = (time.monotonic() - started) * 1000.0
        with self._lock:
            self._stats.requests += 1
            if reason is None:
                self._stats.ok += 1
                self._stats.rows += len(batch)
                self._stats.latencies_ms.append(elapsed_ms)
                self._stats.versions[version or "?"] += 1
            else:
                self._stats.failed += 1
                self._stats.failures[reason] += 1


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
