"""A pool of sandbox zygotes that validates and checks self-play programs.

Problem: Absolute-Zero rewards come from running model-written code (the reference does it in the
trainer's own process, with no limits). Each `Pool` worker is a tiny `python -s -S -P -B _worker.py`
process started with `subprocess` (clean environment, no inherited descriptors, no torch, no flywheel
import), which forks one jailed child per execution; see `_worker.py` for the jail. Why not
multiprocessing: a forkserver is a child of the trainer's interpreter (its `sys.path`, pickled
callables, authkey), while this worker holds nothing but the standard library and speaks a 30-line
pipe protocol; the measured cost is the same (one fork per execution), see bench/executor.py.

The parent enforces the wall clock on each request; a worker that hangs, dies or answers garbage is
killed and replaced, and the call reports `crashed` instead of raising. Every verdict is decided
here, in the trainer: a child returns the repr of its value, which is capped and parsed as a
literal here and compared here; expected outputs never enter the sandbox. The pool refuses to start
unless the kernel applied the seccomp filter (`_kernel`), except where the caller opts out.

Determinism: each zygote has its own hash seed (and, as its own process, its own address layout),
and the runs of one program go to distinct zygotes. Output that depends on hash values or set
iteration order differs between two seeds only with some probability (1/2 for a two-element set of
strings), so a program that hashes or builds sets runs under HASH_SEEDS seeds instead of two.

Where the time goes (bench/executor.py --profile): a jailed execution is a fork, and after a fork
every page the child writes is a copy-on-write fault. So the trainer does the work that would
otherwise run in each fork: it compiles each program once (cached by source; both fresh runs and
every induction pair reuse it) and ships the code objects as `marshal` to the zygote, and it checks
the output literal's round trip itself. Compiling here is safe: every source has already been
parsed by `checks` (whose parse bounds nesting depth), and compiling runs no program code.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import itertools
import json
import marshal
import os
import queue
import secrets
import selectors
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from flywheel.selfplay.executor import checks

Kind = Literal[
    "ok", "rejected", "error", "timeout", "nondeterministic", "output_too_long", "not_literal", "crashed"
]
WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")
STARTUP_TIMEOUT_S = 30.0
MAX_FRAME_BYTES = 8 * 1024 * 1024
MAX_ERROR_CHARS = 300
MAX_BLOB_BYTES = 1 << 20  # the zygote's job buffer (_worker.JOB_BYTES)
MAX_CAP = 50_000  # the most repr characters a child may send (_worker.MAX_CHARS)
CHUNK = 16  # at most this many proposals per worker request in run_programs (see _chunk_size)
HASH_SEEDS = 6  # distinct hash seeds (zygotes) a seed-sensitive program runs under; also the least zygotes
LAYERS = ("namespaces", "chroot", "setuid", "landlock", "seccomp")  # what `disable` may name
UNCONFINED_ENV = "FLYWHEEL_SANDBOX_UNCONFINED"


_KINDS: dict[bytes, Callable[[bytes, int], dict[str, Any]]] = {
    b"D": lambda payload, code: {"status": "done", "frame": payload, "code": code},
    b"T": lambda payload, code: {
        "status": "timeout",
        "error": payload.decode(errors="replace")[:MAX_ERROR_CHARS],
    },
    b"X": lambda payload, code: {
        "status": "crashed",
        "error": payload.decode(errors="replace")[:MAX_ERROR_CHARS],
    },
}
STATUSES = ("ok", "error", "not_literal", "output_too_long")  # what a child's frame may say


class SandboxUnavailable(RuntimeError):
    """The kernel did not apply a layer the pool requires (the seccomp filter)."""


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """Verdict on one program run: `output_repr` is a capped literal repr when `ok`."""

    ok: bool
    output_repr: str | None
    error: str | None
    kind: Kind


def _failed(kind: Kind, error: str) -> ExecResult:
    return ExecResult(ok=False, output_repr=None, error=error[:MAX_ERROR_CHARS], kind=kind)


class _Worker:
    """One zygote process and its pipe; every method runs under the pool's exclusive checkout."""

    def __init__(self, jail: str, seed: int, disable: Sequence[str]) -> None:
        self.seed = seed
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in kill())
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-s", "-S", "-P", "-B", WORKER_SCRIPT, jail, *disable],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.log,
                cwd=jail,
                # Its own hash seed per zygote (see the module docstring). LD_BIND_NOW: the dynamic
                # linker resolves every symbol once, in the zygote, instead of in each fork on first
                # call. The zygote drops it from its environment at start.
                env={"PYTHONHASHSEED": str(seed), "LC_ALL": "C.UTF-8", "LD_BIND_NOW": "1"},
                close_fds=True,
            )
        except BaseException:
            self.log.close()
            raise
        self.buffer = b""
        self.outgoing = memoryview(b"")
        self.request_id, self.done = 0, False
        self.results: list[dict[str, Any] | None] = []

    def hello(self) -> dict[str, Any]:
        message = self._read_frame(time.monotonic() + STARTUP_TIMEOUT_S)
        if message is None or not isinstance(message.get("hello"), dict):
            self.kill()
            self.log.seek(0)
            tail = self.log.read()[-800:].decode(errors="replace")
            raise RuntimeError(f"sandbox worker failed to start: {tail or 'no output'}")
        return dict(message["hello"])

    def send(self, request_id: int, jobs: list[dict[str, Any]], opts: dict[str, Any]) -> bool:
        """Queue a request: a header of sizes and options, then each job's code. Written by `pump`."""
        header = marshal.dumps(  # the zygote reads only what the trainer writes: trusted
            {
                "id": request_id,
                "opts": opts,
                "jobs": [(len(j["blob"]), j["max_chars"], j["audit_hook"]) for j in jobs],
            }
        )
        self.outgoing = memoryview(
            b"".join([struct.pack(">I", len(header)), header, *(j["blob"] for j in jobs)])
        )
        self.request_id, self.results = request_id, [None for _ in jobs]
        self.done = False
        assert self.proc.stdin is not None
        try:
            os.set_blocking(self.proc.stdin.fileno(), False)
        except (OSError, ValueError):  # ValueError: a dead worker whose restart failed (closed pipe)
            return False
        return self.proc.poll() is None

    def write_some(self) -> bool:
        """Write what the pipe takes now; False if the zygote is gone."""
        assert self.proc.stdin is not None
        try:
            written = os.write(self.proc.stdin.fileno(), self.outgoing[: 1 << 16])
        except BlockingIOError:
            return True
        except OSError:
            return False
        self.outgoing = self.outgoing[written:]
        return True

    def read_some(self) -> bool:
        """Read and take in the zygote's result messages; False if it died or answered garbage."""
        assert self.proc.stdout is not None
        chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
        if not chunk:
            return False
        self.buffer += chunk
        while len(self.buffer) >= 4:
            (size,) = struct.unpack(">I", self.buffer[:4])
            if size < 9 or size > MAX_FRAME_BYTES:
                return False
            if len(self.buffer) < 4 + size:
                break
            body, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
            kind, index, code = struct.unpack(">cIi", body[:9])
            if kind == b"E":
                if index != self.request_id or None in self.results:
                    return False
                self.done = True
            elif kind in _KINDS and index < len(self.results) and self.results[index] is None:
                self.results[index] = _KINDS[kind](body[9:], code)
            else:
                return False
        return True

    def _read_frame(self, deadline: float) -> dict[str, Any] | None:
        """The zygote's one JSON message (its hello, before any request)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                if len(self.buffer) >= 4:
                    (size,) = struct.unpack(">I", self.buffer[:4])
                    if size > MAX_FRAME_BYTES:
                        return None
                    if len(self.buffer) >= 4 + size:
                        frame, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
                        try:
                            message = json.loads(frame)
                        except ValueError:
                            return None
                        return message if isinstance(message, dict) else None
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    return None
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return None
                self.buffer += chunk

    def kill(self) -> None:
        # SIGKILL to our own child by pid; its jailed children die with it (PR_SET_PDEATHSIG).
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                # A send that failed on a dead worker leaves its bytes buffered; close() flushes them
                # again and raises BrokenPipeError, although it still closes the descriptor.
                with contextlib.suppress(OSError):
                    stream.close()
        self.log.close()


class Pool:
    """Pre-started sandbox zygotes; thread-safe; use as a context manager (or call `close`).

    `workers` is how many programs run at once; the pool starts at least HASH_SEEDS zygotes (each
    one process of ~10 MB) so that runs of one program always get distinct hash seeds.
    `allow_unconfined` (default: the FLYWHEEL_SANDBOX_UNCONFINED=1 environment variable) lets the
    pool start where the kernel refused the seccomp filter, for a developer machine only;
    `disable` switches named kernel layers off, for tests of the remaining ones."""

    def __init__(
        self,
        workers: int = 2,
        timeout_s: float = 10.0,
        memory_mb: int = 512,
        max_output_chars: int = 400,
        *,
        allow_unconfined: bool | None = None,
        disable: Iterable[str] = (),
    ) -> None:
        if workers < 1 or timeout_s <= 0 or memory_mb < 64 or max_output_chars < 1:
            raise ValueError("Pool needs workers >= 1, timeout_s > 0, memory_mb >= 64, max_output_chars >= 1")
        self.disable = tuple(disable)
        unknown = sorted(set(self.disable) - set(LAYERS))
        if unknown:
            raise ValueError(f"Pool(disable=...) names unknown layers {unknown}; known: {list(LAYERS)}")
        if allow_unconfined is None:
            allow_unconfined = os.environ.get(UNCONFINED_ENV) == "1"
        if "seccomp" in self.disable and not allow_unconfined:
            raise ValueError("Pool(disable=['seccomp']) needs allow_unconfined=True")
        self.allow_unconfined = allow_unconfined
        # Checks compare with gold outputs of up to MAX_LITERAL_CHARS; an equal value's repr may be
        # longer than the gold text ('True' for 1), never twice as long.
        self.check_cap = max(max_output_chars, 2 * checks.MAX_LITERAL_CHARS + 16)
        self.workers = workers
        self.timeout_s, self.memory_mb, self.max_output_chars = timeout_s, memory_mb, max_output_chars
        self.replaced = 0  # workers killed and restarted because they died, hung or answered garbage
        # The zygote itself kills a child at timeout_s; this slack only has to cover a zygote that hangs.
        self.watchdog_slack_s = 5.0
        self._ids = itertools.count(1)
        self._seeds = itertools.count(secrets.randbelow(2**31))  # distinct seeds for every zygote
        self._checkout = threading.Lock()
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._closed = False
        self.jail = tempfile.mkdtemp(prefix="flywheel-jail-")
        # Removed by close(), or at interpreter exit when a caller forgot to close.
        self._remove_jail = weakref.finalize(self, _remove_jail, self.jail)
        try:
            os.chmod(self.jail, 0o555)  # noqa: S103 - empty and read-only: the chroot (or cwd) of every child
            for _ in range(max(workers, HASH_SEEDS)):
                self._all.append(_Worker(self.jail, next(self._seeds), self.disable))
            reports = [self._checked(worker.hello()) for worker in self._all]
        except BaseException:
            self.close()
            raise
        self.isolation: dict[str, Any] = {
            **reports[0],
            "audit_hook": True,
            "restricted_builtins": True,
            "hash_seeds": len(self._all),
        }
        for worker in self._all:
            self._idle.put(worker)
        self._threads = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="sandbox")

    def _checked(self, report: dict[str, Any]) -> dict[str, Any]:
        """A zygote's layer report, refused where the seccomp filter is missing (unless opted out)."""
        if report.get("seccomp") is True:
            return report
        if not self.allow_unconfined:
            raise SandboxUnavailable(
                "sandbox layer 'seccomp' was not applied by the kernel (report: "
                f"{json.dumps(report, sort_keys=True)}): refusing to run model-written code without it. "
                f"On a developer machine only, set {UNCONFINED_ENV}=1 to run without it."
            )
        warnings.warn("sandbox running WITHOUT its seccomp filter (opted out)", RuntimeWarning, stacklevel=3)
        return report

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill every worker (and so every jailed child) and remove the jail directory."""
        if self._closed:
            return
        self._closed = True
        if hasattr(self, "_threads"):
            self._threads.shutdown(wait=True)
        for worker in self._all:
            worker.kill()
        if hasattr(self, "_remove_jail"):
            self._remove_jail()

    @property
    def worker_pids(self) -> list[int]:
        return [worker.proc.pid for worker in self._all if worker.proc.poll() is None]

    def _execute(self, batches: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        """Run each batch of executions on a different zygote at once (one jailed child each).

        A zygote that dies, hangs past the deadline or answers garbage is replaced, and its
        executions report `crashed`. More batches than zygotes run in waves."""
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        wired: dict[int, dict[str, Any]] = {}  # by id(job): a job run on several zygotes is wired once
        for job in (job for jobs in batches for job in jobs):
            if id(job) not in wired:
                wired[id(job)] = _wire(job)
        prepared = [[wired[id(job)] for job in jobs] for jobs in batches]
        sendable = [[job for job in jobs if "blob" in job] for jobs in prepared]
        with self._checkout:  # checking out several workers under one lock cannot deadlock
            held = [self._idle.get() for _ in range(min(len(batches), len(self._all)))]
        # A worker whose last restart failed gets another try before it is sent anything.
        held = [worker if worker.proc.poll() is None else self._replace(worker) for worker in held]
        opts = {"timeout": self.timeout_s, "memory_mb": self.memory_mb}
        answers: list[list[dict[str, Any]]] = []
        try:
            for start in range(0, len(sendable), len(held)):
                wave = list(zip(held, sendable[start : start + len(held)], strict=False))
                answers.extend(self._wave(held, wave, opts))
        finally:
            for worker in held:
                self._idle.put(worker)
        # Jobs that did not compile never left the trainer: their error takes their place.
        return [
            [iter_answers.__next__() if "blob" in job else job for job in jobs]
            for jobs, iter_answers in zip(prepared, map(iter, answers), strict=True)
        ]

    def _wave(
        self,
        held: list[_Worker],
        wave: list[tuple[_Worker, list[dict[str, Any]]]],
        opts: dict[str, Any],
    ) -> list[list[dict[str, Any]]]:
        """Send each zygote its jobs and serve every pipe at once until all have answered or the
        deadline passed; a zygote that died, hung or answered garbage is replaced."""
        alive = {id(worker): worker.send(next(self._ids), jobs, opts) for worker, jobs in wave}
        most_jobs = max(len(jobs) for _, jobs in wave)
        deadline = time.monotonic() + most_jobs * (self.timeout_s + 0.5) + self.watchdog_slack_s
        with selectors.DefaultSelector() as selector:
            for worker, _ in wave:
                if alive[id(worker)]:
                    selector.register(worker.proc.stdout.fileno(), selectors.EVENT_READ, worker)  # type: ignore[union-attr]
            while selector.get_map():
                for worker, _ in wave:  # writes never block: the zygote reads as it forks
                    if alive[id(worker)] and worker.outgoing and not worker.write_some():
                        alive[id(worker)] = False
                        selector.unregister(worker.proc.stdout.fileno())  # type: ignore[union-attr]
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                pending = any(worker.outgoing for worker, _ in wave if alive[id(worker)])
                for key, _ in selector.select(min(left, 0.01) if pending else left):
                    worker = key.data
                    if not worker.read_some():
                        alive[id(worker)] = False
                    if worker.done or not alive[id(worker)]:
                        selector.unregister(key.fileobj)
        results = []
        for worker, jobs in wave:
            if alive[id(worker)] and worker.done:  # done: every result arrived (read_some checks)
                results.append([result for result in worker.results if result is not None])
                continue
            held[held.index(worker)] = self._replace(worker)
            results.append(
                [{"status": "crashed", "error": "sandbox worker died or hung; replaced"}] * len(jobs)
            )
        return results

    def _replace(self, worker: _Worker) -> _Worker:
        """Kill a broken worker (and its jailed children) and start a fresh one in its place."""
        worker.kill()
        fresh = None
        try:
            fresh = _Worker(self.jail, next(self._seeds), self.disable)
            self._checked(fresh.hello())
        except Exception:
            if fresh is not None:
                fresh.kill()
            return worker
        self._all[self._all.index(worker)] = fresh
        self.replaced += 1
        return fresh

    def run_program(self, code: str, inputs: str) -> ExecResult:
        """Validate a proposal: static check, then `f(inputs)` in fresh jailed executions under
        distinct hash seeds, which must all succeed and agree by value."""
        return self.run_programs([(code, inputs)])[0]

    def run_programs(self, items: Iterable[tuple[str, str]]) -> list[ExecResult]:
        """`run_program` for many proposals; jobs travel in chunks, so pipes and threads cost little."""
        prepared = [self._prepare(code, inputs) for code, inputs in items]
        verdicts: list[ExecResult | None] = [p if isinstance(p, ExecResult) else None for p in prepared]
        runnable = [(index, job) for index, job in enumerate(prepared) if not isinstance(job, ExecResult)]
        size = _chunk_size(len(runnable), len(self._all))
        chunks = []
        for runs in sorted({job["runs"] for _, job in runnable}):
            group = [item for item in runnable if item[1]["runs"] == runs]
            chunks += [group[start : start + size] for start in range(0, len(group), size)]
        for chunk, results in zip(
            chunks, self.map(self._run_fresh, [(chunk,) for chunk in chunks]), strict=True
        ):
            for (index, _), verdict in zip(chunk, results, strict=True):
                verdicts[index] = verdict
        return [verdict for verdict in verdicts if verdict is not None]

    def _prepare(self, code: str, inputs: str) -> ExecResult | dict[str, Any]:
        """The execution job for a proposal, or its `rejected` verdict."""
        reasons = checks.static_check(code)
        call, call_reasons = checks.call_source(inputs)
        if reasons or call_reasons:
            return _failed("rejected", "; ".join(reasons + call_reasons))
        runs = HASH_SEEDS if checks.seed_sensitive(code) else 2
        return {"code": code, "call": call, "cap": self.max_output_chars, "runs": runs}

    def _run_fresh(self, chunk: list[tuple[int, dict[str, Any]]]) -> list[ExecResult]:
        # Every run of a chunk on its own zygote: distinct hash seeds and address-space layouts, so
        # hash-order-, id()- or address-dependent output shows up as a difference.
        jobs = [job for _, job in chunk]
        runs = self._execute([jobs] * jobs[0]["runs"])
        return [_agreed([_parsed(run[index], job["cap"]) for run in runs]) for index, job in enumerate(jobs)]

    def check_output(self, code: str, inputs: str, expected_repr: str) -> bool:
        """Abduction: does `f(inputs)` equal the gold output (a literal) as a plain value?"""
        return self.check_function(code, [(inputs, expected_repr)])[0]

    def check_function(self, code: str, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Induction: for each hidden (input, output repr) pair, is `output == f(input)`?

        Each pair is its own fresh execution; the expected output stays here and is compared here
        with the literal the child returned."""
        verdicts = [False] * len(pairs)
        if not pairs or checks.static_check(code):
            return verdicts
        runnable: list[tuple[int, object, dict[str, Any]]] = []
        for index, (inputs, output) in enumerate(pairs):
            call, reasons = checks.call_source(inputs)
            known, expected = checks.literal(output)
            if not reasons and known:
                # One cap for every check, whatever the gold output: a cap that followed its length
                # would tell the child how long the answer is.
                runnable.append((index, expected, {"code": code, "call": call, "cap": self.check_cap}))
        if not runnable:
            return verdicts
        (results,) = self._execute([[job for _, _, job in runnable]])
        for (index, expected, job), result in zip(runnable, results, strict=True):
            verdict, value = _parsed(result, job["cap"])
            verdicts[index] = verdict.ok and _equal(expected, value)
        return verdicts

    @staticmethod
    def eval_literal_equal(a_repr: str, b_repr: str) -> bool:
        """Deduction: equal as literal values, evaluated with `ast.literal_eval` (no executor)."""
        return checks.eval_literal_equal(a_repr, b_repr)

    def map(self, method: Callable[..., Any], items: Iterable[Sequence[Any]]) -> list[Any]:
        """`method(*item)` for every item, spread over the workers; results in input order."""
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        items = list(items)
        if len(items) <= 1:  # no thread hop for a single call
            return [method(*item) for item in items]
        return list(self._threads.map(lambda item: method(*item), items))

    def check_outputs(self, items: Iterable[tuple[str, str, str]]) -> list[bool]:
        return self.map(self.check_output, items)

    def check_functions(self, items: Iterable[tuple[str, Sequence[tuple[str, str]]]]) -> list[list[bool]]:
        return self.map(self.check_function, items)


