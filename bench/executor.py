"""Sandboxed program validation throughput: this executor beside its previous revision and two floors.

Workload: self-play-like deduction proposals (sorting, counting, string work, recursion, classes),
each fully validated: static check, fresh jailed executions on distinct zygotes, literal round
trip, output cap, value comparison. Every program text is distinct (a `# proposal i` line), as in
real self-play, so no compile or static-check cache hides work. Inputs are literals (the executor
accepts nothing else now; the old one accepted them too).

Runners, interleaved round by round in one run on the same cores (the box is shared, so ratios
taken side by side are what count; the load average is recorded beside every measurement):
- `new`: the executor in this working tree, every layer the kernel grants;
- `old`: the executor at `--compare-rev` (default BASELINE_REV, the revision before the kernel
  boundary), extracted with `git archive`;
- `fork floor`: what validation would cost if each of a program's two executions were only a bare
  `fork()` + pipe + `_exit` + `waitpid` in a stdlib process, as many in parallel as the pool has
  workers: the ceiling any fork-per-execution sandbox can reach here;
- `python -c`: one fresh interpreter per program (the two calls made in it).
As root, every runner runs as uid 10001 with no capabilities and no_new_privs (`setpriv`), the
configuration the self-play pods ship; the trees are copied where that uid can read them.
CPU per program is split into trainer / zygotes / jailed children (from /proc and rusage), which
is load-independent; `capacity` = 1000 / CPU ms is programs/s per otherwise idle core.

    python -m bench.executor [--programs 400] [--workers 4] [--rounds 3] [--baseline 40] [--profile]

`--profile` adds the per-phase cost of one jailed execution (CPU and page faults per phase).
Prints tables; writes bench/results/executor.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench import _common, _nonroot

REPO = pathlib.Path(__file__).resolve().parent.parent
BASELINE_REV = "d5122ab"  # the executor before the kernel boundary (seccomp, Landlock, verdicts outside)
SANDBOX_UID = 10001  # the self-play image's USER

PROGRAMS = [
    ("def f(xs):\n    return sorted(xs, reverse=True)", "[{i}, 3, 9, 1]"),
    ("from collections import Counter\ndef f(s):\n    return dict(Counter(s))", "'abracadabra{i}'"),
    ("def f(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a", "{i60}"),
    (
        "def f(s):\n    words = s.split()\n    return {w: len(w) for w in words}",
        "'the quick brown fox {i}'",
    ),
    ("import math\ndef f(x):\n    return [math.isqrt(x), math.gcd(x, 36), x % 7]", "{i100}"),
    (
        "class Acc:\n    def __init__(self):\n        self.t = 0\n"
        "    def add(self, v):\n        self.t += v\n"
        "def f(xs):\n    a = Acc()\n    for v in xs:\n        a.add(v * v)\n    return a.t",
        "{range50}",
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
    def fill(inputs: str, i: int) -> str:
        values = {
            "{i}": str(i),
            "{i60}": str(i % 60),
            "{i100}": str(i + 100),
            "{range50}": str(list(range(i % 50))),
        }
        for key, value in values.items():
            inputs = inputs.replace(key, value)
        return inputs

    return [
        (f"{code}\n# proposal {i}", fill(inputs, i))
        for i in range(count)
        for code, inputs in [PROGRAMS[i % len(PROGRAMS)]]
    ]


def _status_mb(pid: int, field: str = "VmHWM") -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _proc_cpu(pid: int) -> tuple[float, float]:
    """(own CPU s, reaped children's CPU s) of a zygote: its jailed children are reaped by it."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(programs: int, workers: int) -> dict[str, Any]:
    """One runner's figures; runs in a subprocess whose sys.path picks the executor revision."""
    from flywheel.selfplay import executor  # imported here: sys.path picks the revision

    items = workload(programs)
    started = time.perf_counter()
    with executor.Pool(workers=workers) as pool:
        startup = time.perf_counter() - started
        latencies = []
        for code, inputs in workload(60)[10:]:  # one at a time: latency of a single validation
            t0 = time.perf_counter()
            pool.run_program(code + "\n# latency", inputs)
            latencies.append(time.perf_counter() - t0)
        pids = pool.worker_pids
        load0, t0, trainer0 = os.getloadavg()[0], time.perf_counter(), _self_cpu()
        zygotes0 = [_proc_cpu(pid) for pid in pids]
        results = pool.run_programs(items)
        elapsed = time.perf_counter() - t0
        trainer = _self_cpu() - trainer0
        zygotes1 = [_proc_cpu(pid) for pid in pids]
        replaced = pool.replaced
        peaks = [_status_mb(pid) for pid in pids]
        isolation = {k: v for k, v in pool.isolation.items() if k not in ("uid", "sandbox_uid")}
    zygote = sum(b[0] - a[0] for a, b in zip(zygotes0, zygotes1, strict=True))
    children = sum(b[1] - a[1] for a, b in zip(zygotes0, zygotes1, strict=True))
    ms = 1000 / programs
    return {
        "module": executor.__file__,
        "programs": programs,
        "ok": sum(r.ok for r in results),
        "replaced_workers": replaced,
        "seconds": elapsed,
        "programs_per_s": programs / elapsed,
        "cpu_ms_per_program": {
            "trainer": trainer * ms,
            "zygotes": zygote * ms,
            "jailed_children": children * ms,
            "total": (trainer + zygote + children) * ms,
        },
        "latency_p50_ms": statistics.median(latencies) * 1000,
        "startup_s": startup,
        "worker_peak_rss_mb": max(peaks),
        "load_average_before_after": [load0, os.getloadavg()[0]],
        "isolation": isolation,
    }


def _old_tree(rev: str, into: pathlib.Path) -> pathlib.Path:
    """The executor package at `rev`, extracted under `into` (only the files it imports)."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", rev, *_nonroot.EXECUTOR_FILES], cwd=REPO, capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SystemExit(f"--compare-rev {rev}: git archive failed ({archive.stderr.decode().strip()})")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    _nonroot.readable(into)
    return into


class Runner:
    """Where and as whom the runners run: trees readable by the sandbox uid, its interpreter."""

    def __init__(self, scratch: pathlib.Path) -> None:
        self.python = _nonroot.interpreter(SANDBOX_UID)
        self.bench = _nonroot.copy_files(
            REPO,
            ["bench/__init__.py", "bench/_common.py", "bench/_nonroot.py", "bench/executor.py"],
            scratch / "bench",
        )

    def run(self, args: list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            _nonroot.command(SANDBOX_UID, self.python, *args),
            capture_output=True,
            text=True,
            check=False,
            cwd=cwd or tempfile.gettempdir(),
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", **(env or {})},
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[:2]} failed: {done.stderr[-2000:]}")
        return done.stdout

    def measure(self, root: pathlib.Path, programs: int, workers: int) -> dict[str, Any]:
        code = (
            f"import sys, json; sys.path[:0] = [{str(root)!r}, {str(self.bench)!r}]; "
            "from bench import executor; "
            f"print(json.dumps(executor.measure({programs}, {workers})))"
        )
        result: dict[str, Any] = json.loads(self.run(["-c", code]).strip().splitlines()[-1])
        assert result["module"].startswith(str(root)), result["module"]  # the intended revision ran
        return result


# One bare fork per execution in a stdlib process: fork, the child writes two bytes and exits, the
# parent reads them and reaps it. No jail, no program: the ceiling of any fork-per-execution sandbox.
FORK_FLOOR_SCRIPT = r"""
import os, sys
for _ in range(int(sys.argv[1])):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, b"ok")
        os._exit(0)
    os.close(w)
    while os.read(r, 64):
        pass
    os.close(r)
    os.waitpid(pid, 0)
