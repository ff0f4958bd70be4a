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
import looptime
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
async def running(registry: kopf.OperatorRegistry, *, fake_time: bool = False) -> AsyncIterator[None]:
    """Run a kopf operator until the block ends, then stop it as SIGTERM would.

    It runs in its own thread and event loop, as in production: on exit kopf waits for tasks
    spawned in its loop, and the emulator's connection tasks must not count as kopf's.
    Namespace scanning is off: kopf would list /api/v1/namespaces, which kmock 0.8 cannot parse.

    `fake_time`: the operator's loop is a looptime loop: whenever it has nothing to do but wait
    (no I/O ready, no reconcile running in a worker thread), its clock jumps to the next timer.
    Requeues and retry backoffs (loop.call_later in operators.reconcile) then fire at once at
    their real values (30 s, 300 s, 60 s backoff caps), instead of tests patching those module
    constants down to fractions of a second. Reconciles, HTTP and the emulator run in real time;
    kopf's own request timeouts are off (a jump of its clock while a request is on the wire would
    time it out).
    """
    ready = threading.Event()
    # The stop flag is a future of the operator's own loop, set from here thread-safely: kopf
    # waits for a threading.Event in an executor thread, which a looptime loop counts as outside
    # work still running, and then keeps real time.
    stops: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0.1
    settings.scanning.disabled = True
    errors: list[BaseException] = []

    async def operate() -> None:
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stops.append((asyncio.get_running_loop(), stop))
        await kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            namespaces=[NAMESPACE],
            stop_flag=stop,
            ready_flag=ready,
        )

    if fake_time:

        @kopf.on.startup(registry=registry, id="test-fake-time")
        async def no_request_timeouts(settings: kopf.OperatorSettings, **_: Any) -> None:
            # after operators._startup's handler (registered first), which sets real timeouts
            settings.networking.request_timeout = settings.networking.connect_timeout = None

    def main() -> None:
        try:
            with asyncio.Runner(loop_factory=looptime.new_event_loop if fake_time else None) as runner:
                runner.run(operate())
        except BaseException as exc:  # surfaced in the test
            errors.append(exc)
            ready.set()

    def finish(stop: asyncio.Future[None]) -> None:
        if not stop.done():
            stop.set_result(None)

    def stop_all() -> None:
        for loop, stop in stops:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(finish, stop)

    thread = threading.Thread(target=main, name="kopf-operator", daemon=True)
    thread.start()
    await asyncio.to_thread(ready.wait, 10)
    try:
        yield
    finally:
        stop_all()
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
