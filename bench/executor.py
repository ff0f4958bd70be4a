"""Sandboxed program validation throughput: the jailed pool beside a naive subprocess-per-program run.

Workload: self-play-like deduction proposals (sorting, counting, string work, recursion, classes),
each fully validated: static check, two fresh executions on two workers, literal round-trip,
output cap, value comparison. Baseline, in the same run on the same cores: one `python -c`
subprocess per program (the obvious safe-ish approach: a fresh interpreter per program, the two
calls made in it), with as many programs in flight as the pool has workers.

    python -m bench.executor [--programs 600] [--baseline 60] [--workers 2]

Prints a table and writes bench/results/executor.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from flywheel.selfplay import executor

PROGRAMS = [
    ("def f(xs):\n    return sorted(xs, reverse=True)", "[{i}, 3, 9, 1]"),
    ("from collections import Counter\ndef f(s):\n    return dict(Counter(s))", "'abracadabra{i}'"),
    ("def f(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a", "{i} % 60"),
    (
        "def f(s):\n    words = s.split()\n    return {w: len(w) for w in words}",
        "'the quick brown fox {i}'",
    ),
    ("import math\ndef f(x):\n    return [math.isqrt(x), math.gcd(x, 36), x % 7]", "{i} + 100"),
    (
        "class Acc:\n    def __init__(self):\n        self.t = 0\n"
        "    def add(self, v):\n        self.t += v\n"
        "def f(xs):\n    a = Acc()\n    for v in xs:\n        a.add(v * v)\n    return a.t",
        "list(range({i} % 50))",
    ),
    ("def f(s):\n    return s[::-1].upper() + str(len(s))", "'level{i}'"),
    (
        "def f(n):\n    def rec(k):\n        return 1 if k <= 1 else k * rec(k - 1)\n    return rec(n % 20)",
        "{i}",
    ),
    ("import itertools\ndef f(xs):\n    return list(itertools.accumulate(xs))", "[1, 2, {i}]"),
    ("def f(m):\n    return [list(r) for r in zip(*m)]", "[[1, 2], [3, {i}]]"),
]

BASELINE_SCRIPT = """
import ast, sys
ns = {}
exec(sys.argv[1], ns)
first = eval(sys.argv[2], ns)
second = eval(sys.argv[2], ns)
assert first == second, 'Non-deterministic code'
text = repr(first)
assert len(text) <= 400 and ast.literal_eval(text) == first
print(text)
"""


def workload(count: int) -> list[tuple[str, str]]:
    return [
        (code, inputs.replace("{i}", str(i))) for i in range(count) for code, inputs in [PROGRAMS[i % 10]]
    ]


def _rss_mb(pid: int, field: str = "VmHWM") -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    """utime + stime of a process and its reaped children (the zygote's jailed children)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _self_cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_pool(items: list[tuple[str, str]], workers: int) -> dict[str, Any]:
    started = time.perf_counter()
    with executor.Pool(workers=workers) as pool:
        startup = time.perf_counter() - started
        latencies = []
        for code, inputs in items[:50]:  # one at a time: latency of a single validation
            t0 = time.perf_counter()
            pool.run_program(code, inputs)
            latencies.append(time.perf_counter() - t0)
        t0, cpu0 = time.perf_counter(), _self_cpu_s(resource.RUSAGE_SELF) + sum(map(_cpu_s, pool.worker_pids))
        results = pool.run_programs(items)
        elapsed = time.perf_counter() - t0
        cpu = _self_cpu_s(resource.RUSAGE_SELF) + sum(map(_cpu_s, pool.worker_pids)) - cpu0
        worker_peak = [_rss_mb(pid) for pid in pool.worker_pids]
        isolation = pool.isolation
    bad = [r for r in results if not r.ok]
    return {
        "programs": len(items),
        "ok": len(results) - len(bad),
        "seconds": elapsed,
        "programs_per_s": len(items) / elapsed,
        "cpu_ms_per_program": cpu / len(items) * 1000,
        "latency_p50_ms": statistics.median(latencies) * 1000,
        "startup_s": startup,
        "worker_peak_rss_mb": worker_peak,
        "isolation": isolation,
    }


def _baseline_one(code: str, inputs: str) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", BASELINE_SCRIPT, code, f"f({inputs})"],
        capture_output=True,
        timeout=10,
        check=False,
        cwd="/tmp",
    )
    return done.returncode == 0


def run_baseline(items: list[tuple[str, str]], workers: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    cpu0 = _self_cpu_s(resource.RUSAGE_SELF) + _self_cpu_s(resource.RUSAGE_CHILDREN)
    with concurrent.futures.ThreadPoolExecutor(workers) as threads:
        oks = list(threads.map(lambda item: _baseline_one(*item), items))
    elapsed = time.perf_counter() - t0
    cpu = _self_cpu_s(resource.RUSAGE_SELF) + _self_cpu_s(resource.RUSAGE_CHILDREN) - cpu0
    return {
        "cpu_ms_per_program": cpu / len(items) * 1000,
        "programs": len(items),
        "ok": sum(oks),
        "seconds": elapsed,
        "programs_per_s": len(items) / elapsed,
    }


def workers_capacity(workers: int, pooled: dict[str, Any]) -> float:
    """Programs/s the measured CPU cost allows on `workers` otherwise idle cores (the box is shared)."""
    return workers * 1000 / pooled["cpu_ms_per_program"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=600)
    parser.add_argument("--baseline", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    items = workload(args.programs)
    baseline = run_baseline(workload(args.baseline), args.workers)
    pooled = run_pool(items, args.workers)
    parent_peak = _rss_mb(os.getpid())
    ratio = pooled["programs_per_s"] / baseline["programs_per_s"]
    cpu_ratio = baseline["cpu_ms_per_program"] / pooled["cpu_ms_per_program"]
    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), "?")
    report = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "workers": args.workers,
        "pool": pooled,
        "baseline_subprocess_per_program": baseline,
        "speedup": ratio,
        "cpu_speedup": cpu_ratio,
        "idle_capacity_programs_per_s": workers_capacity(args.workers, pooled),
        "parent_peak_rss_mb": parent_peak,
        "load_average": os.getloadavg(),
    }
    print(f"nproc={report['nproc']} cpu={cpu} load={report['load_average'][0]:.1f} workers={args.workers}")
    print(f"{'runner':<40}{'programs':>10}{'ok':>6}{'seconds':>10}{'programs/s':>12}")
    for name, row in [("jailed pool (2 runs/program)", pooled), ("python -c per program", baseline)]:
        print(
            f"{name:<40}{row['programs']:>10}{row['ok']:>6}{row['seconds']:>10.2f}{row['programs_per_s']:>12.1f}"
        )
    print(
        f"speedup {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU per program; "
        f"single validation p50 {pooled['latency_p50_ms']:.1f} ms"
    )
    zygotes = ", ".join(f"{mb:.1f}" for mb in pooled["worker_peak_rss_mb"])
    startup = pooled["startup_s"]
    print(f"pool startup {startup:.2f} s; peak RSS zygotes [{zygotes}] MB, parent {parent_peak:.0f} MB")
    print("isolation:", {k: v for k, v in pooled["isolation"].items() if k != "uid"})
    out = pathlib.Path(__file__).resolve().parent / "results" / "executor.json"
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