"""


def fork_floor(runner: Runner, programs: int, workers: int) -> dict[str, Any]:
    """Programs/s if each program's two executions were bare forks, `workers` processes at once."""

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    forks = 2 * programs // workers
    load0, t0, cpu0 = os.getloadavg()[0], time.perf_counter(), children_cpu()
    with concurrent.futures.ThreadPoolExecutor(workers) as threads:
        list(threads.map(lambda _: runner.run(["-S", "-c", FORK_FLOOR_SCRIPT, str(forks)]), range(workers)))
    elapsed = time.perf_counter() - t0
    cpu = children_cpu() - cpu0
    done = forks * workers // 2
    return {
        "programs": done,
        "seconds": elapsed,
        "programs_per_s": done / elapsed,
        "cpu_ms_per_program": {"total": cpu / done * 1000},
        "load_average_before_after": [load0, os.getloadavg()[0]],
    }


# Runs as `python -s -S -P -B -c` (like a zygote) with the worker's directory on sys.path: a zygote
# built as _worker.main() builds it (every layer the kernel grants), forking children that time
# each phase of the child path (thread CPU clock and minor faults both start at 0 in a fresh
# child). The last phase is rusage minus the in-child clock: read it as exit plus accounting skew.
PROFILE_SCRIPT = r"""
import _worker as W
import gc, json, marshal, mmap, os, resource, statistics, struct, sys, tempfile, time
modules, table = W._namespace.build()
W.SAFE_MODULES.update(modules)
W.SAFE_BUILTINS.update(table)
N = int(sys.argv[1])
CODE = "from collections import Counter\ndef f(s):\n    return dict(Counter(s))"
NAMES = ["fork return in the child", "jail (fds, rlimits, pdeathsig)", "unmarshal code", "seccomp filter",
         "audit hook + gc", "program exec + call", "shape + repr", "frame"]
jail = tempfile.mkdtemp()
os.chmod(jail, 0o555)
devnull = os.open(os.devnull, os.O_RDWR)
report = W._isolate_zygote(jail, [])
blob = marshal.dumps((marshal.dumps(compile(CODE, "<program>", "exec")), ("abracadabra",), {}))
SHM = mmap.mmap(-1, 4096)  # shared with the children: marks cost no allocation or encoding there
LIMITS = W._limits({"timeout": 10, "memory_mb": 512})
ZYGOTE = os.getpid()
gc.collect()
gc.freeze()
gc.disable()

def mark(i):
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    struct.pack_into("dq", SHM, 16 * i, time.thread_time(), faults)

def child(w):
    mark(0)
    W._jail_child(report, w, devnull, LIMITS, 0, ZYGOTE); mark(1)
    code, args, kwargs = marshal.loads(blob); program = marshal.loads(code); mark(2)
    W._seal(report); mark(3)
    sys.addaudithook(W.AUDIT); gc.enable(); mark(4)
    ns = {"__builtins__": W.SAFE_BUILTINS, "__name__": "__sandbox__"}
    exec(program, ns); value = ns["f"](*args, **kwargs); mark(5)
    status, text = W._literal_result(value, 400); mark(6)
    data = W._frame(status, text); mark(7)
    os.write(3, data)
    os._exit(0)

rows = []
for i in range(N):
    r, w = os.pipe()
    gc.freeze()  # the rows kept here must not become the child's young generation
    c0, f0 = time.thread_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    pid = os.fork()
    if pid == 0:
        os.close(r); child(w)
    c1, f1 = time.thread_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    os.close(w)
    while os.read(r, 65536):
        pass
    os.close(r)
    _, _, usage = os.wait4(pid, 0)
    marks = [(0.0, 0)] + [struct.unpack_from("dq", SHM, 16 * k) for k in range(len(NAMES))]
    row = {"zygote: fork()": ((c1 - c0) * 1e3, f1 - f0)}
    for name, (t0, n0), (t1, n1) in zip(NAMES, marks, marks[1:]):
        row[name] = ((t1 - t0) * 1e3, n1 - n0)
    total = (usage.ru_utime + usage.ru_stime) * 1e3
    exit_ms = max(0.0, total - marks[-1][0] * 1e3)
    row["write result, exit, teardown"] = (exit_ms, usage.ru_minflt - marks[-1][1])
    rows.append(row)

phases = {k: {"cpu_ms": statistics.median(r[k][0] for r in rows),
              "faults": statistics.median(r[k][1] for r in rows)} for k in rows[0]}
print(json.dumps({"executions": N, "phases": phases, "isolation": report}))
"""


