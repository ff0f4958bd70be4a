"""Sandbox zygote: a tiny stdlib-only process that forks one jailed child per execution.

Problem: model-written programs must run thousands of times per step without touching the host,
also in the shipped pod, where the process is not root and holds no capability. Started by
`pool.Pool` as `python -s -S -P -B _worker.py JAIL_DIR` with a clean environment and a pipe
protocol on stdin/stdout (4-byte big-endian length + body): requests from the trainer are `marshal`
(trusted: only the trainer writes stdin; each program arrives already compiled), answers are JSON.
This file imports nothing from flywheel: the process that forks untrusted children holds only the
standard library and its two sibling modules (`_kernel`, `_namespace`), loaded by path.

Once, at start: pre-import the allowed modules (so no child ever needs a file), set
no-new-privileges and not-dumpable, enter new user/network/IPC/UTS namespaces where the kernel
allows it, chroot into an empty directory where it can, restrict itself with Landlock (no file
access at all, no TCP, no signals out of the domain) where the kernel has it, and fork one probe
child that checks the seccomp filter really denies what it should. Per execution: fork; the child
drops to a sandbox uid (root only), sets rlimits, keeps only /dev/null on 0-2 and its result pipe
on 3, installs the seccomp allow-list (`_kernel`), runs ONE call of the program in a fresh
namespace and writes one length-prefixed text frame: its status and the repr of its value.

The child decides nothing: expected outputs never enter the zygote, and the trainer parses the
frame as untrusted text (cap, literal parse, comparison). A program that escapes every in-process
layer can still only compute, allocate within its rlimit, write to its own result pipe and exit.

Why the child does so little: after a fork every page it writes is a copy-on-write fault, and a
child's cost is mostly those faults. So the trainer compiles, the trainer checks the literal, and
the first call uses the pristine builtins table of the fresh fork itself. See bench/executor.py.
"""

import contextlib
import ctypes
import errno
import fcntl
import gc
import json
import marshal
import math
import mmap
import os
import resource
import select
import signal
import struct
import sys
import time
from typing import Any

if not __package__:  # run as a script (-P: its folder is not on sys.path), or profiled by the bench
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _kernel
    import _namespace
else:
    from flywheel.selfplay.executor import _kernel, _namespace

LITERAL_TYPES = (int, float, complex, str, bytes, bool, type(None), list, tuple, dict, set, frozenset)
# Audit events refused in the child: a filter for clear error messages; the boundary is seccomp.
BLOCKED_EVENTS = (
    "open", "os.", "subprocess.", "socket.", "ctypes.", "import", "sys.settrace", "sys.setprofile",
    "sys._current_frames", "sys.addaudithook", "code.__new__",
    "function.__new__", "marshal.", "pickle.", "shutil.", "tempfile.", "mmap.", "fcntl.", "resource.",
    "signal.", "_thread.", "syslog.", "urllib.", "http.", "builtins.input", "sys.unraisablehook",
    "cpython.", "gc.",
)  # fmt: skip
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
MAX_ERROR_CHARS = 300
# A child still running after SLOW_AFTER_S is most likely heading for its timeout: the next jobs of
# the batch start beside it (up to MAX_SLOW such children at once) instead of waiting behind it.
SLOW_AFTER_S = 0.05
MAX_SLOW = 2
SIGKILL = int(signal.SIGKILL)  # a plain int: ctypes converts an IntEnum the slow way, in every fork
SIGXCPU = int(signal.SIGXCPU)

SAFE_MODULES: dict[str, Any] = {}  # filled in main(): importing this file must stay cheap
SAFE_BUILTINS: dict[str, Any] = {}
LIBC = ctypes.CDLL(None, use_errno=True)
SECCOMP: Any = None
PARENT = [0]  # the trainer's pid; a different parent means the trainer died
POLL_PARENT_S = 0.25
# Fixed buffers: a job's code and a child's answer pass through these and are zeroed after use,
# so no fork ever inherits another execution's program, input or output (a child can read all of
# its own memory; seccomp cannot stop that).
MAX_CHARS = 50_000  # the most repr characters a job may ask for (the trainer caps it too)
JOB_BYTES = 1 << 20  # the largest compiled program a job may carry (the trainer checks first)
OUT_BYTES = 4 * MAX_CHARS + 64 + 1
PIPE_BYTES = 1 << 18  # > OUT_BYTES, <= the unprivileged pipe-max-size (1 MiB)
F_SETPIPE_SZ = 1031
# Private anonymous mappings, not heap: untouched pages cost nothing, and a fork copies only what
# was used. Private, never shared (mmap's default): a child must not see the zygote zero its buffer
# after the fork, nor write into the buffers where its siblings' answers arrive.
_PRIVATE = {"flags": mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS}
JOB = mmap.mmap(-1, JOB_BYTES, **_PRIVATE)
JOB_VIEW = memoryview(JOB)
OUTS = [mmap.mmap(-1, OUT_BYTES, **_PRIVATE) for _ in range(MAX_SLOW + 1)]
OUT_VIEWS = [memoryview(out) for out in OUTS]
ZEROS = memoryview(mmap.mmap(-1, max(JOB_BYTES, OUT_BYTES), **_PRIVATE))  # never written


