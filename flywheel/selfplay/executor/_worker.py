"""Sandbox zygote: a tiny stdlib-only process that forks one jailed child per execution.

Problem: model-written programs must run thousands of times per step without touching the host.
Started by `pool.Pool` as `python -s -S -P -B _worker.py JAIL_DIR` with a clean environment and a
pipe protocol (4-byte big-endian length + JSON) on stdin/stdout. This file imports nothing from
flywheel on purpose: the process that forks untrusted children holds only the standard library.

Once, at start: pre-import the allowed modules and build filtered copies of them (no sub-modules,
no private names), enter a new network namespace (no interfaces but a down loopback), chroot into
an empty directory, set no-new-privileges. Per execution: fork; the child drops to an unprivileged
uid, sets rlimits (address space, CPU, no files, no forks, no core), closes every inherited file
descriptor, installs an audit hook, execs the program with restricted builtins in a fresh
namespace, and writes one JSON result to a pipe. The zygote enforces the wall clock (SIGKILL).
"""

import ast
import builtins
import contextlib
import ctypes
import errno
import gc
import json
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


def _safe_modules() -> dict[str, Any]:
    """Filtered module copies: public, non-module attributes only (no `typing.sys` detours)."""
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
    report["sandbox_uid"] = 60000 + os.getpid() % 5000 if report["setuid"] else os.getuid()
    return report


def _limit(which: int, value: int, hard: int | None = None) -> None:
    resource.setrlimit(which, (value, value if hard is None else hard))


def _jail_child(report: dict[str, Any], result_fd: int, devnull: int, timeout: float, memory_mb: int) -> None:
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, result_fd)
    os.closerange(result_fd + 1, 4096)
    if report["setuid"]:
        uid = report["sandbox_uid"]
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    _limit(resource.RLIMIT_AS, memory_mb * 1024 * 1024)
    _limit(resource.RLIMIT_CPU, math.ceil(timeout) + 1, math.ceil(timeout) + 2)
    _limit(resource.RLIMIT_FSIZE, 0)
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_NPROC, 0)
    _limit(resource.RLIMIT_NOFILE, result_fd + 1)
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


def _literal_result(value: Any, max_chars: int) -> dict[str, Any]:
    shape = _shape(value, max_chars)
    if shape == "not_literal":
        return {"status": "not_literal", "error": f"returned a {type(value).__name__}, not a plain literal"}
    if shape == "too_long":
        return {"status": "output_too_long", "error": f"output repr has more than {max_chars} chars"}
    text = repr(value)
    if len(text) > max_chars:
        return {"status": "output_too_long", "error": f"output repr has {len(text)} > {max_chars} chars"}
    try:
        ok = ast.literal_eval(text) == value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        ok = False
    if not ok:
        return {"status": "not_literal", "error": "output repr does not round-trip as a literal"}
    return {"status": "ok", "repr": text}


def _run_one(job: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """Inside the jailed child: compile, then run in a fresh namespace per call."""
    program = compile(job["code"], "<program>", "exec")
    calls = [compile(c, "<call>", "eval") for c in job["calls"]]
    expected = [ast.literal_eval(e) for e in job.get("expected", [])]
    if job.get("audit_hook", True):  # only the jail tests turn it off, to test the OS layer alone
        sys.addaudithook(_audit)
    gc.enable()
    outcomes: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        namespace = {"__builtins__": dict[str, Any](SAFE_BUILTINS), "__name__": "__sandbox__"}
        try:
            exec(program, namespace)
            value = eval(call, namespace)
        except BaseException as exc:  # the program's own failure: report, never crash the child
            outcomes.append({"status": "error", "error": _describe(exc)})
            continue
        if job["mode"] == "value":
            outcomes.append(_literal_result(value, max_chars))
        else:
            outcomes.append({"status": "ok", "equal": _plain(value) and expected[index] == value})
    return {"status": "ok", "outcomes": outcomes}


def _child(
    job: dict[str, Any], report: dict[str, Any], write_fd: int, devnull: int, opts: dict[str, Any]
) -> None:
    try:
        _jail_child(report, write_fd, devnull, opts["timeout"], opts["memory_mb"])
        result = _run_one(job, opts["max_chars"])
    except BaseException as exc:
        result = {"status": "error", "error": _describe(exc)}
    try:
        data = json.dumps(result).encode()
    except BaseException as exc:
        data = json.dumps({"status": "error", "error": _describe(exc)}).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(write_fd, view) :]
    os._exit(0)


def _collect(pid: int, read_fd: int, timeout: float, limit: int) -> dict[str, Any]:
    """Read the child's result until EOF or the deadline; SIGKILL and reap it either way."""
    deadline = time.monotonic() + timeout
    chunks, size, timed_out = [], 0, False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([read_fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            break
        chunks.append(chunk)
    os.close(read_fd)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"status": "timeout", "error": f"wall clock over {timeout:g}s"}
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU:
        return {"status": "timeout", "error": "CPU time limit"}
    try:
        result = json.loads(b"".join(chunks))
        if isinstance(result, dict) and isinstance(result.get("status"), str):
            return result
    except ValueError:
        pass
    code = os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return {"status": "crashed", "error": f"sandbox child died (signal/exit {code}) without a result"}


def _execute(
    job: dict[str, Any], report: dict[str, Any], devnull: int, opts: dict[str, Any]
) -> dict[str, Any]:
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        return {"status": "crashed", "error": f"fork failed: {errno.errorcode.get(exc.errno or 0, str(exc))}"}
    if pid == 0:
        os.close(read_fd)
        _child(job, report, write_fd, devnull, opts)
    os.close(write_fd)
    return _collect(pid, read_fd, opts["timeout"], 64 * 1024 + 64 * opts["max_chars"])


def _succeeded(result: dict[str, Any]) -> bool:
    outcomes = result.get("outcomes") or [{}]
    return result["status"] == "ok" and all(o.get("status") == "ok" for o in outcomes)


def _read_exact(n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _send(message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    os.write(1, struct.pack(">I", len(data)) + data)


def main() -> None:
    jail = sys.argv[1]
    SAFE_MODULES.update(_safe_modules())
    SAFE_BUILTINS.update(_safe_builtins())
    devnull = os.open(os.devnull, os.O_RDWR)
    report = _isolate_zygote(jail)
    gc.collect()
    gc.freeze()  # forked children then share the zygote's pages instead of copying them
    _send({"hello": report})
    while True:
        try:
            (length,) = struct.unpack(">I", _read_exact(4))
            request = json.loads(_read_exact(length))
        except EOFError:
            return
        opts = request["opts"]
        results: list[dict[str, Any]] = []
        for job in request["jobs"]:
            if results and job.get("skip_after_failure") and not _succeeded(results[-1]):
                results.append({"status": "skipped", "error": "an earlier run failed"})
                continue
            results.append(_execute(job, report, devnull, opts))
        _send({"id": request["id"], "results": results})


if __name__ == "__main__":
    main()