def profile(runner: Runner, new_root: pathlib.Path, executions: int = 300) -> dict[str, Any]:
    """Per-phase CPU and faults of one execution of the new child path (see PROFILE_SCRIPT)."""
    worker_dir = new_root / "flywheel" / "selfplay" / "executor"
    out = runner.run(
        ["-s", "-S", "-P", "-B", "-c", PROFILE_SCRIPT, str(executions)],
        cwd=str(worker_dir),
        env={"PYTHONPATH": str(worker_dir), "LD_BIND_NOW": "1"},
    )
    result: dict[str, Any] = json.loads(out)
    phases = result["phases"]
    phases["total"] = {
        "cpu_ms": sum(p["cpu_ms"] for p in phases.values()),
        "faults": sum(p["faults"] for p in phases.values()),
    }
    return result


def run_baseline(runner: Runner, items: list[tuple[str, str]], workers: int) -> dict[str, Any]:
    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def one(item: tuple[str, str]) -> bool:
        try:
            runner.run(["-c", BASELINE_SCRIPT, item[0], f"f({item[1]})"])
        except RuntimeError:
            return False
        return True

    load0, t0, cpu0 = os.getloadavg()[0], time.perf_counter(), _self_cpu() + children_cpu()
    with concurrent.futures.ThreadPoolExecutor(workers) as threads:
        oks = list(threads.map(one, items))
    elapsed = time.perf_counter() - t0
    cpu = _self_cpu() + children_cpu() - cpu0
    return {
        "programs": len(items),
        "ok": sum(oks),
        "seconds": elapsed,
        "programs_per_s": len(items) / elapsed,
        "cpu_ms_per_program": {"total": cpu / len(items) * 1000},
        "load_average_before_after": [load0, os.getloadavg()[0]],
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(get: Any) -> float:
        return float(statistics.median(get(row) for row in rows))

    cpu = med(lambda r: r["cpu_ms_per_program"]["total"])
    return {
        "rounds": rows,
        "programs_per_s_median": med(lambda r: r["programs_per_s"]),
        "cpu_ms_per_program_median": {
            part: med(lambda r, p=part: r["cpu_ms_per_program"][p]) for part in rows[0]["cpu_ms_per_program"]
        },
        "capacity_programs_per_s_per_idle_core": 1000 / cpu,
        "latency_p50_ms_median": med(lambda r: r.get("latency_p50_ms", 0.0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--programs", type=int, default=400, help="programs per runner per round")
    parser.add_argument("--workers", type=int, default=4, help="pool workers (SelfPlayRun spec default: 4)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of old and new")
    parser.add_argument("--baseline", type=int, default=40, help="programs for the python -c baseline")
    parser.add_argument("--compare-rev", default=BASELINE_REV, help="git revision of the old executor")
    parser.add_argument("--profile", action="store_true", help="also profile one execution per phase")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": [], "fork floor": []}
    with tempfile.TemporaryDirectory(prefix="flywheel-bench-executor-") as scratch_dir:
        scratch = pathlib.Path(scratch_dir)
        _nonroot.readable(scratch)
        runner = Runner(scratch)
        roots = {
            "old": _old_tree(args.compare_rev, scratch / "old"),
            "new": _nonroot.copy_files(REPO, _nonroot.EXECUTOR_FILES, scratch / "new"),
        }
        for round_ in range(args.rounds):  # alternate which goes first: load drifts within a round
            for name in ("old", "new") if round_ % 2 == 0 else ("new", "old"):
                runs[name].append(runner.measure(roots[name], args.programs, args.workers))
            runs["fork floor"].append(fork_floor(runner, args.programs, args.workers))
        baseline = run_baseline(runner, workload(args.baseline), args.workers)
        summaries = {name: _summary(rows) for name, rows in runs.items()}
        report = _report(args, summaries, baseline)
        if args.profile:
            report["profile"] = profile(runner, roots["new"])
    _print(report)
    _common.write_results(_common.RESULTS_DIR / "executor.json", report)


def _report(args: argparse.Namespace, summaries: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    new, old, floor = summaries["new"], summaries["old"], summaries["fork floor"]
    return {
        "as_uid": SANDBOX_UID if os.getuid() == 0 else os.getuid(),
        "fork_floor": floor,
        "new_over_fork_floor_wall": new["programs_per_s_median"] / floor["programs_per_s_median"],
        "command": "python -m bench.executor " + " ".join(sys.argv[1:]),
        **_common.machine(),
        "workers": args.workers,
        "compare_rev": args.compare_rev,
        "new": new,
        "old": old,
        "baseline_python_c_per_program": baseline,
        "new_over_old_wall": new["programs_per_s_median"] / old["programs_per_s_median"],
        "new_over_old_cpu": old["cpu_ms_per_program_median"]["total"]
        / new["cpu_ms_per_program_median"]["total"],
        "new_over_baseline_wall": new["programs_per_s_median"] / baseline["programs_per_s"],
        "new_over_baseline_cpu": baseline["cpu_ms_per_program"]["total"]
        / new["cpu_ms_per_program_median"]["total"],
        "load_average_end": os.getloadavg(),
    }


def _print(report: dict[str, Any]) -> None:
    print(
        f"nproc={report['nproc']} cpu={report['cpu']} workers={report['workers']} "
        f"old={report['compare_rev']} "
        f"uid={report['as_uid']}"
    )
    head = f"{'runner':<22}{'programs/s':>11}{'CPU ms/prog':>12}{'trainer':>9}{'zygotes':>9}{'children':>9}"
    print(head + f"{'cap/core':>9}{'p50 ms':>8}  load before->after per round")
    for name in ("old", "new"):
        summary, cpu = report[name], report[name]["cpu_ms_per_program_median"]
        loads = " ".join(
            f"{a:.1f}->{b:.1f}" for a, b in (r["load_average_before_after"] for r in summary["rounds"])
        )
        capacity, p50 = summary["capacity_programs_per_s_per_idle_core"], summary["latency_p50_ms_median"]
        print(
            f"{name + ' (jailed pool)':<22}{summary['programs_per_s_median']:>11.1f}{cpu['total']:>12.2f}"
            f"{cpu['trainer']:>9.2f}{cpu['zygotes']:>9.2f}{cpu['jailed_children']:>9.2f}"
            f"{capacity:>9.0f}{p50:>8.1f}  {loads}"
        )
    floor = report["fork_floor"]
    floor_cpu = floor["cpu_ms_per_program_median"]["total"]
    print(
        f"{'fork floor (2 bare forks)':<22}{floor['programs_per_s_median']:>11.1f}{floor_cpu:>12.2f}"
        f"{'':>27}{1000 / floor_cpu:>9.0f}"
    )
    base = report["baseline_python_c_per_program"]
    base_cpu = base["cpu_ms_per_program"]["total"]
    print(
        f"{'python -c per program':<22}{base['programs_per_s']:>11.1f}{base_cpu:>12.2f}"
        f"{'':>27}{1000 / base_cpu:>9.0f}"
    )
    print(
        f"new/old: {report['new_over_old_wall']:.2f}x wall, {report['new_over_old_cpu']:.2f}x CPU; "
        f"new/fork floor: {report['new_over_fork_floor_wall']:.2f}x wall; "
        f"new/python -c: {report['new_over_baseline_wall']:.1f}x wall, "
        f"{report['new_over_baseline_cpu']:.1f}x CPU; load at end {report['load_average_end'][0]:.1f}"
    )
    print("isolation (new):", report["new"]["rounds"][0]["isolation"])
    if "profile" in report:
        print("one jailed execution, per phase (median CPU ms, minor page faults):")
        for phase, row in report["profile"]["phases"].items():
            print(f"    {phase:<38}{row['cpu_ms']:>8.3f}{row['faults']:>6.0f}")


if __name__ == "__main__":
    main()
