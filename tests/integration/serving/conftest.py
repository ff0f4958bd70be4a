"""Real `bentoml serve` processes on free ports, started once per module and in parallel, serving
real trainer exports (trained.py) except where a real model adds nothing (see `servers`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from flywheel.api import contract
from flywheel.serving import config as serving_config
from flywheel.serving import traffic
from tests.integration.serving import model_fixture, trained

ADMIN_TOKEN = "test-admin-token"
REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One `bentoml serve flywheel.serving.service:FlywheelService` subprocess."""

    def __init__(self, workdir: Path, cfg: dict[str, Any]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = cfg
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config_path = workdir / "serving.json"
        config_path.write_text(json.dumps(cfg))
        env = {
            **os.environ,
            contract.ENV_SERVING_CONFIG: str(config_path),
            serving_config.ENV_ADMIN_TOKEN: ADMIN_TOKEN,
            "BENTOML_HOME": str(workdir / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "PYTHONPATH": str(REPO),
        }
        self.log_path = workdir / "server.log"
        self._terminated = False
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", *contract.serving_args("127.0.0.1", self.port)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def terminate(self) -> None:
        """Ask for a graceful shutdown (it flushes the traffic log); stop() waits for it."""
        if self.proc.poll() is None and not self._terminated:
            self._terminated = True  # once: a second SIGTERM would cut the shutdown short
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own child's process group

    def stop(self) -> None:
        self.terminate()
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()

    def sink(self) -> str:
        return str(self.config["logging"]["sink"])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Real trainer exports (trained.py: wine-a the champion, wine-b the challenger) and one
    stand-in model (model_fixture) for the request-schema server, all under one artifact store."""
    root = trained.ensure(tmp_path_factory.getbasetemp())
    artifacts = root / "artifacts"
    uris = {"root": artifacts.as_uri(), "trained": str(root)}
    for name in trained.MODELS:
        uris[name] = trained.uri(root, name)
    standin = artifacts / "standin" / "m1"
    if not (standin / "model_card.json").exists():
        model_fixture.build(standin, "v1", seed=0)
    uris["standin"] = standin.as_uri()
    return uris


def logged_rows(sink: str, request_id: str, rows: int, timeout: float = 20.0) -> pd.DataFrame:
    """The traffic log's rows of one request once at least `rows` are flushed (or what is there
    when `timeout` runs out: the caller's assertion says what was missing)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = traffic.read(sink)
        mine = frame[frame["request_id"] == request_id] if len(frame) else frame
        if len(mine) >= rows or time.monotonic() > deadline:
            return mine
        time.sleep(0.25)


def serving(models: dict[str, str], name: str, traffic: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A serving config: the real champion (wine-a) and challenger (wine-b), logged to <root>/traffic/<name>."""
    return {
        "name": name,
        "champion": {"uri": models["wine-a"], "quantized": True},
        "challenger": {"uri": models["wine-b"], "quantized": True},
        "traffic": traffic,
        # A generous latency budget: these tests check routing and swaps, not load shedding.
        "batching": {"enabled": True, "maxBatchSize": 32, "maxLatencyMs": 5000},
        "logging": {
            "enabled": True,
            "sampleRate": 1.0,
            "sink": f"{models['root']}/traffic/{name}",
            "flushRows": 200,
            "flushSeconds": 0.5,
        },
        "artifactsUri": models["root"],
        "maxRequestRows": 100,
        "maxBodyBytes": 64 * 1024,
        **extra,
    }


@pytest.fixture(scope="module")
def servers(models: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """Started side by side: a canary server (30% to the challenger) and a shadow server, both on
    real trainer exports, and a "schema" server on the stand-in model (champion only) for the
    malformed-request corpus and the admin checks: those depend only on the card's feature schema
    and the config, so a real model adds nothing there, and the stand-in's feature names (x0..x5,
    color) keep the corpus readable."""
    work = tmp_path_factory.mktemp("servers")
    schema = serving(models, "schema", {"mode": "canary"}, loader=model_fixture.LOADER)
    schema["champion"]["uri"] = models["standin"]
    del schema["challenger"]
    started = {
        "schema": Server(work / "schema", schema),
        "canary": Server(  # and BentoML's access log on (off by default, as on the others)
            work / "canary",
            serving(models, "canary", {"mode": "canary", "challengerPercent": 30}, accessLog=True),
        ),
        "shadow": Server(work / "shadow", serving(models, "shadow", {"mode": "shadow"})),
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():  # all at once: each takes seconds to shut down
            server.terminate()
        for server in started.values():
            server.stop()
