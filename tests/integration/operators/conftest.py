"""Fixtures: the Kubernetes API emulator over real HTTP, and a kopf operator running against it."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kmock
import kopf
import pytest

from flywheel.kube import client
from tests.integration.operators import kube_emulator

NAMESPACE = "default"


@pytest.fixture
async def emulator(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """The emulator on a loopback port, and KUBECONFIG pointing at it (kopf and flywheel.kube)."""
    async with kube_emulator.Emulator() as em, kmock.Server(em) as server:
        config = kube_emulator.write_kubeconfig(tmp_path / "kubeconfig", str(server.url).rstrip("/"))
        monkeypatch.setenv("KUBECONFIG", str(config))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        client.connect()
        yield em
        client.disconnect()


@contextlib.asynccontextmanager
async def running(registry: kopf.OperatorRegistry) -> AsyncIterator[None]:
    """Run a kopf operator until the block ends, then stop it as SIGTERM would.

    It runs in its own thread and event loop, as in production: on exit kopf waits for tasks
    spawned in its loop, and the emulator's connection tasks must not count as kopf's.
    Namespace scanning is off: kopf would list /api/v1/namespaces, which kmock 0.8 cannot parse.
    """
    stop, ready = threading.Event(), threading.Event()
    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0.1
    settings.scanning.disabled = True
    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=registry,
                    settings=settings,
                    standalone=True,
                    namespaces=[NAMESPACE],
                    stop_flag=stop,
                    ready_flag=ready,
                )
            )
        except BaseException as exc:  # surfaced in the test
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=main, name="kopf-operator", daemon=True)
    thread.start()
    await asyncio.to_thread(ready.wait, 10)
    try:
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 15)
    assert not thread.is_alive(), "the operator did not stop"
    assert not errors, errors


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll `check` until it returns something truthy (the operator works asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.05)
