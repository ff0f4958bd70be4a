"""The replay load generator against a real HTTP server on loopback: counts, pacing, concurrency."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http import server

import pytest

from flywheel.demo import replay


class _Handler(server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        app: _App = self.server.app  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        status = app.answer(len(body["records"]))
        payload = json.dumps({"predictions": [0] * len(body["records"])}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.send_header(replay.VERSION_HEADER, app.version)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


class _App:
    def __init__(self, delay: float = 0.0, fail_every: int = 0) -> None:
        self.delay, self.fail_every = delay, fail_every
        self.version = "m-1"
        self.lock = threading.Lock()
        self.calls = self.rows = self.inflight = self.max_inflight = 0

    def answer(self, rows: int) -> int:
        with self.lock:
            self.calls += 1
            self.rows += rows
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            number = self.calls
        time.sleep(self.delay)
        with self.lock:
            self.inflight -= 1
        return 500 if self.fail_every and number % self.fail_every == 0 else 200


@pytest.fixture
def serve() -> Iterator:
    servers = []

    def start(app: _App) -> str:
        httpd = server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.app = app  # type: ignore[attr-defined]
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


RECORDS = [{"f1": float(i), "f2": float(-i)} for i in range(50)]


def test_counts_every_request_and_row_and_the_serving_version(serve) -> None:
    app = _App()
    url = serve(app)
    with replay.Replayer(url, RECORDS, rate=200, concurrency=4, max_batch=5, seed=1) as player:
        assert player.wait_rows(300, timeout=10)
        app.version = "m-2"  # the champion changes under the running replay
        time.sleep(0.2)
    stats = player.stats()
    assert stats.failed == 0 and stats.requests == stats.ok == app.calls
    assert stats.rows == app.rows >= 300
    assert set(stats.versions) == {"m-1", "m-2"} and sum(stats.versions.values()) == stats.ok
    assert stats.percentile(50) is not None and stats.percentile(99) >= stats.percentile(50)
    assert stats.to_dict()["failed"] == 0


def test_failures_are_counted_with_their_reason(serve) -> None:
    app = _App(fail_every=3)
    url = serve(app)
    with replay.Replayer(url, RECORDS, rate=300, concurrency=4, seed=2) as player:
        player.wait_rows(100, timeout=10)
    stats = player.stats()
    assert stats.failed == app.calls // 3 > 0
    assert stats.failures == {"HTTP 500": stats.failed}
    assert stats.ok + stats.failed == stats.requests == app.calls


def test_transport_errors_are_failures_not_crashes() -> None:
    with replay.Replayer("http://127.0.0.1:9", RECORDS, rate=50, concurrency=2, timeout=1) as player:
        time.sleep(0.3)
    stats = player.stats()
    assert stats.requests > 0 and stats.failed == stats.requests and stats.ok == 0
    assert set(stats.failures) == {"ConnectError"}


def test_pacing_follows_the_rate_and_concurrency_is_bounded(serve) -> None:
    app = _App(delay=0.05)
    url = serve(app)
    player = replay.Replayer(url, RECORDS, rate=40, concurrency=3, seed=3).start()
    time.sleep(1.5)
    stats = player.stop()
    # Poisson arrivals at 40/s for 1.5 s: mean 60, sd ~7.7; four sd either side.
    assert 29 <= stats.requests <= 91, stats.requests
    assert app.max_inflight <= 3
    assert player.stats().requests == stats.requests  # stop() waited for requests in flight


def test_rate_zero_pauses_and_empty_records_are_refused(serve) -> None:
    app = _App()
    player = replay.Replayer(serve(app), RECORDS, rate=0).start()
    time.sleep(0.3)
    assert player.stop().requests == 0
    with pytest.raises(ValueError, match="empty"):
        replay.Replayer("http://127.0.0.1:1", [])
