"""flywheel.kube.throttle with time and randomness injected: backoff growth, cap, jitter and
reset; the token bucket's burst and refill; the settings' errors name the variable."""

from __future__ import annotations

import random

import pytest

from flywheel.kube import throttle


def test_backoff_doubles_up_to_the_cap_within_its_jitter() -> None:
    backoff = throttle.Backoff(base=0.5, cap=8.0, jitter=0.5, rng=random.Random(1))
    for failures, raw in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (500, 8.0)]:
        delay = backoff.delay(failures)
        assert raw * 0.5 <= delay <= raw, (failures, delay)
    assert backoff.delay(0) == 0.0


def test_jitter_spreads_objects_that_failed_together_and_is_seeded() -> None:
    first = [throttle.Backoff(rng=random.Random(7)).delay(3) for _ in range(2)]
    assert first[0] == first[1]  # same seed, same delay: tests replay
    rng = random.Random(7)
    spread = {round(throttle.Backoff(rng=rng).delay(3), 6) for _ in range(50)}
    assert len(spread) > 40


def test_failures_reset_on_success() -> None:
    failures = throttle.Failures(throttle.Backoff(base=1.0, cap=100.0, jitter=0.0))
    assert [failures.failed("a") for _ in range(3)] == [1.0, 2.0, 4.0]
    assert failures.failed("b") == 1.0  # per object
    failures.succeeded("a")
    assert failures.failed("a") == 1.0


def test_bucket_allows_a_burst_then_paces_at_qps() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = throttle.TokenBucket(qps=10, burst=3, clock=lambda: now[0], sleep=sleep)
    waits = [bucket.acquire() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.1) and waits[4] == pytest.approx(0.1)
    now[0] += 10.0  # idle: refills up to the burst, no further
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.1)


def test_no_limit_when_qps_is_zero() -> None:
    bucket = throttle.TokenBucket(qps=0, burst=1, sleep=lambda s: pytest.fail("slept"))
    assert all(bucket.acquire() == 0.0 for _ in range(1000))


def test_limits_from_env_and_errors_that_name_the_variable() -> None:
    limits = throttle.Limits.from_env({"FLYWHEEL_KUBE_READ_TIMEOUT": "2.5", "FLYWHEEL_KUBE_QPS": "0"})
    assert (limits.read_timeout, limits.qps, limits.burst) == (2.5, 0.0, throttle.Limits().burst)
    with pytest.raises(ValueError, match="FLYWHEEL_KUBE_BURST='many' is not an integer"):
        throttle.Limits.from_env({"FLYWHEEL_KUBE_BURST": "many"})
    with pytest.raises(ValueError, match=r"FLYWHEEL_KUBE_CONNECT_TIMEOUT='0' must be >= 0\.001"):
        throttle.Limits.from_env({"FLYWHEEL_KUBE_CONNECT_TIMEOUT": "0"})
    with pytest.raises(ValueError, match="jitter"):
        throttle.Backoff(jitter=2)


def test_jittered_backoffs_as_kopf_reads_them() -> None:
    delays = throttle.JitteredBackoffs(throttle.Backoff(base=1.0, cap=30.0, rng=random.Random(5)), 6)
    assert len(delays) == 6
    first, second = list(delays), list(delays)  # a fresh draw per failing request
    assert first != second
    for drawn in (first, second):
        for n, delay in enumerate(drawn, start=1):
            raw = min(30.0, 2.0 ** (n - 1))
            assert raw / 2 <= delay <= raw


def test_reserve_takes_a_token_without_waiting() -> None:
    now = [0.0]
    bucket = throttle.TokenBucket(qps=10, burst=2, clock=lambda: now[0], sleep=lambda s: pytest.fail("slept"))
    assert [bucket.reserve() for _ in range(4)] == pytest.approx([0.0, 0.0, 0.1, 0.2])
