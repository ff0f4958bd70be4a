"""How hard the operators press on the API server: capped exponential backoff with jitter, and a
client-side rate limit (a token bucket), both with time and randomness injected so tests need
no sleeping and no luck.

Why both: backoff spaces the retries of one object (a run whose create keeps failing waits 0.5,
1, 2, ... s, up to the cap), jitter spreads the retries of many objects that failed together (200
runs throttled at once do not come back as one wave 10 s later), and the bucket bounds what the
whole process sends, whatever the number of objects (client-go's QPS and burst).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import random
import threading
import time
from collections.abc import Callable, Mapping


@dataclasses.dataclass
class Backoff:
    """Delay before attempt n+1 after n consecutive failures: base * 2**(n-1), capped, then
    scaled by a factor drawn uniformly from [1 - jitter, 1] ("equal jitter" when jitter=0.5)."""

    base: float = 0.5
    cap: float = 60.0
    jitter: float = 0.5
    rng: random.Random = dataclasses.field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError(f"backoff base and cap must be >= 0 (base={self.base}, cap={self.cap})")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be within [0, 1], got {self.jitter}")

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        # min() before the power would overflow for a long outage; 2**60 s is already past any cap.
        raw = min(self.cap, self.base * 2.0 ** min(failures - 1, 60))
        return raw * (1.0 - self.jitter * self.rng.random())


class Failures:
    """Consecutive failures per key, for a Backoff: grows on failure, forgotten on success."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.counts: dict[object, int] = {}

    def failed(self, key: object) -> float:
        """Count one more failure of `key`; returns the delay before its next attempt."""
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.backoff.delay(self.counts[key])

    def succeeded(self, key: object) -> None:
        self.counts.pop(key, None)


class TokenBucket:
    """At most `burst` requests at once, refilled at `qps` per second; qps <= 0 means no limit.

    `acquire()` blocks the calling thread (the Kubernetes calls run in worker threads) for as long
    as the bucket is empty; the sleep happens outside the lock, so waiting callers queue by the
    order in which they reserved a token.
    """

    def __init__(
        self,
        qps: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps > 0 and burst < 1:
            raise ValueError(f"burst must be >= 1 when qps is set, got {burst}")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._stamp = clock()

    def acquire(self) -> float:
        """Take one token; returns the seconds waited for it."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    def reserve(self) -> float:
        """Take one token without waiting; returns the seconds until it is due (the caller waits,
        or schedules its work that much later)."""
        if self.qps <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.qps)
            self._stamp = now
            self._tokens -= 1.0  # may go negative: a reservation the refill pays back
            return -self._tokens / self.qps if self._tokens < 0 else 0.0


class JitteredBackoffs(collections.abc.Sequence[float]):
    """A fixed number of growing, jittered delays, drawn afresh on every iteration: what kopf
    takes as `networking.error_backoffs` (it iterates the sequence once per failing request and
    reads its length), so its own retries of one request spread out instead of all the failing
    requests of a 429 storm retrying after the same 1, 1, 2, 3, 5... seconds."""

    def __init__(self, backoff: Backoff, size: int) -> None:
        self.backoff = backoff
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> float:  # type: ignore[override]
        if not -self.size <= index < self.size:
            raise IndexError(index)
        return self.backoff.delay(index % self.size + 1)

    def __iter__(self) -> collections.abc.Iterator[float]:
        return (self.backoff.delay(n) for n in range(1, self.size + 1))


@dataclasses.dataclass(frozen=True)
class Limits:
    """The client's knobs, from the operator's environment (the chart sets them)."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    qps: float = 200.0
    burst: int = 400

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        """Read FLYWHEEL_KUBE_{CONNECT_TIMEOUT,READ_TIMEOUT,QPS,BURST}; a bad value raises
        ValueError naming the variable."""
        defaults = cls()

        def number(name: str, default: float, *, minimum: float, integer: bool = False) -> float:
            text = env.get(name)
            if text is None or text == "":
                return default
            try:
                value = int(text) if integer else float(text)
            except ValueError:
                kind = "an integer" if integer else "a number"
                raise ValueError(f"{name}={text!r} is not {kind}") from None
            if math.isnan(value) or value < minimum:
                raise ValueError(f"{name}={text!r} must be >= {minimum}")
            return value

        return cls(
            connect_timeout=number("FLYWHEEL_KUBE_CONNECT_TIMEOUT", defaults.connect_timeout, minimum=0.001),
            read_timeout=number("FLYWHEEL_KUBE_READ_TIMEOUT", defaults.read_timeout, minimum=0.001),
            qps=number("FLYWHEEL_KUBE_QPS", defaults.qps, minimum=0),
            burst=int(number("FLYWHEEL_KUBE_BURST", defaults.burst, minimum=1, integer=True)),
        )
