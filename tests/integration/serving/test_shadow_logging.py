"""Shadow failures and request sampling in the traffic log, over real HTTP (`bentoml serve`).

Two servers on real trainer exports (conftest.models), shadow mode:
- "failing": wine-a and wine-b with injected failures (failing_model: the models are real, the
  failures injected): the champion fails on rows with magnesium above 120, the challenger on rows
  with alcohol above 13.5; batching off so that each request is scored alone and fails or not on
  its own rows only; sampleRate 1.
- "sampled": wine-a and wine-b as they are, sampleRate 0.5.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from flywheel.api import driftmonitor
from flywheel.drift import window
from flywheel.serving import routing, traffic
from tests.integration.serving import failing_model, trained
from tests.integration.serving.conftest import Server, serving

pytestmark = pytest.mark.slow

FEATURE, ABOVE = "alcohol", 13.5  # the challenger fails on these rows
CHAMPION_FEATURE, CHAMPION_ABOVE = "magnesium", 120.0  # the champion on these (a 500 to the caller)
RECORDS_PER_REQUEST = 2


@pytest.fixture(scope="module")
def servers(models: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    work = tmp_path_factory.mktemp("shadow-logging")
    copies = work / "artifacts"
    challenger = Path(models["wine-b"].removeprefix("file://"))
    champion = Path(models["wine-a"].removeprefix("file://"))
    failing = serving(models, "failing", {"mode": "shadow"}, loader=failing_model.LOADER)
    failing["challenger"]["uri"] = failing_model.failing_copy(
        challenger, copies / "b", FEATURE, ABOVE
    ).as_uri()
    failing["champion"]["uri"] = failing_model.failing_copy(
        champion, copies / "a", CHAMPION_FEATURE, CHAMPION_ABOVE
    ).as_uri()
    failing["batching"] = {"enabled": False}
    sampled = serving(models, "sampled", {"mode": "shadow"})
    sampled["logging"]["sampleRate"] = 0.5
    started = {"failing": Server(work / "failing", failing), "sampled": Server(work / "sampled", sampled)}
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.terminate()
        for server in started.values():
            server.stop()


def _post(url: str, batches: list[list[dict[str, Any]]], prefix: str) -> list[httpx.Response]:
    def one(i: int) -> httpx.Response:
        return client.post(
            f"{url}/predict", json={"records": batches[i]}, headers={"x-request-id": f"{prefix}-{i}"}
        )

    with httpx.Client(timeout=30) as client, concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(len(batches))))


def _metric(url: str, name: str, labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _wait_shadowed(url: str, requests: int, timeout: float = 30.0) -> None:
    """Until the challenger has scored or failed every shadowed request (the metrics count every
    request, sampled or not)."""
    challenger = re.compile(
        r'^flywheel_serving_(?:requests|errors)_total\{[^}]*role="challenger"[^}]*\} (\S+)$', re.MULTILINE
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(float(v) for v in challenger.findall(httpx.get(f"{url}/metrics").text)) >= requests:
            return
        time.sleep(0.2)
    raise AssertionError(f"the challenger did not finish {requests} shadowed requests in {timeout}s")


def test_failures_are_logged_and_counted_exactly(servers: dict[str, Server], models: dict[str, str]) -> None:
    """The champion fails on some requests (500, nothing shadowed), the challenger on some of the
    others (the caller never sees it); both are logged as error rows and counted exactly."""
    server = servers["failing"]
    n = 60
    records = trained.records(Path(models["trained"]), n * RECORDS_PER_REQUEST, seed=11)
    batches = [records[i : i + RECORDS_PER_REQUEST] for i in range(0, len(records), RECORDS_PER_REQUEST)]
    champion_fails = [any(r[CHAMPION_FEATURE] > CHAMPION_ABOVE for r in b) for b in batches]
    # Requests answered first and last: the span shadow_stats compares runs from first to last shadow.
    order = sorted(range(n), key=lambda i: (champion_fails[i], i))
    order = [order[0], *order[2:], order[1]]
    batches = [batches[i] for i in order]
    champion_fails = [champion_fails[i] for i in order]
    ids = [f"f-{i}" for i in range(n)]
    shadowed = [ids[i] for i in range(n) if not champion_fails[i]]
    fails = {
        ids[i] for i, b in enumerate(batches) if not champion_fails[i] and any(r[FEATURE] > ABOVE for r in b)
    }
    assert (
        5 <= len(fails) <= len(shadowed) - 5 and 3 <= sum(champion_fails) <= 20
    )  # the seed gives all outcomes

    with httpx.Client(timeout=30) as client:  # in order: arrival times follow it
        responses = [
            client.post(f"{server.url}/predict", json={"records": b}, headers={"x-request-id": i})
            for i, b in zip(ids, batches, strict=True)
        ]
    assert [r.status_code for r in responses] == [500 if f else 200 for f in champion_fails]
    assert {r.json()["model"]["role"] for r in responses if r.status_code == 200} == {routing.CHAMPION}
    _wait_shadowed(server.url, len(shadowed))
    assert _metric(server.url, "flywheel_serving_errors_total", 'reason="model",role="challenger"') == len(
        fails
    )

    rows = n * RECORDS_PER_REQUEST
    frame = _wait(server.sink(), lambda f: len(f) >= rows + len(shadowed) * RECORDS_PER_REQUEST)
    shadow = frame[frame["role"] == routing.CHALLENGER]
    assert len(shadow) == len(shadowed) * RECORDS_PER_REQUEST and not shadow["served"].any()
    failed = shadow[shadow[traffic.ERROR].notna()]
    assert set(failed["request_id"]) == fails
    assert len(failed) == len(fails) * RECORDS_PER_REQUEST  # every row of a failed request says so
    assert failed[traffic.ERROR].str.startswith("model: ValueError: injected failure: alcohol").all()
    assert failed["prediction"].isna().all() and failed["probability"].isna().all()
    ok = shadow[shadow[traffic.ERROR].isna()]
    assert ok["prediction"].notna().all()
    champion = frame[frame["role"] == routing.CHAMPION]
    assert len(champion) == rows and champion["served"].all()
    champion_failed = champion[champion[traffic.ERROR].notna()]
    assert set(champion_failed["request_id"]) == {ids[i] for i in range(n) if champion_fails[i]}
    assert champion_failed[traffic.ERROR].str.contains("magnesium").all()

    now = datetime.datetime.now(datetime.UTC)
    got = window.shadow_stats(server.sink(), driftmonitor.Window(rows=10_000), now)
    assert got is not None and got.rows == len(shadowed)
    assert got.challenger_error_rate == len(fails) / len(shadowed)  # exact: failed / shadowed
    assert got.champion_error_rate == sum(champion_fails) / n
    latency = ok.drop_duplicates("request_id")["latency_ms"].to_numpy()
    assert got.challenger_p99_ms == pytest.approx(float(np.percentile(latency, 99)))  # successes only
    # The drift window reads the rows the champion answered, and only those.
    current = window.read(server.sink(), driftmonitor.Window(rows=10_000), now)
    assert set(current["request_id"]) == set(shadowed) and len(current) == len(shadowed) * RECORDS_PER_REQUEST


def test_sampling_is_per_request_and_logs_requests_whole(
    servers: dict[str, Server], models: dict[str, str]
) -> None:
    """Runs last on its server: it stops it, so that the final flush writes every buffered row."""
    server = servers["sampled"]
    n, per = 300, 3
    records = trained.records(Path(models["trained"]), n * per, seed=5)
    batches = [records[i : i + per] for i in range(0, len(records), per)]
    responses = _post(server.url, batches, "s")
    assert [r.status_code for r in responses] == [200] * n
    _wait_shadowed(server.url, n)
    server.stop()  # graceful: flushes what is buffered; every shadow scoring has finished

    frame = traffic.read(server.sink())
    assert set(frame["request_id"]) <= {f"s-{i}" for i in range(n)}
    logged = frame[frame["role"] == routing.CHAMPION]["request_id"].unique()
    # Binomial(300, 0.5): p < 0.001 (two-sided exact test) would mean sampling is not p = 0.5.
    assert stats.binomtest(len(logged), n, 0.5).pvalue > 0.001, len(logged)
    rows = frame.groupby(["request_id", "role"]).size().unstack(fill_value=0)
    # No request logged in part: each logged request has all its rows for both roles.
    assert (rows[routing.CHAMPION] == per).all() and (rows[routing.CHALLENGER] == per).all(), rows
    assert set(rows.index) == set(logged)
    assert frame[traffic.ERROR].isna().all()
    got = window.shadow_stats(
        server.sink(), driftmonitor.Window(rows=10_000), datetime.datetime.now(datetime.UTC)
    )
    assert got is not None and got.rows == len(logged) and got.challenger_error_rate == 0.0


def _wait(sink: str, predicate: Any, timeout: float = 15.0) -> pd.DataFrame:
    deadline = time.monotonic() + timeout
    while True:
        frame = traffic.read(sink)
        if (not frame.empty and predicate(frame)) or time.monotonic() > deadline:
            return frame
        time.sleep(0.25)