def _zero(view: memoryview, size: int) -> None:
    view[:size] = ZEROS[:size]


def _audit_hook(blocked: tuple[str, ...]) -> Any:
    """The hook closes over its own tuple: no module global a program could rebind."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event.startswith(blocked):
            raise RuntimeError(f"sandbox: {event} is not allowed")

    return hook


AUDIT = _audit_hook(BLOCKED_EVENTS)


def _isolate_zygote(jail: str, disable: list[str]) -> dict[str, Any]:
    """One-time isolation of the zygote itself; each step reports whether the kernel allowed it."""
    root = os.getuid() == 0
    report: dict[str, Any] = {"uid": os.getuid()}
    report["no_new_privs"] = _kernel.no_new_privs(LIBC)
    report["not_dumpable"] = LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    namespaces = {"userns": False, "netns": False}
    if "namespaces" not in disable:
        namespaces = _kernel.unshare(LIBC, root)
    report.update(namespaces)
    report["chroot"] = False
    if "chroot" not in disable:
        try:  # needs root, or the capability a new user namespace grants inside it
            os.chroot(jail)
            os.chdir("/")
            report["chroot"] = True
        except OSError:
            pass
    if not report["chroot"]:
        os.chdir(jail)
    report["setuid"] = root and "setuid" not in disable
    # One uid per concurrent child slot (see _run_batch), distinct across the pool's zygotes, and
    # below 65000: container user namespaces often map only 16-bit uids.
    base = 60000 + (os.getpid() % (5000 // (MAX_SLOW + 1))) * (MAX_SLOW + 1)
    report["sandbox_uid"] = base if report["setuid"] else os.getuid()
    report["landlock"] = 0 if "landlock" in disable else _kernel.landlock(LIBC)
    report["seccomp"] = False if "seccomp" in disable else _probe_seccomp(report)
    report["rlimits"] = True
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
        (resource.RLIMIT_NOFILE, (_kernel.RESULT_FD + 1, _kernel.RESULT_FD + 1)),
    ]


def _jail_child(
    report: dict[str, Any],
    result_fd: int,
    devnull: int,
    limits: list[tuple[int, tuple[int, int]]],
    slot: int,
    zygote: int,
) -> None:
    """Everything before untrusted code runs, in the child: /dev/null on 0-2, the result pipe on 3
    and nothing else, a sandbox uid (root only), rlimits, then the seccomp filter last."""
    dup2 = os.dup2
    dup2(devnull, 0)
    dup2(devnull, 1)
    dup2(devnull, 2)
    if result_fd != _kernel.RESULT_FD:
        dup2(result_fd, _kernel.RESULT_FD)
    os.closerange(_kernel.RESULT_FD + 1, 65536)
    if report["setuid"]:
        uid = report["sandbox_uid"] + slot
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    # After the uid change, which clears it; and the zygote may have died before it was set.
    LIBC.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    if os.getppid() != zygote:
        os._exit(1)
    setrlimit = resource.setrlimit
    for which, pair in limits:
        setrlimit(which, pair)
    sys.setrecursionlimit(3000)


def _seal(report: dict[str, Any]) -> None:
    """Install the seccomp allow-list; a child whose filter the kernel refused must not run code."""
    if report["seccomp"] and not SECCOMP.install():
        raise RuntimeError("sandbox: the kernel refused the seccomp filter")


def _shape(value: Any, budget: int) -> str:
    """ "ok", "not_literal" or "too_long" for a return value, without building a huge repr first.

    Only exact literal types pass (a subclass could lie in __repr__). Every element costs at least
    one character of repr, so more than `budget` elements is too long already."""
    stack, seen = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        kind = type(item)
        if depth > 50 or kind not in LITERAL_TYPES:
            return "not_literal"
        if seen > budget or (kind in (str, bytes, list, tuple, set, frozenset, dict) and len(item) > budget):
            return "too_long"
        if kind is int and item.bit_length() > 4 * budget:
            return "too_long"
        if kind is dict:
            stack.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif kind in (list, tuple, set, frozenset):
            stack.extend((part, depth + 1) for part in item)
    return "ok"


def _describe(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:
        text = type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def _literal_result(value: Any, max_chars: int) -> tuple[str, str]:
    """(status, repr or error) for a return value; exact literal types only, repr capped. The
    trainer parses the repr again (it trusts nothing a child says): this only saves a huge repr."""
    shape = _shape(value, max_chars)
    if shape == "not_literal":
        return "not_literal", f"returned a {type(value).__name__}, not a plain literal"
    if shape == "too_long":
        return "output_too_long", f"output repr has more than {max_chars} chars"
    text = repr(value)
    if len(text) > max_chars:
        return "output_too_long", f"output repr has {len(text)} > {max_chars} chars"
    return "ok", text


def _run_one(blob: bytes, audit: bool, max_chars: int, report: dict[str, Any]) -> tuple[str, str]:
    """Inside the jailed child: one call of the program in a fresh namespace; (status, payload)."""
    # Trusted bytes: the trainer marshalled its own compile() output and the input's literal values.
    # Before the audit hook (which bans marshal).
    code, args, kwargs = marshal.loads(blob)  # noqa: S302
    program = marshal.loads(code)  # noqa: S302
    del blob, code
    _seal(report)
    if audit:  # only the jail tests turn it off, to test the kernel layers alone
        sys.addaudithook(AUDIT)
    gc.enable()
    namespace: dict[str, Any] = {"__builtins__": SAFE_BUILTINS, "__name__": "__sandbox__"}
    try:
        exec(program, namespace)
        value = namespace["f"](*args, **kwargs)
        return _literal_result(value, max_chars)
    except BaseException as exc:  # the program's own failure: report, never crash the child
        return "error", _describe(exc)


def _frame(status: str, payload: str) -> bytes:
    body = (status + "\0" + payload).encode("utf-8", "backslashreplace")
    return struct.pack(">I", len(body)) + body


def _child(
    job: Any, size: int, report: dict[str, Any], write_fd: int, devnull: int, opts: dict[str, Any], slot: int
) -> None:
    try:
        blob = bytes(JOB_VIEW[:size])  # this child's own copy; the zygote zeroes its buffer
        _jail_child(report, write_fd, devnull, opts["limits"], slot, opts["zygote"])
        data = _frame(*_run_one(blob, job[2], job[1], report))
    except BaseException as exc:
        try:
            data = _frame("error", _describe(exc))
        except BaseException:
            data = _frame("error", "the sandbox child failed to report")
    view = memoryview(data)
    while view:
        view = view[os.write(_kernel.RESULT_FD, view) :]
    os._exit(0)


def _limit(job: Any) -> int:
    """Bytes a child of this job may write: its frame holds at most max_chars characters of repr,
    each at most 4 bytes of UTF-8 (or an error message)."""
    return 4 * max(int(job[1]), MAX_ERROR_CHARS) + 64


def _read_blob(size: int) -> None:
    """The next job's marshalled code from stdin into JOB (never into a Python bytes object here)."""
    done = 0
    while done < size:
        got = os.readv(0, [JOB_VIEW[done:size]])
        if not got:
            raise EOFError
        done += got


