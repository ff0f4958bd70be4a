"""Sandbox zygote: a tiny stdlib-only process that forks one jailed child per execution.

Problem: model-written programs must run thousands of times per step without touching the host.
Started by `pool.Pool` as `python -s -S -P -B _worker.py JAIL_DIR` with a clean environment and a
pipe protocol on stdin/stdout (4-byte big-endian length + body): requests from the trainer are
`marshal` (trusted: only the trainer writes stdin; each job's program arrives already compiled, so
no child runs the compiler), answers are JSON. This file imports nothing from flywheel on purpose:
the process that forks untrusted children holds only the standard library.

Once, at start: pre-import the allowed modules and build filtered copies of them (no sub-modules,
no private names), enter a new network namespace (no interfaces but a down loopback), chroot into
an empty directory, set no-new-privileges. Per execution: fork; the child drops to an unprivileged
uid, sets rlimits (address space, CPU, no files, no forks, no core), closes every inherited file
descriptor, installs an audit hook, execs the program with restricted builtins in a fresh
namespace, and writes its result as NUL-separated text to a pipe, which the zygote parses as
untrusted. The zygote enforces the wall clock (SIGKILL).

Why the child does so little: after a fork every page it writes is a copy-on-write fault (~3 us
here), and a child's cost is mostly those faults, not the program. Compiling, `json.dumps`, copying
the builtins table and `ast.literal_eval` in the child each cost 30-85 faults per execution, so the
trainer compiles (once per program, not once per run), the trainer checks the literal round trip,
and the first call uses the pristine builtins table of the fresh fork itself. See bench/executor.py.
"""

import builtins
import ctypes
import errno
import gc
import json
import marshal
import math
import os
import resource
import select
import signal
import struct
import sys
import time
import types
from typing import Any

ALLOWED_MODULES = [
    "math",
    "itertools",
    "functools",
    "collections",
    "string",
    "re",
    "heapq",
    "bisect",
    "copy",
    "operator",
    "statistics",
    "fractions",
    "decimal",
    "typing",
]
# Names that give a way back to attribute reflection or code evaluation, even from a safe module.
DENIED_MODULE_ATTRS = {"attrgetter", "methodcaller", "get_type_hints", "ForwardRef", "Formatter"}
LITERAL_TYPES = (int, float, complex, str, bytes, bool, type(None), list, tuple, dict, set)
SAFE_BUILTIN_NAMES = [
    "abs",
    "all",
    "any",
    "ascii",
    "bin",
    "bool",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "classmethod",
    "complex",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "hash",
    "hex",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "oct",
    "ord",
    "pow",
    "property",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "staticmethod",
    "str",
    "sum",
    "super",
    "tuple",
    "type",
    "zip",
    "hasattr",
    "id",
    "__build_class__",
]
BLOCKED_EVENTS = (
    "open",
    "os.",
    "subprocess.",
    "socket.",
    "ctypes.",
    "import",
    "sys.settrace",
    "sys.setprofile",
    "sys._current_frames",
    "sys.addaudithook",
    "object.__getattr__",
    "code.__new__",
    "function.__new__",
    "marshal.",
    "pickle.",
    "shutil.",
    "tempfile.",
    "mmap.",
    "fcntl.",
    "resource.",
    "signal.",
    "_thread.",
    "syslog.",
    "urllib.",
    "http.",
    "ftplib.",
    "smtplib.",
    "webbrowser.",
    "builtins.input",
    "sys.unraisablehook",
    "cpython.",
)
CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS = 0x40000000, 0x08000000, 0x04000000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE = 1, 38, 4
MAX_ERROR_CHARS = 300
# A child still running after SLOW_AFTER_S is most likely heading for its timeout: the next jobs of
# the batch start beside it (up to MAX_SLOW such children at once) instead of waiting behind it.
SLOW_AFTER_S = 0.05
MAX_SLOW = 2
SIGKILL = int(signal.SIGKILL)  # a plain int: ctypes converts an IntEnum the slow way, in every fork
SIGXCPU = int(signal.SIGXCPU)


