"""Shadow failures and request sampling in the traffic log, over real HTTP (`bentoml serve`).

Two servers on real trainer exports (conftest.models), shadow mode:
- "failing": the challenger is wine-b with an injected failure on rows with alcohol above 13.5
  (failing_model: the model is real, the failure is injected), batching off so that each request
  is scored alone and fails or not on its own rows only; sampleRate 1.
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

FEATURE, ABOVE = "alcohol", 13.5
RECORDS_PER_REQUEST = 2


@pytest.fixture(scope="module")
def servers(models: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    work = tmp_path_factory.mktemp("shadow-logging")
    source = Path(models["wine-b"].removeprefix("file://"))
    broken = failing_model.failing_copy(source, work / "artifacts" / "wine-b-failing", FEATURE, ABOVE)
    failing = serving(models, "failing", {"mode": "shadow"}, loader=failing_model.LOADER)
    failing["challenger"]["uri"] = broken.as_uri()
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


def test_shadow_failures_are_logged_and_counted_exactly(
    servers: dict[str, Server], models: dict[str, str]
) -> None:
    server = servers["failing"]
    n = 60
    records = trained.records(Path(models["trained"]), n * RECORDS_PER_REQUEST, seed=11)
    batches = [records[i : i + RECORDS_PER_REQUEST] for i in range(0, len(records), RECORDS_PER_REQUEST)]
    fails = {f"f-{i}" for i, b in enumerate(batches) if any(r[FEATURE] > ABOVE for r in b)}
    assert 5 <= len(fails) <= n - 5, len(fails)  # the seed gives both outcomes, in fair numbers

    responses = _post(server.url, batches, "f")
    assert [r.status_code for r in responses] == [200] * n  # the caller never sees the shadow fail
    assert {r.json()["model"]["role"] for r in responses} == {routing.CHAMPION}
    _wait_shadowed(server.url, n)
    assert _metric(server.url, "flywheel_serving_errors_total", 'reason="model",role="challenger"') == len(
        fails
    )

    frame = _wait(server.sink(), lambda f: (f["role"] == routing.CHALLENGER).sum() >= n * RECORDS_PER_REQUEST)
    shadow = frame[frame["role"] == routing.CHALLENGER]
    assert len(shadow) == n * RECORDS_PER_REQUEST and not shadow["served"].any()
    failed = shadow[shadow[traffic.ERROR].notna()]
    assert set(failed["request_id"]) == fails
    assert len(failed) == len(fails) * RECORDS_PER_REQUEST  # every row of a failed request says so
    assert failed[traffic.ERROR].str.startswith("model: ValueError: injected failure").all()
    assert failed["prediction"].isna().all() and failed["probability"].isna().all()
    ok = shadow[shadow[traffic.ERROR].isna()]
    assert ok["prediction"].notna().all()
    champion = frame[frame["role"] == routing.CHAMPION]
    assert len(champion) == n * RECORDS_PER_REQUEST and champion[traffic.ERROR].isna().all()

    got = window.shadow_stats(
        server.sink(), driftmonitor.Window(rows=10_000), datetime.datetime.now(datetime.UTC)
    )
    assert got is not None and got.rows == n
    assert got.challenger_error_rate == len(fails) / n  # exact: failed shadowed requests / shadowed
    assert got.champion_error_rate == 0.0
    latency = ok.drop_duplicates("request_id")["latency_ms"].to_numpy()
    assert got.challenger_p99_ms == pytest.approx(float(np.percentile(latency, 99)))  # successes only
    # The drift window reads the champion's answers, all of them.
    current = window.read(
        server.sink(), driftmonitor.Window(rows=10_000), datetime.datetime.now(datetime.UTC)
    )
    assert len(current) == n * RECORDS_PER_REQUEST


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
