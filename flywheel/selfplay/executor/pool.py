"""A pool of sandbox zygotes that validates and checks self-play programs.

Problem: Absolute-Zero rewards come from running model-written code (the reference does it in the
trainer's own process, with no limits). Each `Pool` worker is a tiny `python -s -S -P -B _worker.py`
process started with `subprocess` (clean environment, no inherited descriptors, no torch, no flywheel
import), which forks one jailed child per execution; see `_worker.py` for the jail. Why not
multiprocessing: a forkserver is a child of the trainer's interpreter (its `sys.path`, pickled
callables, authkey), while this worker holds nothing but the standard library and speaks a 30-line
pipe protocol; the measured cost is the same (one fork per execution), see bench/executor.py.

The parent enforces the wall clock on each request; a worker that hangs, dies or answers garbage is
killed and replaced, and the call reports `crashed` instead of raising.

Where the time goes (bench/executor.py --profile): a jailed execution is a fork, and after a fork
every page the child writes is a copy-on-write fault. So the trainer does the work that would
otherwise run in each fork: it compiles each program once (cached by source; both fresh runs and
every induction pair reuse it) and ships the code objects as `marshal` to the zygote, and it checks
the output literal's round trip itself. Compiling here is safe: every source has already been
parsed by `checks` (whose parse bounds nesting depth), and compiling runs no program code.
"""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import dataclasses
import functools
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
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from flywheel.selfplay.executor import checks

Kind = Literal[
    "ok", "rejected", "error", "timeout", "nondeterministic", "output_too_long", "not_literal", "crashed"
]
WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker.py")
STARTUP_TIMEOUT_S = 30.0
MAX_FRAME_BYTES = 8 * 1024 * 1024
CHUNK = 16  # at most this many proposals per worker request in run_programs (see _chunk_size)


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """Verdict on one program run: `output_repr` is a capped literal repr when `ok`."""

    ok: bool
    output_repr: str | None
    error: str | None
    kind: Kind


def _failed(kind: Kind, error: str) -> ExecResult:
    return ExecResult(ok=False, output_repr=None, error=error, kind=kind)


