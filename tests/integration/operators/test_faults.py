"""The production operator process (`python -m flywheel operator TrainingRun`) against the API
emulator behind a fault-injecting proxy (fault_proxy): each fault converges, within a bound on
the requests the operator sent; a hung request times out; 410s on watches, in both forms, are
relisted and never take the process down; a create that keeps failing shows on the object.

Deterministic: faults hit counted requests (and a seeded generator where a rule says so); no
assertion on elapsed time: `eventually` waits generously, the bounds are on requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml

from operators import watch_410
from tests.integration.operators import conftest, kube_emulator
from tests.integration.operators import test_trainingrun_operator as tr
from tests.integration.operators.fault_proxy import FaultProxy, Rule

pytestmark = pytest.mark.timeout(120)
ROOT = pathlib.Path(__file__).parents[3]
WAIT = 60.0
"""Seconds `eventually` waits: generous, for a loaded 2-core machine; never asserted on."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def operator(
    emulator: Any, tmp_path: pathlib.Path, *rules: Rule, seed: int = 19
) -> AsyncIterator[FaultProxy]:
    """The proxy in front of the emulator (with `rules`), and the operator process behind it,
    started and watching; on exit the process must still be running (no fault may end it)."""
    # The emulator fixture's URL is in $KUBECONFIG (the test's own requests go there directly).
    url = yaml.safe_load(pathlib.Path(os.environ["KUBECONFIG"]).read_text())["clusters"][0]["cluster"][
        "server"
    ]
    async with FaultProxy(url, seed=seed) as proxy:
        for rule in rules:
            proxy.add(rule)
        kubeconfig = kube_emulator.write_kubeconfig(tmp_path / "operator-kubeconfig", proxy.url)
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PYTHONPATH": str(ROOT),
            "FLYWHEEL_METRICS_PORT": "0",
            "FLYWHEEL_KUBE_READ_TIMEOUT": "2",
            "FLYWHEEL_KUBE_CONNECT_TIMEOUT": "2",
            "FLYWHEEL_RETRY_BACKOFF": "0.2",
            "FLYWHEEL_RETRY_BACKOFF_CAP": "2",
        }
        log_path = tmp_path / "operator.log"
        cmd = [sys.executable, "-m", "flywheel", "operator", "TrainingRun",
               "--liveness", f"http://127.0.0.1:{free_port()}/healthz"]  # fmt: skip
        with log_path.open("w") as log:
            process = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        proxy.process = process
        try:
            await conftest.eventually(
                lambda: (
                    (
                        proxy.sent("GET", "/pytorchjobs", watch=True)
                        and proxy.sent("GET", "/trainingruns", watch=True)
                    )
                    or process.poll() is not None
                ),
                timeout=WAIT,
                what="the operator's watches",
            )
            yield proxy
            assert process.poll() is None, f"the operator exited ({process.returncode})"
        except BaseException:
            print(log_path.read_text()[-6000:])
            raise
        finally:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                process.kill()


async def until(proxy: FaultProxy, check: Any, what: str = "") -> None:
    """conftest.eventually, failing at once when the operator process has exited."""

    def checked() -> Any:
        code = proxy.process.poll()
        assert code is None, f"the operator exited ({code}) while waiting for {what}"
        return check()

    await conftest.eventually(checked, timeout=WAIT, what=what)


def events(em: Any, reason: str) -> list[dict[str, Any]]:
    return [e for e in em.live("v1/events", tr.NS) if e["reason"] == reason]


def sent_about_run(proxy: FaultProxy) -> list[Any]:
    """Requests the operator sent about the run `iris` and its children (no lists, no watches)."""
    return [s for s in proxy.log if "iris" in s.path and "watch=" not in s.path]


async def test_errors_before_and_after_the_write_and_a_lost_answer_converge(
    emulator: Any, tmp_path: pathlib.Path
) -> None:
    rules = (
        Rule("before", "POST", "/pytorchjobs", times=2),  # not written
        Rule("after", "POST", "/configmaps", times=1),  # written, answered 500
        Rule("lose", "PATCH", r"/trainingruns/iris/status", times=1),  # written, no answer
        Rule("delay", "POST", "/events", times=1, seconds=0.5),  # slow, well within the timeout
    )
    async with operator(emulator, tmp_path, *rules) as proxy:
        await tr.create(tr.run_manifest())
        await until(proxy, lambda: tr.ready(emulator).get("reason") == "JobCreated")
        await asyncio.sleep(0.5)
    assert [r.hits for r in rules] == [2, 1, 1, 1]
    assert len(emulator.live(tr.JOBS, tr.NS)) == 1 and len(emulator.live(tr.CONFIGMAPS, tr.NS)) == 1
    # 5 requests for a new run without faults; each of the 4 faults costs one retried reconcile
    # of a few requests, so about 25: bounded at twice that.
    print(f"faults before/after/lost: {len(sent_about_run(proxy))} requests about the run")
    assert len(sent_about_run(proxy)) <= 50, [(s.method, s.path) for s in sent_about_run(proxy)]


