"""bench/_serving_load.py against a tiny real HTTP server (stdlib, threaded) on loopback: requests
are all sent, concurrency is reached, and every kind of failure is counted as an error."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bench import _serving_load as load


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers one prediction per record; a record {"x": "fail"} gets a 500, {"x": "short"} one
    prediction too few. Tracks how many requests are in flight at once."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the load generator's pool expects
    lock = threading.Lock()
    in_flight = 0
    peak = 0
    seen = 0

    def do_POST(self) -> None:  # the stdlib names it so
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.peak = max(cls.peak, cls.in_flight)
            cls.seen += 1
        try:
            records = json.loads(self.rfile.read(int(self.headers["content-length"])))["records"]
            time.sleep(0.005)  # some service time, so concurrent requests overlap
            marks = {r.get("x") for r in records}
            status = 500 if "fail" in marks else 200
            count = len(records) - (1 if "short" in marks else 0)
            self._reply(status, {"predictions": ["ok"] * count})
        finally:
            with cls.lock:
                cls.in_flight -= 1

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.in_flight = _Handler.peak = _Handler.seen = 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/predict"
    httpd.shutdown()
    httpd.server_close()


def test_sends_every_request_at_the_asked_concurrency(server: str) -> None:
    records = [{"x": float(i)} for i in range(10)]
    stats = load.run(server, load.PROTOCOLS["flywheel"], records, concurrency=8, requests=120, warmup=16)
    assert _Handler.seen == 136 and stats.requests == 120 and len(stats.latencies_ms) == 120
    assert stats.errors == 0 and stats.error_samples == []
    assert 2 <= _Handler.peak <= 8  # overlapping requests, never more than the clients
    assert min(stats.latencies_ms) >= 5.0  # the server's sleep is inside every latency
    assert stats.percentile(50) <= stats.percentile(99) <= max(stats.latencies_ms)
    assert 0 < stats.throughput <= 120 / (stats.seconds - 1e-9)


def test_counts_http_errors_and_wrong_answers(server: str) -> None:
    records = [{"x": 1.0}, {"x": "fail"}, {"x": 2.0}, {"x": "short"}]  # cycled one per request
    stats = load.run(server, load.PROTOCOLS["flywheel"], records, concurrency=4, requests=40, warmup=0)
    assert stats.errors == 20 and stats.requests == 40
    assert stats.throughput == pytest.approx(20 / stats.seconds)
    assert any("HTTP 500" in e for e in stats.error_samples)
    assert any("0 predictions for 1 records" in e for e in stats.error_samples)


def test_multi_record_requests_are_checked_whole(server: str) -> None:
    records = [{"x": float(i)} for i in range(5)] + [{"x": "short"}]
    stats = load.run(
        server, load.PROTOCOLS["kserve-v1"], records, concurrency=2, requests=6, warmup=0, rows=3
    )
    # kserve-v1 sends {"instances": ...}; this server reads "records", so every request fails
    assert stats.errors == 6
    stats = load.run(server, load.PROTOCOLS["flywheel"], records, concurrency=2, requests=6, warmup=0, rows=3)
    assert stats.errors == 3  # bodies cycle: rows 0-2 ok, rows 3-5 hold "short"
    assert stats.summary()["recordsPerSecond"] == pytest.approx(stats.throughput * 3, rel=0.01)


def test_a_dead_server_is_errors_not_a_crash() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        stats = load.run(
            f"http://127.0.0.1:{port}/predict",
            load.PROTOCOLS["flywheel"],
            [{"x": 1.0}],
            concurrency=3,
            requests=9,
            warmup=0,
            timeout=5,
        )
    assert stats.errors == 9 and stats.throughput == 0
    assert all("Error" in e or "refused" in e.lower() for e in stats.error_samples)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert load.percentile(values, 50) == 50.0
    assert load.percentile(values, 99) == 99.0
    assert load.percentile(values, 100) == 100.0
    assert load.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert load.percentile([], 50) != load.percentile([], 50)  # NaN