def _unseeded(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("sandbox: unseeded random draws are not allowed (pass a seed)")


def _random_without_global_generator() -> None:
    """Import `random` (which `statistics` imports) without its at-fork hook, and without its global
    generator.

    The hook reseeded that generator in every forked child: ~45 copy-on-write faults per execution.
    Inside the sandbox the generator is reachable only through `statistics.NormalDist.samples`
    without a seed; such a draw is non-deterministic, so the program would be rejected anyway: it
    now fails at once (`samples(n, seed=...)` uses its own seeded generator and still works)."""
    register = os.register_at_fork
    os.register_at_fork = lambda **hooks: None  # type: ignore[assignment]
    try:
        import random
    finally:
        os.register_at_fork = register
    for name, value in vars(random).items():
        if getattr(value, "__self__", None) is random._inst:  # random.gauss, random.random, ...
            setattr(random, name, _unseeded)


def _safe_modules() -> dict[str, Any]:
    """Filtered module copies: public, non-module attributes only (no `typing.sys` detours)."""
    _random_without_global_generator()
    safe = {}
    for name in ALLOWED_MODULES:
        real = __import__(name)
        copy = types.ModuleType(name)
        for attr, value in vars(real).items():
            if attr.startswith("_") or attr in DENIED_MODULE_ATTRS or isinstance(value, types.ModuleType):
                continue
            setattr(copy, attr, value)
        safe[name] = copy
    return safe


SAFE_MODULES: dict[str, Any] = {}  # filled in main(): importing this file must stay cheap


def _safe_import(
    name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    if level != 0 or name not in SAFE_MODULES:
        raise ImportError(f"import of {name!r} is not allowed")
    return SAFE_MODULES[name]


def _safe_builtins() -> dict[str, Any]:
    table = {name: getattr(builtins, name) for name in SAFE_BUILTIN_NAMES}
    for name, value in vars(builtins).items():
        if isinstance(value, type) and issubclass(value, BaseException):
            table[name] = value
    table.update(__import__=_safe_import, print=lambda *a, **k: None)
    return table


SAFE_BUILTINS: dict[str, Any] = {}
LIBC = ctypes.CDLL(None, use_errno=True)


def _isolate_zygote(jail: str) -> dict[str, Any]:
    """One-time isolation of the zygote itself; each step reports whether the kernel allowed it."""
    report = {"uid": os.getuid()}
    report["netns"] = LIBC.unshare(CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) == 0
    report["no_new_privs"] = LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    report["not_dumpable"] = LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    try:
        os.chroot(jail)
        os.chdir("/")
        report["chroot"] = True
    except OSError:
        os.chdir(jail)
        report["chroot"] = False
    report["setuid"] = os.getuid() == 0
    # One uid per concurrent child slot (see _run_batch), distinct across the pool's zygotes, and
    # below 65000: container user namespaces often map only 16-bit uids.
    base = 60000 + (os.getpid() % (5000 // (MAX_SLOW + 1))) * (MAX_SLOW + 1)
    report["sandbox_uid"] = base if report["setuid"] else os.getuid()
    return report


def _limits(opts: dict[str, Any]) -> list[tuple[int, tuple[int, int]]]:
    """The rlimits of every execution of a request, computed once in the zygote: the child only
    applies them (each Python step in a fork costs page faults, see the module docstring)."""
    cpu = math.ceil(opts["timeout"])
    memory = int(opts["memory_mb"]) * 1024 * 1024
    return [
        (resource.RLIMIT_AS, (memory, memory)),
        (resource.RLIMIT_CPU, (cpu + 1, cpu + 2)),
        (resource.RLIMIT_FSIZE, (0, 0)),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_NPROC, (0, 0)),
    ]


def _jail_child(
    report: dict[str, Any],
    result_fd: int,
    devnull: int,
    limits: list[tuple[int, tuple[int, int]]],
    slot: int = 0,
) -> None:
    LIBC.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    dup2 = os.dup2
    dup2(devnull, 0)
    dup2(devnull, 1)
    dup2(devnull, 2)
    os.closerange(3, result_fd)
    os.closerange(result_fd + 1, 4096)
    if report["setuid"]:
        uid = report["sandbox_uid"] + slot
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    setrlimit = resource.setrlimit
    for which, pair in limits:
        setrlimit(which, pair)
    setrlimit(resource.RLIMIT_NOFILE, (result_fd + 1, result_fd + 1))
    sys.setrecursionlimit(3000)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event.startswith(BLOCKED_EVENTS):
        raise RuntimeError(f"sandbox: {event} is not allowed")


def _shape(value: Any, budget: int) -> str:
    """ "ok", "not_literal" or "too_long" for a return value, without building a huge repr first.

    Only exact literal types pass (a subclass could lie in __repr__ or __eq__). Every element costs
    at least one character of repr, so more than `budget` elements is too long already."""
    stack, seen = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        kind = type(item)
        if depth > 50 or kind not in LITERAL_TYPES:
            return "not_literal"
        if seen > budget or (kind in (str, bytes, list, tuple, set, dict) and len(item) > budget):
            return "too_long"
        if kind is int and item.bit_length() > 4 * budget:
            return "too_long"
        if kind is dict:
            stack.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif kind in (list, tuple, set):
            stack.extend((part, depth + 1) for part in item)
    return "ok"


def _plain(value: Any) -> bool:
    return _shape(value, 1 << 20) == "ok"


def _describe(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:
        text = type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def _literal_result(value: Any, max_chars: int) -> tuple[str, str]:
    """(status, repr or error) for a return value; exact literal types only, repr capped.

    The round trip (`ast.literal_eval(repr) == value`) is checked by the trainer: for the exact
    literal types `_shape` admits, a repr that parses always equals the value (float reprs are
    exact; nan and inf do not parse), so parsing there decides the same thing at no fork cost."""
    shape = _shape(value, max_chars)
    if shape == "not_literal":
        return "not_literal", f"returned a {type(value).__name__}, not a plain literal"
    if shape == "too_long":
        return "output_too_long", f"output repr has more than {max_chars} chars"
    text = repr(value)
    if len(text) > max_chars:
        return "output_too_long", f"output repr has {len(text)} > {max_chars} chars"
    return "ok", text


def _run_one(job: dict[str, Any], max_chars: int) -> list[tuple[str, str]]:
    """Inside the jailed child: run each call in a fresh namespace; (status, payload) per call."""
    # Trusted bytes: the trainer marshalled its own compile() output. Before the audit hook (bans marshal).
    program, calls, expected = marshal.loads(job["blob"])  # noqa: S302
    if job.get("audit_hook", True):  # only the jail tests turn it off, to test the OS layer alone
        sys.addaudithook(_audit)
    # This fork's own SAFE_BUILTINS is pristine and used by no one else: the first call gets it as
    # is; later calls get copies taken now, before any program code has run.
    tables = [SAFE_BUILTINS] + [dict[str, Any](SAFE_BUILTINS) for _ in calls[1:]]
    gc.enable()
    outcomes: list[tuple[str, str]] = []
    for index, call in enumerate(calls):
        namespace = {"__builtins__": tables[index], "__name__": "__sandbox__"}
        try:
            exec(program, namespace)
            value = eval(call, namespace)
        except BaseException as exc:  # the program's own failure: report, never crash the child
            outcomes.append(("error", _describe(exc)))
            continue
        if job["mode"] == "value":
            outcomes.append(_literal_result(value, max_chars))
        else:
            outcomes.append(("ok", "1" if _plain(value) and expected[index] == value else "0"))
    return outcomes


def _encode(outcomes: list[tuple[str, str]]) -> bytes:
    """`ok\0status\0payload...`: plain text, no json in the child (see the module docstring)."""
    fields = ["ok"] + [part.replace("\0", "\\x00") for outcome in outcomes for part in outcome]
    return "\0".join(fields).encode("utf-8", "backslashreplace")


def _child(
    job: dict[str, Any], report: dict[str, Any], write_fd: int, devnull: int, opts: dict[str, Any], slot: int
) -> None:
    try:
        _jail_child(report, write_fd, devnull, opts["limits"], slot)
        data = _encode(_run_one(job, opts["max_chars"]))
    except BaseException as exc:
        try:
            data = ("error\0" + _describe(exc).replace("\0", "\\x00")).encode("utf-8", "backslashreplace")
        except BaseException:
            data = b"error\0the sandbox child failed to report"
    view = memoryview(data)
    while view:
        view = view[os.write(write_fd, view) :]
    os._exit(0)


def _parse(data: bytes, job: dict[str, Any]) -> dict[str, Any]:
    """The child's text as a result dict; raises ValueError on anything malformed (untrusted)."""
    fields = data.decode("utf-8", "replace").split("\0")
    if fields[0] == "error" and len(fields) == 2:
        return {"status": "error", "error": fields[1][:MAX_ERROR_CHARS]}
    if fields[0] != "ok" or len(fields) != 1 + 2 * job["calls"]:
        raise ValueError("malformed result")
    outcomes = []
    for status, payload in zip(fields[1::2], fields[2::2], strict=True):
        if status == "ok":
            value = {"repr": payload} if job["mode"] == "value" else {"equal": payload == "1"}
            outcomes.append({"status": "ok", **value})
        elif status in ("error", "not_literal", "output_too_long"):
            outcomes.append({"status": status, "error": payload[:MAX_ERROR_CHARS]})
        else:
            raise ValueError("malformed result")
    return {"status": "ok", "outcomes": outcomes}


def _start(
    index: int, job: dict[str, Any], report: dict[str, Any], devnull: int, opts: dict[str, Any], slot: int
) -> dict[str, Any]:
    """Fork one jailed child for `job`: its state, or the `crashed` result if fork failed."""
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        return {"status": "crashed", "error": f"fork failed: {errno.errorcode.get(exc.errno or 0, str(exc))}"}
    if pid == 0:
        os.close(read_fd)
        _child(job, report, write_fd, devnull, opts, slot)
    os.close(write_fd)
    now = time.monotonic()
    return {"pid": pid, "fd": read_fd, "index": index, "slot": slot, "started": now, "chunks": [], "size": 0}


def _finish(child: dict[str, Any], job: dict[str, Any], timed_out: bool, timeout: float) -> dict[str, Any]:
    """SIGKILL and reap a child (whatever it is doing) and turn what it wrote into its result.

    try/except and plain-int signals rather than contextlib.suppress and signal's enums: each
    object the zygote touches between forks is a page fault of its own (bench --profile)."""
    os.close(child["fd"])
    try:  # noqa: SIM105 - see the docstring
        os.kill(child["pid"], SIGKILL)
    except ProcessLookupError:
        pass
    _, status = os.waitpid(child["pid"], 0)
    if timed_out:
        return {"status": "timeout", "error": f"wall clock over {timeout:g}s"}
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == SIGXCPU:
        return {"status": "timeout", "error": "CPU time limit"}
    try:
        return _parse(b"".join(child["chunks"]), job)
    except ValueError:
        code = os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        return {"status": "crashed", "error": f"sandbox child died (signal/exit {code}) without a result"}


def _run_alone(
    index: int,
    job: dict[str, Any],
    report: dict[str, Any],
    devnull: int,
    opts: dict[str, Any],
    slow_after: float | None,
) -> dict[str, Any]:
    """Run `job` in slot 0 while no other child runs: its result, or, once it has run longer than
    `slow_after`, its state as `_start` gives it (to be served by `_wait` beside the next jobs)."""
    child = _start(index, job, report, devnull, opts, 0)
    if "status" in child:  # fork failed
        return child
    read_fd, started, chunks = child["fd"], child["started"], child["chunks"]
    timeout, limit = opts["timeout"], 64 * 1024 + 64 * opts["max_chars"]
    until = started + (timeout if slow_after is None else min(slow_after, timeout))
    size = 0
    while True:
        left = until - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([read_fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(read_fd, 65536)
        size += len(chunk)
        if not chunk or size > limit:
            return _finish(child, job, False, timeout)
        chunks.append(chunk)
    if slow_after is None or slow_after >= timeout:
        return _finish(child, job, True, timeout)
    child["size"] = size
    return child


def _wait(
    running: dict[int, dict[str, Any]],
    jobs: list[dict[str, Any]],
    results: list[Any],
    opts: dict[str, Any],
    until: float | None = None,
) -> None:
    """Serve the running children (read, reap, time out) until one is done or the clock reaches
    `until`. Lean on purpose: every page the zygote writes after a fork is a fault of its own."""
    timeout, limit = opts["timeout"], 64 * 1024 + 64 * opts["max_chars"]
    while True:
        now = time.monotonic()
        oldest = min(child["started"] for child in running.values())
        wake = oldest + timeout if until is None else min(oldest + timeout, until)
        if wake <= now:
            if until is not None and until <= now < oldest + timeout:
                return
            fd = next(fd for fd, child in running.items() if child["started"] == oldest)
            child = running.pop(fd)
            results[child["index"]] = _finish(child, jobs[child["index"]], True, timeout)
            return
        ready, _, _ = select.select(list(running), [], [], wake - now)
        for fd in ready:
            child = running[fd]
            chunk = os.read(fd, 65536)
            child["size"] += len(chunk)
            if chunk and child["size"] <= limit:
                child["chunks"].append(chunk)
                continue
            del running[fd]  # EOF, or more than `limit` bytes (garbage: parsed as far as read, fails)
            results[child["index"]] = _finish(child, jobs[child["index"]], False, timeout)
            return


def _run_batch(
    jobs: list[dict[str, Any]], report: dict[str, Any], devnull: int, opts: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every job in its own fresh fork, results in job order.

    One child at a time, except that a child running past SLOW_AFTER_S (a program heading for its
    timeout) stops holding up the jobs behind it: up to MAX_SLOW such children run on beside the
    next one, each under its own sandbox uid (`slot`), so concurrent siblings never share a uid.
    A repeat (`skip_after_failure`) whose first run is still going is taken up later."""
    results: list[Any] = [None] * len(jobs)
    queue, running, waiting = list(range(len(jobs))), {}, 0  # running: result fd -> child state
    while queue or running:
        if not queue or len(running) > MAX_SLOW or waiting >= len(queue):
            _wait(running, jobs, results, opts)  # nothing may start: wait for a child to finish
            waiting = 0
            continue
        index = queue.pop(0)
        job = jobs[index]
        if job.get("skip_after_failure"):
            if results[index - 1] is None:  # its first run is still going
                queue.append(index)
                waiting += 1
                continue
            if not _succeeded(results[index - 1]):
                results[index] = {"status": "skipped", "error": "an earlier run failed"}
                continue
        waiting = 0
        if not running:  # the common case, kept as lean as the zygote's loop before slow children
            outcome = _run_alone(index, job, report, devnull, opts, SLOW_AFTER_S if queue else None)
            if "pid" in outcome:
                running[outcome["fd"]] = outcome
            else:
                results[index] = outcome
            continue
        slot = min(set(range(MAX_SLOW + 1)) - {c["slot"] for c in running.values()})
        child = _start(index, job, report, devnull, opts, slot)
        if "pid" not in child:
            results[index] = child
            continue
        running[child["fd"]] = child
        # Wait for this child, but past SLOW_AFTER_S go on with the next job (if there is one).
        until = child["started"] + SLOW_AFTER_S if queue else None
        while child["fd"] in running and results[index] is None:
            _wait(running, jobs, results, opts, until)
            if until is not None and time.monotonic() >= until:
                break
    return results


def _succeeded(result: dict[str, Any]) -> bool:
    outcomes = result.get("outcomes") or [{}]
    return result["status"] == "ok" and all(o.get("status") == "ok" for o in outcomes)


def _read_exact(n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = os.read(0, min(n - len(data), 1 << 20))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def _send(message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    os.write(1, struct.pack(">I", len(data)) + data)


def main() -> None:
    jail = sys.argv[1]
    os.environ.pop("LD_BIND_NOW", None)  # done its work at load time; programs see only two variables
    SAFE_MODULES.update(_safe_modules())
    SAFE_BUILTINS.update(_safe_builtins())
    devnull = os.open(os.devnull, os.O_RDWR)
    report = _isolate_zygote(jail)
    gc.collect()
    gc.freeze()  # forked children then share the zygote's pages instead of copying them
    gc.disable()  # the zygote's own garbage is acyclic; each child turns the collector back on
    _send({"hello": report})
    while True:
        try:
            (length,) = struct.unpack(">I", _read_exact(4))
            request = marshal.loads(_read_exact(length))  # noqa: S302 - only the trainer writes stdin
        except EOFError:
            return
        opts = {**request["opts"], "limits": _limits(request["opts"])}
        _send({"id": request["id"], "results": _run_batch(request["jobs"], report, devnull, opts)})
        if gc.get_count()[0] > 50_000:  # collector off (see above): still bound any stray cycles
            gc.collect()


if __name__ == "__main__":
    main()