async def test_a_hung_request_times_out_and_the_run_converges(emulator: Any, tmp_path: pathlib.Path) -> None:
    hang = Rule("hang", "POST", "/pytorchjobs", times=1)
    async with operator(emulator, tmp_path, hang) as proxy:
        await tr.create(tr.run_manifest())
        await until(proxy, lambda: tr.ready(emulator).get("reason") == "JobCreated")
        await until(proxy, lambda: proxy.abandoned == 1, "the client gave up")
    assert hang.hits == 1 and len(emulator.live(tr.JOBS, tr.NS)) == 1
    print(f"hung POST: {len(sent_about_run(proxy))} requests about the run")
    assert len(sent_about_run(proxy)) <= 30


async def test_410_on_watch_requests_and_as_watch_events_relist_and_the_process_lives(
    emulator: Any, tmp_path: pathlib.Path
) -> None:
    rules = (
        Rule("gone", "GET", "/trainingruns", watch=True, times=2),  # kopf's own watch: exited before
        Rule("gone-event", "GET", "/trainingruns", watch=True, times=1),
        Rule("error-event", "GET", "/trainingruns", watch=True, times=1),  # kopf: WatchingError, exit
        Rule("gone", "GET", "/trainingruns", watch=False, times=1, skip=1),  # a list's continue expired
        Rule("gone", "GET", "/pytorchjobs", watch=True, times=1),  # the child watch
        Rule("gone-event", "GET", "/pytorchjobs", watch=True, times=1),
        Rule("error-event", "GET", "/pytorchjobs", watch=True, times=1),
    )
    assert watch_410._ORIGINAL.__name__ == "continuous_watch"  # kopf still has what we wrap
    async with operator(emulator, tmp_path, *rules) as proxy:
        await until(proxy, lambda: all(r.times == 0 for r in rules), "every 410 sent")
        await tr.create(tr.run_manifest())
        await until(proxy, lambda: tr.ready(emulator).get("reason") == "JobCreated")
        # The job's change reaches the run only through the child watch, which relisted twice.
        await tr.patch_status("kubeflow.org/v1", "PyTorchJob", "iris", tr.job_condition("Running"))
        await until(proxy, lambda: tr.run_status(emulator).get("phase") == "Running")
        lists = proxy.sent("GET", "/pytorchjobs", watch=False)
        runs_lists = proxy.sent("GET", "/trainingruns", watch=False)
    print(f"410s: {len(lists)} lists of jobs, {len(runs_lists)} lists of runs")
    assert len(lists) >= 4 and len(runs_lists) >= 5  # the first list, one per fault
    assert len(lists) <= 12 and len(runs_lists) <= 12  # and no relist storm


async def test_a_429_burst_converges_with_requests_bounded(emulator: Any, tmp_path: pathlib.Path) -> None:
    burst = Rule("throttle", None, r"/(trainingruns|pytorchjobs|configmaps|events)", watch=False, times=40)
    names = [f"run-{i}" for i in range(8)]
    async with operator(emulator, tmp_path) as proxy:
        proxy.add(burst)
        for name in names:
            await tr.create(tr.run_manifest(name))
        for name in names:
            await until(proxy, lambda n=name: tr.ready(emulator, n).get("reason") == "JobCreated")
        await asyncio.sleep(0.5)
    assert burst.hits == 40 and len(emulator.live(tr.JOBS, tr.NS)) == len(names)
    about_runs = [s for s in proxy.log if "run-" in s.path and "watch=" not in s.path]
    # 5 per run unthrottled (40); each 429 costs its reconcile's retry. Bounded, not a storm.
    print(f"429 x40: {len(about_runs)} requests about {len(names)} runs")
    assert len(about_runs) <= 40 + 40 * 3, len(about_runs)


async def test_a_create_that_keeps_failing_shows_on_the_object_once_and_clears(
    emulator: Any, tmp_path: pathlib.Path
) -> None:
    refused = Rule("before", "POST", "/pytorchjobs", status=403, times=-1)
    async with operator(emulator, tmp_path, refused) as proxy:
        await tr.create(tr.run_manifest())
        await until(proxy, lambda: tr.ready(emulator).get("reason") == "ReconcileError")
        await until(proxy, lambda: refused.hits >= 5, "five failed attempts")
        ready = tr.ready(emulator)
        assert ready["status"] == "False" and "403" in ready["message"] and "injected 403" in ready["message"]
        warnings = events(emulator, "ReconcileError")
        assert len(warnings) == 1 and warnings[0]["type"] == "Warning"  # one per distinct error
        # No kopf bookkeeping per retry: at most its one annotation patch of the run.
        assert len(proxy.sent("PATCH", r"/trainingruns/iris$")) <= 1
        print(f"403 forever: {len(sent_about_run(proxy))} requests about the run in {refused.hits} attempts")
        refused.times = 0  # the API accepts again: the next retry converges and clears the error
        await until(proxy, lambda: tr.ready(emulator).get("reason") == "JobCreated")
    assert len(emulator.live(tr.JOBS, tr.NS)) == 1