def _start(
    index: int, job: Any, report: dict[str, Any], devnull: int, opts: dict[str, Any], slot: int
) -> dict[str, Any]:
    """Fork one jailed child for `job` (its code read from stdin just now): its state, or None
    after the `crashed` result was sent (fork failed)."""
    size = job[0]
    _read_blob(size)
    read_fd, write_fd = os.pipe()
    # Room for a whole answer: the child never waits for the zygote to read. A user over its pipe
    # quota keeps the default size; a larger answer then blocks and times out.
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_fd, F_SETPIPE_SZ, PIPE_BYTES)
    try:
        pid = os.fork()
    except OSError as exc:
        _zero(JOB_VIEW, size)
        os.close(read_fd)
        os.close(write_fd)
        _result(b"X", index, 0, f"fork failed: {errno.errorcode.get(exc.errno or 0, str(exc))}".encode())
        return {}
    if pid == 0:
        os.close(read_fd)
        _child(job, size, report, write_fd, devnull, opts, slot)
    _zero(JOB_VIEW, size)  # later children must not find this program in their copy
    os.close(write_fd)
    now = time.monotonic()
    return {
        "pid": pid,
        "fd": os.pidfd_open(pid),  # readable once the child has exited
        "pipe": read_fd,
        "index": index,
        "slot": slot,
        "started": now,
        "size": 0,
        "limit": _limit(job),
    }