def _remove_jail(jail: str) -> None:
    with contextlib.suppress(OSError):
        os.chmod(jail, 0o700)
    shutil.rmtree(jail, ignore_errors=True)


def _chunk_size(items: int, workers: int) -> int:
    """Proposals per request: up to CHUNK (amortises the pipe round trip), but small enough that a
    small batch still gives every worker pair about two chunks (each chunk runs on two workers)."""
    pairs = max(1, workers // 2)
    return max(1, min(CHUNK, -(-items // (2 * pairs))))


def _agreed(runs: list[tuple[ExecResult, object]]) -> ExecResult:
    """Every run must succeed and agree by value with the first (a failure reports the first one)."""
    for verdict, _ in runs:
        if not verdict.ok:
            return verdict
    (first, value), rest = runs[0], runs[1:]
    for verdict, other in rest:
        if not _equal(value, other):
            differ = f"two runs gave {first.output_repr!r} and {verdict.output_repr!r}"
            return _failed("nondeterministic", differ)
    return first


def _parsed(result: dict[str, Any], cap: int) -> tuple[ExecResult, object]:
    """(verdict, value) for one execution's untrusted answer. The child's frame is parsed here
    (exactly one frame, a known status), the repr parsed as a literal, and the output reported is
    that literal's own repr: nothing the child wrote is passed on as text."""
    status = result.get("status")
    if status != "done":
        kind: Kind = status if status in ("timeout", "crashed", "error") else "crashed"
        return _failed(kind, str(result.get("error", status))), None
    frame = result["frame"]
    size = struct.unpack(">I", frame[:4])[0] if len(frame) >= 4 else -1
    outcome, sep, text = frame[4:].decode("utf-8", "replace").partition("\0")
    if size != len(frame) - 4 or not sep or outcome not in STATUSES:
        return _failed(
            "crashed", f"sandbox child died (signal/exit {result.get('code')}) without a result"
        ), None
    if outcome != "ok":
        kind = outcome if outcome in ("output_too_long", "not_literal") else "error"
        return _failed(kind, text), None
    if len(text) > cap:
        return _failed("output_too_long", f"output repr has {len(text)} > {cap} chars"), None
    known, value = checks.literal(text)
    canonical = _repr(value, text) if known else None
    if canonical is None:
        return _failed("not_literal", "output repr does not round-trip as a literal"), None
    if len(canonical) > cap:
        return _failed("output_too_long", f"output repr has {len(canonical)} > {cap} chars"), None
    return ExecResult(ok=True, output_repr=canonical, error=None, kind="ok"), value


def _repr(value: object, text: str) -> str | None:
    """The repr of a literal parsed from `text`, if it parses back to an equal value (nan and inf
    do not: `1e999` parses to inf). The usual case, a child's own repr, is its own canonical form."""
    try:
        canonical = repr(value)
    except Exception:
        return None
    if canonical == text:
        return canonical
    known, again = checks.literal(canonical)
    return canonical if known and _equal(again, value) else None


def _equal(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except (RecursionError, MemoryError):
        return False


class _ProgramCache:
    """Marshalled code of recently compiled programs: one program runs several times and once per
    induction pair. Bounded in bytes, not entries: a pathological 20k-character program can
    compile to megabytes, and such blobs are never kept."""

    def __init__(self, budget: int = 32 << 20, largest: int = 64 << 10) -> None:
        self.budget, self.largest, self.size = budget, largest, 0
        self.entries: collections.OrderedDict[str, bytes | str] = collections.OrderedDict()
        self.lock = threading.Lock()

    def get(self, code: str) -> bytes | str:
        """The program's marshalled code object, or the error the child used to report for it."""
        with self.lock:
            if code in self.entries:
                self.entries.move_to_end(code)
                return self.entries[code]
        compiled = _compiled(code)
        with self.lock:
            if len(compiled) <= self.largest and code not in self.entries:
                self.entries[code] = compiled
                self.size += len(compiled) + len(code)
                while self.size > self.budget:
                    old_code, old = self.entries.popitem(last=False)
                    self.size -= len(old) + len(old_code)
        return compiled


def _compiled(code: str) -> bytes | str:
    try:
        # dont_inherit: this module's `from __future__ import annotations` must not leak in.
        program = compile(code, "<program>", "exec", dont_inherit=True)
        return marshal.dumps(program)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


_PROGRAMS = _ProgramCache()


def _wire(job: dict[str, Any]) -> dict[str, Any]:
    """The zygote's form of one execution (the marshalled program and the call's argument values),
    or its error result. Values, not code: the input never runs as code in the child."""
    program = _PROGRAMS.get(job["code"])
    values = checks.call_values(job["call"])
    failed = [error for error in (program, values) if isinstance(error, str)]
    if failed:
        return {"status": "error", "error": failed[0]}
    assert isinstance(program, bytes) and not isinstance(values, str)
    try:
        blob = marshal.dumps((program, *values))  # type: ignore[arg-type]  # literal values marshal
    except ValueError as exc:  # "object too deeply nested to marshal"
        return {"status": "error", "error": f"ValueError: {exc}"[:MAX_ERROR_CHARS]}
    if len(blob) > MAX_BLOB_BYTES:
        return {
            "status": "error",
            "error": f"the compiled program has {len(blob)} bytes, more than {MAX_BLOB_BYTES}",
        }
    return {"blob": blob, "max_chars": min(job["cap"], MAX_CAP), "audit_hook": job.get("audit_hook", True)}
