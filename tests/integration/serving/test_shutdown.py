"""SIGTERM (what the kubelet sends) drains and flushes in bounded time, whatever the clients do."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from flywheel.serving import traffic
from tests.integration.serving import trained
from tests.integration.serving.conftest import Server, serving

pytestmark = pytest.mark.slow


def test_sigterm_with_a_stalled_client_still_exits_and_flushes_the_traffic_log(
    models: dict[str, str], tmp_path: Path
) -> None:
    cfg = serving(models, "drain", {"mode": "shadow"})
    cfg["logging"].update(flushRows=100_000, flushSeconds=3600)  # rows stay buffered until shutdown
    server = Server(tmp_path / "drain", cfg)
    stalled = idle = None
    try:
        server.wait_ready()
        records = trained.records(Path(models["trained"]), 5, seed=11)
        with httpx.Client(timeout=30) as client:
            for i, record in enumerate(records):
                resp = client.post(
                    f"{server.url}/predict", json={"records": [record]}, headers={"x-request-id": f"d-{i}"}
                )
                assert resp.status_code == 200
        assert traffic.read(server.sink()).empty  # nothing flushed yet
        # One client sent half a body and stalls; another holds an idle keep-alive connection.
        stalled = socket.create_connection(("127.0.0.1", server.port))
        stalled.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 5000\r\n\r\n{"records": ['
        )
        idle = socket.create_connection(("127.0.0.1", server.port))
        idle.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200" in idle.recv(1024)
        server.terminate()
        try:
            server.proc.wait(timeout=60)  # a pod's grace period is 30 s by default; this is a hang guard
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 60 s after SIGTERM:\n{server.log_path.read_text()[-3000:]}")
        frame = traffic.read(server.sink())
        ids = {f"d-{i}" for i in range(len(records))}
        assert ids <= set(frame["request_id"])
        assert len(frame[frame["request_id"].isin(ids)]) == 2 * len(records)  # champion + shadow rows
    finally:
        for sock in (stalled, idle):
            if sock is not None:
                sock.close()
        server.stop()
