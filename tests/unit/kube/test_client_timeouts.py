"""flywheel.kube.client against a loopback socket that accepts and never answers (a hung API
server), and one that refuses: every call ends within its timeouts as a retryable Unavailable,
counted by the on_unavailable hook."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import kubernetes.client
import pytest

from flywheel.kube import client, throttle

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def hung_server() -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # read nothing, answer nothing
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def connect(host: str, read_timeout: float) -> None:
    client.connect(kubernetes.client.Configuration(host=host))
    client.configure(throttle.Limits(connect_timeout=1.0, read_timeout=read_timeout, qps=0))


def test_a_hung_request_times_out_as_a_retryable_error(hung_server: str) -> None:
    seen: list[tuple[str, str]] = []
    client.on_unavailable.append(lambda method, reason: seen.append((method, reason)))
    try:
        connect(hung_server, read_timeout=0.3)
        for method in ("GET", "PATCH", "POST"):  # no urllib3 retry of the idempotent ones
            started = time.monotonic()
            with pytest.raises(client.Unavailable) as caught:
                client.request(
                    method, "/api/v1/namespaces/default/pods/p", body={} if method != "GET" else None
                )
            assert time.monotonic() - started < 10  # the bound is 0.3 s; the slack is for a loaded machine
            assert caught.value.retryable and caught.value.reason == "Timeout"
            assert "no answer within 0.3s" in caught.value.message
    finally:
        client.on_unavailable.clear()
        client.disconnect()
    assert seen == [("GET", "Timeout"), ("PATCH", "Timeout"), ("POST", "Timeout")]


def test_a_refused_connection_is_unavailable_too() -> None:
    with socket.create_server(("127.0.0.1", 0)) as spare:
        port = spare.getsockname()[1]  # closed again below: nothing listens there
    connect(f"http://127.0.0.1:{port}", read_timeout=1.0)
    try:
        with pytest.raises(client.Unavailable) as caught:
            client.request("GET", "/api/v1/namespaces/default/pods/p")
        assert caught.value.reason == "ConnectionError" and caught.value.status == 503
    finally:
        client.disconnect()


def test_every_request_takes_a_token_from_the_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[int] = []

    class Counting(throttle.TokenBucket):
        def acquire(self) -> float:
            taken.append(1)
            return 0.0

    with socket.create_server(("127.0.0.1", 0)) as spare:
        port = spare.getsockname()[1]
    connect(f"http://127.0.0.1:{port}", read_timeout=1.0)
    monkeypatch.setattr(client._State, "bucket", Counting(qps=1, burst=1))
    try:
        for _ in range(3):
            with pytest.raises(client.Unavailable):
                client.request("GET", "/api/v1/namespaces/default/pods/p")
    finally:
        client.disconnect()
    assert len(taken) == 3