def _result(kind: bytes, index: int, code: int, payload: Any) -> None:
    """One result message to the trainer: >I length, kind (D done, T timeout, X crashed), >I job
    index, >i exit code, then the payload (for D, the child's raw bytes, which the trainer parses)."""
    header = struct.pack(">IcIi", 9 + len(payload), kind, index, code)
    data = [header, payload]
    while data:
        sent = os.writev(1, data)
        while data and sent >= len(data[0]):
            sent -= len(data[0])
            data.pop(0)
        if data:
            data[0] = memoryview(data[0])[sent:]


def _finish(child: dict[str, Any], timed_out: bool, timeout: float) -> None:
    """SIGKILL and reap a child (whatever it is doing) and send what it wrote, unread, to the
    trainer; then zero the slot's buffer (see the module docstring: the zygote keeps nothing).

    try/except and plain-int signals rather than contextlib.suppress and signal's enums: each
    object the zygote touches between forks is a page fault of its own (bench --profile)."""
    try:  # noqa: SIM105 - see the docstring
        os.kill(child["pid"], SIGKILL)
    except ProcessLookupError:
        pass
    _, status = os.waitpid(child["pid"], 0)
    if not timed_out:
        _drain(child)
    os.close(child["fd"])
    os.close(child["pipe"])
    index, slot, size = child["index"], child["slot"], child["size"]
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    if timed_out:
        _result(b"T", index, code, f"wall clock over {timeout:g}s".encode())
    elif os.WIFSIGNALED(status) and os.WTERMSIG(status) == SIGXCPU:
        _result(b"T", index, code, b"CPU time limit")
    elif size > child["limit"]:
        _result(b"X", index, code, b"sandbox child wrote more than its output cap")
    else:
        _result(b"D", index, code, OUT_VIEWS[slot][:size])
    _zero(OUT_VIEWS[slot], min(size, OUT_BYTES))


def _drain(child: dict[str, Any]) -> None:
    """Read what an exited child wrote into its slot's buffer, up to one byte past its limit.

    Only after the child exited: while a child runs, its answer stays in the pipe, so a sibling
    forked meanwhile finds nothing of it in its copy of the zygote."""
    limit, view = child["limit"], OUT_VIEWS[child["slot"]]
    while child["size"] <= limit:
        got: int = os.readv(child["pipe"], [view[child["size"] : limit + 1]])
        if not got:
            return
        child["size"] += got


def _orphaned() -> bool:
    """The trainer died: the zygote and its children go too (a stdin EOF comes only between batches)."""
    return os.getppid() != PARENT[0]


def _run_alone(
    index: int, job: Any, report: dict[str, Any], devnull: int, opts: dict[str, Any], slow_after: float | None
) -> dict[str, Any] | None:
    """Run `job` in slot 0 while no other child runs; None once its result is sent, or, once it
    has run longer than `slow_after`, its state (to be served by `_wait` beside the next jobs)."""
    child = _start(index, job, report, devnull, opts, 0)
    if not child:  # fork failed
        return None
    exited, started = child["fd"], child["started"]
    timeout = opts["timeout"]
    until = started + (timeout if slow_after is None else min(slow_after, timeout))
    while True:
        left = until - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([exited], [], [], min(left, POLL_PARENT_S))
        if not ready:
            if _orphaned():
                os._exit(1)
            continue
        _finish(child, False, timeout)
        return None
    if slow_after is None or slow_after >= timeout:
        _finish(child, True, timeout)
        return None
    return child


