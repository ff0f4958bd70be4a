"""Operator under a 429 storm: N new TrainingRuns while the API server throttles every request
of the operator for a window, then recovers. What it sent, and how long after the window every
run had its job.

The production operator (`python -m flywheel operator TrainingRun`, its default settings) runs in
its own process against the API emulator behind the fault proxy of the test suite
(tests/integration/operators/fault_proxy.py); the driver creates the runs on the emulator directly,
so only the operator is throttled. `--operator-root DIR` runs the operator from another source
tree (an older revision, extracted with `git archive REV | tar -x -C DIR`) against the same
emulator, proxy and driver: before/after figures on one machine in one session.

    python -m bench.operator_faults [--runs 200] [--window 20] [--operator-root DIR]
    -> a table on stdout, bench/results/operator_faults.json

Reported: requests the operator sent during the window and from its end until the last job
(lists and watches left out), seconds from the window's end to the last job, and the requests
per run over the whole trial. The issue that asked for this (19) measured, before: 200 runs under
429 for 35 s, 5,796 requests, in waves of 200 every 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import kmock
import yaml

from bench import _common

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "trainingrun-minimal.yaml"
NS = "default"
JOBS = "kubeflow.org/v1/pytorchjobs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def manifest(name: str) -> dict[str, Any]:
    out: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    out["metadata"] = {"name": name, "namespace": NS}
    return out


async def until(check: Any, timeout: float, what: str) -> float:
    """Poll until `check()`; returns when (perf_counter) it held."""
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no {what} after {timeout}s")
        await asyncio.sleep(0.05)
    return time.perf_counter()


def objects_sent(log: list[Any]) -> int:
    return sum(1 for s in log if "watch=" not in s.path and "/namespaces/" in s.path)


def by_verb(log: list[Any]) -> dict[str, int]:
    """Requests about objects as "METHOD plural[/status]" (kopf's annotation patch is "PATCH
    trainingruns"), most frequent first."""
    counts: dict[str, int] = {}
    for sent in log:
        if "watch=" in sent.path or "/namespaces/" not in sent.path:
            continue
        parts = sent.path.split("?", 1)[0].split("/namespaces/", 1)[1].split("/")
        what = f"{sent.method} {parts[1]}" + (f"/{parts[3]}" if len(parts) > 3 else "")
        counts[what] = counts.get(what, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


async def trial(runs: int, window: float, operator_root: pathlib.Path, tmp: pathlib.Path) -> dict[str, Any]:
    from tests.integration.operators import kube_emulator
    from tests.integration.operators.fault_proxy import FaultProxy, Rule

    async with kube_emulator.Emulator(gc=False) as emulator, kmock.Server(emulator) as server:
        url = str(server.url).rstrip("/")
        async with FaultProxy(url, seed=19) as proxy:
            kubeconfig = kube_emulator.write_kubeconfig(tmp / "kubeconfig", proxy.url)
            env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(operator_root),
                   "FLYWHEEL_METRICS_PORT": "0"}  # fmt: skip
            cmd = [sys.executable, "-m", "flywheel", "operator", "TrainingRun",
                   "--liveness", f"http://127.0.0.1:{free_port()}/healthz"]  # fmt: skip
            with (tmp / "operator.log").open("w") as log:
                operator = subprocess.Popen(
                    cmd, env=env, cwd=operator_root, stdout=log, stderr=subprocess.STDOUT
                )
            try:
                post = emulator_client(url)
                await post(manifest("warmup"))
                await until(lambda: emulator.live(JOBS, NS), 120, "warm-up job")
                await asyncio.sleep(1.0)
                storm = proxy.add(Rule("throttle", None, "/namespaces/", watch=False, times=-1))
                before = objects_sent(proxy.log)
                start = len(proxy.log)
                started = time.perf_counter()
                for i in range(runs):
                    await post(manifest(f"run-{i:04d}"))
                await asyncio.sleep(max(0.0, window - (time.perf_counter() - started)))
                storm.times = 0
                during = objects_sent(proxy.log) - before
                mark = len(proxy.log)
                ended = time.perf_counter()
                done = await until(lambda: len(emulator.live(JOBS, NS)) >= runs + 1, 600, "job for every run")
                total = objects_sent(proxy.log) - before
            finally:
                operator.terminate()
                try:
                    await asyncio.to_thread(operator.wait, 15)
                except subprocess.TimeoutExpired:
                    operator.kill()
    return {
        "runs": runs,
        "window_s": window,
        "throttled": storm.hits,
        "sent_during_window": during,
        "sent_after_window": total - during,
        "converged_after_window_s": round(done - ended, 1),
        "requests_per_run": round(total / runs, 1),
        "window_by_verb": by_verb(proxy.log[start:mark]),
        "after_by_verb": by_verb(proxy.log[mark:]),
    }


def emulator_client(url: str) -> Any:
    import aiohttp

    async def post(body: dict[str, Any]) -> None:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer kmock"}) as session:
            path = f"{url}/apis/flywheel.dev/v1alpha1/namespaces/{NS}/trainingruns"
            async with session.post(path, json=body) as answer:
                answer.raise_for_status()

    return post


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="TrainingRuns created during the storm")
    parser.add_argument(
        "--window", type=float, default=20.0, help="seconds of 429 for every operator request"
    )
    parser.add_argument(
        "--operator-root", type=pathlib.Path, default=ROOT, help="source tree of the operator"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(trial(args.runs, args.window, args.operator_root.resolve(), pathlib.Path(tmp)))
    result["operator_root"] = str(args.operator_root)
    for key, value in result.items():
        print(f"{key:>26}: {value}")
    _common.write_results(
        _common.RESULTS_DIR / "operator_faults.json", {"machine": _common.machine(), **result}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