class _Worker:
    """One zygote process and its pipe; every method runs under the pool's exclusive checkout."""

    def __init__(self, jail: str) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in kill())
        self.proc = subprocess.Popen(
            [sys.executable, "-s", "-S", "-P", "-B", WORKER_SCRIPT, jail],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=jail,
            # Each worker its own hash seed: output that depends on str-hash order is caught as
            # non-deterministic by the two-worker check instead of being frozen into a gold answer.
            # LD_BIND_NOW: the dynamic linker resolves every symbol once, in the zygote, instead of
            # in each fork on first call (lazy binding wrote the GOT: a fault and a lookup per call
            # site per execution). The zygote drops it from its environment at start.
            env={"PYTHONHASHSEED": str(secrets.randbelow(2**32)), "LC_ALL": "C.UTF-8", "LD_BIND_NOW": "1"},
            close_fds=True,
        )
        self.buffer = b""

    def hello(self) -> dict[str, Any]:
        message = self._read_frame(time.monotonic() + STARTUP_TIMEOUT_S)
        if message is None or "hello" not in message:
            self.kill()
            self.log.seek(0)
            tail = self.log.read()[-800:].decode(errors="replace")
            raise RuntimeError(f"sandbox worker failed to start: {tail or 'no output'}")
        return dict(message["hello"])

    def send(self, payload: dict[str, Any]) -> bool:
        assert self.proc.stdin is not None
        data = marshal.dumps(payload)  # the zygote reads only what the trainer writes: trusted
        try:
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
        except OSError:
            return False
        return True

    def receive(self, request_id: int, deadline: float) -> list[dict[str, Any]] | None:
        """The answer to request_id, or None when the worker must be replaced (dead, hung, garbage)."""
        answer = self._read_frame(deadline)
        if answer is None or answer.get("id") != request_id or not isinstance(answer.get("results"), list):
            return None
        return list(answer["results"])

    def _read_frame(self, deadline: float) -> dict[str, Any] | None:
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
    """Pre-started sandbox workers; thread-safe; use as a context manager (or call `close`)."""

    def __init__(
        self, workers: int = 2, timeout_s: float = 10.0, memory_mb: int = 512, max_output_chars: int = 400
    ) -> None:
        if workers < 1 or timeout_s <= 0 or memory_mb < 64 or max_output_chars < 1:
            raise ValueError("Pool needs workers >= 1, timeout_s > 0, memory_mb >= 64, max_output_chars >= 1")
        self.timeout_s, self.memory_mb, self.max_output_chars = timeout_s, memory_mb, max_output_chars
        self.jail = tempfile.mkdtemp(prefix="flywheel-jail-")
        os.chmod(self.jail, 0o555)  # noqa: S103 - empty and read-only: the chroot (or cwd) of every child
        self.replaced = 0  # workers killed and restarted because they died, hung or answered garbage
        # The zygote itself kills a child at timeout_s; this slack only has to cover a zygote that hangs.
        self.watchdog_slack_s = 5.0
        self._ids = itertools.count(1)
        self._checkout = threading.Lock()
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._closed = False
        started = [_Worker(self.jail) for _ in range(workers)]
        self._all.extend(started)
        try:
            reports = [worker.hello() for worker in started]
        except Exception:
            self.close()
            raise
        self.isolation: dict[str, Any] = {**reports[0], "audit_hook": True, "restricted_builtins": True}
        for worker in started:
            self._idle.put(worker)
        self._threads = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="sandbox")

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
        os.chmod(self.jail, 0o700)
        shutil.rmtree(self.jail, ignore_errors=True)

    @property
    def worker_pids(self) -> list[int]:
        return [worker.proc.pid for worker in self._all if worker.proc.poll() is None]

    def _execute(self, batches: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        """Run each batch of jobs on a different worker at once (one jailed child per job).

        A worker that dies, hangs past the deadline or answers garbage is replaced, and its jobs
        report `crashed`. With a single worker the batches run one after the other on it."""
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        wired: dict[int, dict[str, Any]] = {}  # by id(job): a job run on two workers is wired once
        for job in (job for jobs in batches for job in jobs):
            if id(job) not in wired:
                wired[id(job)] = _wire(job)
        prepared = [[wired[id(job)] for job in jobs] for jobs in batches]
        sendable = [[job for job in jobs if "blob" in job] for jobs in prepared]
        with self._checkout:  # checking out several workers under one lock cannot deadlock
            held = [self._idle.get() for _ in range(min(len(batches), len(self._all)))]
        opts = {"timeout": self.timeout_s, "memory_mb": self.memory_mb, "max_chars": self.max_output_chars}
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
        ids = [next(self._ids) for _ in wave]
        sent = [
            worker.send({"id": rid, "jobs": jobs, "opts": opts})
            for rid, (worker, jobs) in zip(ids, wave, strict=True)
        ]
        most_jobs = max(len(jobs) for _, jobs in wave)
        deadline = time.monotonic() + most_jobs * (self.timeout_s + 0.5) + self.watchdog_slack_s
        results = []
        for rid, ok, (worker, jobs) in zip(ids, sent, wave, strict=True):
            answer = worker.receive(rid, deadline) if ok else None
            if answer is None or len(answer) != len(jobs):
                held[held.index(worker)] = self._replace(worker)
                answer = [{"status": "crashed", "error": "sandbox worker died or hung; replaced"}] * len(jobs)
            results.append(answer)
        return results

    def _replace(self, worker: _Worker) -> _Worker:
        """Kill a broken worker (and its jailed children) and start a fresh one in its place."""
        worker.kill()
        fresh = _Worker(self.jail)
        self._all[self._all.index(worker)] = fresh
        fresh.hello()
        self.replaced += 1
        return fresh

    def run_program(self, code: str, inputs: str) -> ExecResult:
        """Validate a proposal: static check, then `f(inputs)` in two fresh jailed executions."""
        return self.run_programs([(code, inputs)])[0]

    def run_programs(self, items: Iterable[tuple[str, str]]) -> list[ExecResult]:
        """`run_program` for many proposals; jobs travel in chunks, so pipes and threads cost little."""
        prepared = [_prepare(code, inputs) for code, inputs in items]
        verdicts: list[ExecResult | None] = [p if isinstance(p, ExecResult) else None for p in prepared]
        runnable = [(index, job) for index, job in enumerate(prepared) if not isinstance(job, ExecResult)]
        size = _chunk_size(len(runnable), len(self._all))
        chunks = [runnable[start : start + size] for start in range(0, len(runnable), size)]
        for chunk, results in zip(
            chunks, self.map(self._run_twice, [(chunk,) for chunk in chunks]), strict=True
        ):
            for (index, _), verdict in zip(chunk, results, strict=True):
                verdicts[index] = verdict
        return [verdict for verdict in verdicts if verdict is not None]

    def _run_twice(self, chunk: list[tuple[int, dict[str, Any]]]) -> list[ExecResult]:
        # Two fresh executions on two different workers where possible: different address-space
        # layouts and hash seeds, so id()-, address- or hash-order-dependent output shows up as a
        # difference instead of being copied from one forked image to the other.
        jobs = [job for _, job in chunk]
        if len(self._all) > 1:
            firsts, seconds = self._execute([jobs, jobs])
        else:  # one worker: run each job twice in a row, the repeat skipped if the first run failed
            (both,) = self._execute(
                [[part for job in jobs for part in (job, {**job, "skip_after_failure": True})]]
            )
            firsts, seconds = both[0::2], both[1::2]
        return [_verdict(_outcome(a), _outcome(b)) for a, b in zip(firsts, seconds, strict=True)]

    def check_output(self, code: str, inputs: str, expected_repr: str) -> bool:
        """Abduction: does `f(inputs)` equal the gold output (a literal) as a plain value?"""
        return self.check_function(code, [(inputs, expected_repr)])[0]

    def check_function(self, code: str, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Induction: for each hidden (input, output repr) pair, is `output == f(input)`?"""
        if not pairs:
            return []
        if checks.static_check(code):
            return [False] * len(pairs)
        runnable = [(index, call) for index, call in _valid_pairs(pairs)]
        verdicts = [False] * len(pairs)
        if not runnable:
            return verdicts
        job = {
            "code": code,
            "calls": [call for _, call in runnable],
            "expected": [pairs[index][1] for index, _ in runnable],
            "mode": "equal",
        }
        ((result,),) = self._execute([[job]])
        for (index, _), outcome in zip(runnable, result.get("outcomes") or [], strict=False):
            verdicts[index] = outcome.get("equal") is True
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


def _chunk_size(items: int, workers: int) -> int:
    """Proposals per request: up to CHUNK (amortises the pipe round trip), but small enough that a
    small batch still gives every worker pair about two chunks (each chunk runs on two workers)."""
    pairs = max(1, workers // 2)
    return max(1, min(CHUNK, -(-items // (2 * pairs))))


def _prepare(code: str, inputs: str) -> ExecResult | dict[str, Any]:
    """The worker job for a proposal, or its `rejected` verdict."""
    reasons = checks.static_check(code)
    call, call_reasons = checks.call_source(inputs)
    if reasons or call_reasons:
        return _failed("rejected", "; ".join(reasons + call_reasons))
    return {"code": code, "calls": [call], "mode": "value"}


def _verdict(first: ExecResult, second: ExecResult) -> ExecResult:
    """Both runs must succeed and agree by value (skipped runs report the first failure)."""
    if not first.ok:
        return first
    if not second.ok:
        return second
    assert first.output_repr is not None and second.output_repr is not None
    if not _equal(ast.literal_eval(first.output_repr), ast.literal_eval(second.output_repr)):
        differ = f"two runs gave {first.output_repr!r} and {second.output_repr!r}"
        return _failed("nondeterministic", differ)
    return first


def _valid_pairs(pairs: Sequence[tuple[str, str]]) -> Iterable[tuple[int, str]]:
    for index, (inputs, output) in enumerate(pairs):
        call, reasons = checks.call_source(inputs)
        if not reasons and checks.literal(output)[0]:
            yield index, call


def _outcome(result: dict[str, Any]) -> ExecResult:
    """Map the worker's answer for one execution to an ExecResult."""
    status = result.get("status")
    if status != "ok":
        kind: Kind = status if status in ("timeout", "crashed") else "error"
        return _failed(kind, str(result.get("error", status)))
    (outcome,) = result["outcomes"]
    status = outcome.get("status")
    if status == "ok":
        text = str(outcome["repr"])
        # The child sends the repr of an exact literal type; it round-trips iff it parses (nan and
        # inf do not). Parsed here, in the trainer, instead of in every fork (module docstring).
        try:
            ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return _failed("not_literal", "output repr does not round-trip as a literal")
        return ExecResult(ok=True, output_repr=text, error=None, kind="ok")
    kind = status if status in ("output_too_long", "not_literal") else "error"
    return _failed(kind, str(outcome.get("error", status)))


def _equal(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except (RecursionError, MemoryError):
        return False


@functools.lru_cache(maxsize=1024)  # one program runs twice, and once per induction pair
def _compiled(code: str, mode: str) -> types.CodeType | str:
    """The compiled source, or the error the child used to report for it (`SyntaxError: ...`)."""
    try:
        # dont_inherit: this module's `from __future__ import annotations` must not leak in.
        return compile(code, "<program>" if mode == "exec" else "<call>", mode, dont_inherit=True)
    except (SyntaxError, ValueError, TypeError, OverflowError, MemoryError, RecursionError) as exc:
        return f"{type(exc).__name__}: {exc}"[:300]


def _wire(job: dict[str, Any]) -> dict[str, Any]:
    """The zygote's form of a job (code objects marshalled), or its error result if it does not compile."""
    program = _compiled(job["code"], "exec")
    calls = [_compiled(call, "eval") for call in job["calls"]]
    failed = [code for code in [program, *calls] if isinstance(code, str)]
    if failed:
        return {"status": "error", "error": failed[0]}
    expected = [checks.literal(text) for text in job.get("expected", [])]
    if not all(ok for ok, _ in expected):  # callers pass checked literals; never raise here anyway
        return {"status": "error", "error": "an expected output is not a literal"}
    return {
        "blob": marshal.dumps((program, calls, [value for _, value in expected])),
        "calls": len(calls),
        "mode": job["mode"],
        "audit_hook": job.get("audit_hook", True),
        "skip_after_failure": job.get("skip_after_failure", False),
    }