def _wait(running: dict[int, dict[str, Any]], opts: dict[str, Any], until: float | None = None) -> bool:
    """Serve the running children (read, reap, time out) until one is done (True) or the clock
    reaches `until` (False). Lean on purpose: every page the zygote writes after a fork is a fault."""
    timeout = opts["timeout"]
    while True:
        now = time.monotonic()
        oldest = min(child["started"] for child in running.values())
        wake = oldest + timeout if until is None else min(oldest + timeout, until)
        if wake <= now:
            if until is not None and until <= now < oldest + timeout:
                return False
            fd = next(fd for fd, child in running.items() if child["started"] == oldest)
            _finish(running.pop(fd), True, timeout)
            return True
        ready, _, _ = select.select(list(running), [], [], min(wake - now, POLL_PARENT_S))
        if not ready and _orphaned():
            os._exit(1)
        for fd in ready:  # exited
            _finish(running.pop(fd), False, timeout)
            return True


def _run_batch(jobs: list[Any], report: dict[str, Any], devnull: int, opts: dict[str, Any]) -> None:
    """Every job in its own fresh fork, in job order; each result is sent as it comes.

    One child at a time, except that a child running past SLOW_AFTER_S (a program heading for its
    timeout) stops holding up the jobs behind it: up to MAX_SLOW such children run on beside the
    next one, each under its own sandbox uid (`slot`), so concurrent siblings never share a uid."""
    queue = list(range(len(jobs)))
    running: dict[int, dict[str, Any]] = {}  # pidfd -> child state
    while queue or running:
        if not queue or len(running) > MAX_SLOW:
            _wait(running, opts)  # nothing may start: wait for a child to finish
            continue
        index = queue.pop(0)
        if not running:  # the common case, kept as lean as the zygote's loop before slow children
            child = _run_alone(index, jobs[index], report, devnull, opts, SLOW_AFTER_S if queue else None)
            if child:
                running[child["fd"]] = child
            continue
        slot = min(set(range(MAX_SLOW + 1)) - {c["slot"] for c in running.values()})
        child = _start(index, jobs[index], report, devnull, opts, slot)
        if not child:
            continue
        running[child["fd"]] = child
        # Wait for this child, but past SLOW_AFTER_S go on with the next job (if there is one).
        until = child["started"] + SLOW_AFTER_S if queue else None
        while child["fd"] in running:
            if not _wait(running, opts, until) and until is not None:
                break


def _probe_seccomp(report: dict[str, Any]) -> bool:
    """Fork one child that installs the filter and tries what it must not do: True only if the
    kernel took the filter and refused a socket, an open and a signal to the zygote."""
    global SECCOMP
    try:
        SECCOMP = _kernel.Seccomp(LIBC)
    except OSError:
        return False
    zygote = os.getpid()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        verdict = "0"
        try:
            os.dup2(write_fd, _kernel.RESULT_FD)
            if SECCOMP.install():
                socket_fd = LIBC.socket(2, 1, 0)
                denied = socket_fd < 0 and ctypes.get_errno() == errno.EPERM
                try:
                    os.open("/", os.O_RDONLY)
                except PermissionError:
                    pass
                else:
                    denied = False
                try:
                    os.kill(zygote, 0)
                except PermissionError:
                    pass
                else:
                    denied = False
                verdict = "1" if denied else "0"
        finally:
            os.write(_kernel.RESULT_FD, verdict.encode())
            os._exit(0)
    os.close(write_fd)
    answer = os.read(read_fd, 16)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return answer == b"1"


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
    jail, disable = sys.argv[1], sys.argv[2:]
    os.environ.pop("LD_BIND_NOW", None)  # done its work at load time; programs see only two variables
    PARENT[0] = os.getppid()
    modules, table = _namespace.build()
    SAFE_MODULES.update(modules)
    SAFE_BUILTINS.update(table)
    devnull = os.open(os.devnull, os.O_RDWR)
    report = _isolate_zygote(jail, disable)
    gc.collect()
    gc.freeze()  # forked children then share the zygote's pages instead of copying them
    gc.disable()  # the zygote's own garbage is acyclic; each child turns the collector back on
    _send({"hello": {**report, "max_blob": JOB_BYTES, "max_chars": MAX_CHARS}})
    while True:
        try:
            (length,) = struct.unpack(">I", _read_exact(4))
            # Only sizes and options: the programs follow, one blob per job, read as each starts.
            request = marshal.loads(_read_exact(length))  # noqa: S302 - only the trainer writes stdin
            opts = {**request["opts"], "limits": _limits(request["opts"]), "zygote": os.getpid()}
            _run_batch(request["jobs"], report, devnull, opts)
        except EOFError:
            return
        _result(b"E", request["id"], 0, b"")
        if gc.get_count()[0] > 50_000:  # collector off (see above): still bound any stray cycles
            gc.collect()


if __name__ == "__main__":
    main()
