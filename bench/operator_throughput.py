"""Operator throughput: how fast TrainingRuns turn into PyTorchJobs, Flywheel's operator beside a bare
kopf handler, side by side in one run, at 100, 250 and 500 runs.

Each trial starts a fresh Kubernetes API emulator (kmock plus the test fixture's fidelity, GC off)
in its own process and one operator process against it:

- flywheel: `python -m flywheel operator TrainingRun` (observe -> plan -> execute: three GETs, the
  ConfigMap and the PyTorchJob, a status patch, an event, then the child watch's re-reconcile);
- bare: a kopf @on.create handler that POSTs the same PyTorchJob (rendered once at start-up, only
  name, labels and owner reference filled in): no observe, no plan, no status, no ConfigMap.

Both share kopf settings (annotation storage, 16 worker threads) and the HTTP client. The driver
waits for one warm-up run's job, then POSTs N TrainingRuns (16 in flight) and timestamps each
PyTorchJob's ADDED event on its own watch stream. Reported: seconds until every job exists,
runs/s, p50/p99 of create->job latency, and the operator's peak RSS (VmHWM). Goal: flywheel
>= 80% of bare throughput, and cost linear in N.

    python -m bench.operator_throughput [--sizes 100,250,500]
    -> a table on stdout, bench/results/operator_throughput.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import pathlib
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "operator_throughput.json"
EXAMPLE = ROOT / "examples" / "trainingrun-minimal.yaml"
NS = "default"
IN_FLIGHT = 16
JOBS_PATH = "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs"
RUNS_PATH = "/apis/flywheel.dev/v1alpha1/namespaces/default/trainingruns"


def run_manifest(name: str) -> dict[str, Any]:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"] = {"name": name, "namespace": NS}
    return manifest


# --- Processes run by a trial ---------------------------------------------------------------------


def serve_emulator(port: int, kubeconfig: str) -> None:
    from tests.integration.operators import kube_emulator

    asyncio.run(kube_emulator.serve_forever(port, pathlib.Path(kubeconfig), gc=False))


def bare_operator(liveness: str) -> None:
    """kopf with one create handler that POSTs a pre-rendered PyTorchJob: the floor for any operator."""
    import kopf

    from flywheel.controllers import plans, pytorchjob, trainingrun
    from flywheel.controllers import settings as settings_mod
    from flywheel.kube import client
    from operators import _startup

    sample = run_manifest("template")
    sample["metadata"]["uid"] = "template"
    template = trainingrun.render_children(sample, settings_mod.Settings.from_env())[1]
    registry = kopf.OperatorRegistry()
    _startup.register(registry)

    @kopf.on.create("flywheel.dev", "v1alpha1", "trainingruns", registry=registry)
    def create(body: kopf.Body, **_: Any) -> None:
        job = copy.deepcopy(template)
        owner = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": dict(body["metadata"])}
        job["metadata"] = plans.child_metadata(
            owner, pytorchjob.job_name(body["metadata"]["name"]), "trainer"
        )
        with contextlib.suppress(client.ApiError):  # 409: already there
            client.request("POST", client.manifest_path(job, collection=True), job)

    kopf.run(registry=registry, standalone=True, clusterwide=True, liveness_endpoint=liveness)


# --- The driver -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def watch_jobs(session: aiohttp.ClientSession, url: str, seen: dict[str, float]) -> None:
    async with session.get(url + JOBS_PATH, params={"watch": "true"}, timeout=aiohttp.ClientTimeout()) as rsp:
        async for line in rsp.content:
            if line.strip():
                event = json.loads(line)
                name = event["object"]["metadata"]["name"]
                if event["type"] == "ADDED":
                    seen.setdefault(name, time.perf_counter())


async def wait_for(seen: dict[str, float], names: list[str], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not all(n in seen for n in names):
        if time.perf_counter() > deadline:
            missing = [n for n in names if n not in seen]
            raise TimeoutError(f"{len(missing)} PyTorchJobs never appeared, e.g. {missing[:3]}")
        await asyncio.sleep(0.01)


async def drive(url: str, n: int) -> dict[str, Any]:
    seen: dict[str, float] = {}
    sent: dict[str, float] = {}
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer kmock"}) as session:
        watcher = asyncio.create_task(watch_jobs(session, url, seen))
        async with session.post(url + RUNS_PATH, json=run_manifest("warmup")) as rsp:
            rsp.raise_for_status()
        await wait_for(seen, ["warmup"], 120)  # the operator is up and watching
        names = [f"run-{i:04d}" for i in range(n)]
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def post(name: str) -> None:
            async with slots:
                sent[name] = time.perf_counter()
                async with session.post(url + RUNS_PATH, json=run_manifest(name)) as rsp:
                    rsp.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(post(name) for name in names))
        applied = time.perf_counter() - start
        await wait_for(seen, names, 600)
        total = max(seen[name] for name in names) - start
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    latencies = sorted(seen[name] - sent[name] for name in names)
    return {
        "runs": n,
        "apply_s": round(applied, 3),
        "all_jobs_s": round(total, 3),
        "runs_per_s": round(n / total, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
    }


def trial(mode: str, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        port, kubeconfig = free_port(), pathlib.Path(tmp) / "kubeconfig"
        me = [sys.executable, "-m", "bench.operator_throughput"]
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "FLYWHEEL_METRICS_PORT": "0",
            "PYTHONPATH": str(ROOT),
        }
        log = open(pathlib.Path(tmp) / "operator.log", "w")  # noqa: SIM115 - closed below
        emulator = subprocess.Popen([*me, "_emulator", str(port), str(kubeconfig)], env=env, cwd=ROOT)
        operator = None
        try:
            while not kubeconfig.exists():
                time.sleep(0.05)
            liveness = f"http://127.0.0.1:{free_port()}/healthz"
            if mode == "flywheel":
                cmd = [sys.executable, "-m", "flywheel", "operator", "TrainingRun", "--liveness", liveness]
            else:
                cmd = [*me, "_bare", liveness]
            operator = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            result = asyncio.run(drive(f"http://127.0.0.1:{port}", n))
            result.update(mode=mode, peak_rss_mib=round(peak_rss_mib(operator.pid), 1))
            return result
        finally:
            for proc in (operator, emulator):
                if proc is not None:
                    proc.terminate()
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            log.close()


def report(results: list[dict[str, Any]]) -> dict[str, Any]:
    print(f"{'mode':<9}{'runs':>6}{'all jobs s':>12}{'runs/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'RSS MiB':>9}")
    for r in results:
        print(f"{r['mode']:<9}{r['runs']:>6}{r['all_jobs_s']:>12.2f}{r['runs_per_s']:>9.1f}"
              f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['peak_rss_mib']:>9.1f}")  # fmt: skip
    ratios = {}
    for n in sorted({r["runs"] for r in results}):
        by = {r["mode"]: r for r in results if r["runs"] == n}
        if {"bare", "flywheel"} <= set(by):
            ratios[n] = round(by["flywheel"]["runs_per_s"] / by["bare"]["runs_per_s"], 3)
    print("flywheel / bare throughput:", ", ".join(f"{n} runs: {ratio:.0%}" for n, ratio in ratios.items()))
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.operator_throughput")
    parser.add_argument("--sizes", default="100,250,500", help="comma-separated run counts")
    args, rest = parser.parse_known_args()
    if rest[:1] == ["_emulator"]:
        serve_emulator(int(rest[1]), rest[2])
        return
    if rest[:1] == ["_bare"]:
        bare_operator(rest[1])
        return
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        for mode in ("bare", "flywheel"):
            results.append(trial(mode, n))
            print(f"  {mode} x {n}: {results[-1]['all_jobs_s']:.2f} s", flush=True)
    ratios = report(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    machine = {"nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
               "python": platform.python_version()}  # fmt: skip
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                machine["cpu"] = line.split(":", 1)[1].strip()
                break
    payload = {
        "benchmark": "operator_throughput",
        "machine": machine,
        "results": results,
        "flywheel_over_bare_throughput": ratios,
        "goal": "flywheel >= 0.8 x bare; linear in N",
    }
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, RESULTS)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
