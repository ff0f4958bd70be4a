"""Each sandbox layer holds on its own: escapes run with the static check and audit hook skipped.

These programs reach the real `os` module through `().__class__.__base__.__subclasses__()`, which
the static check would refuse; the audit hook is switched off (a job flag only tests set). Each
pool below keeps ONE kernel layer (the others are switched off with `disable`), so a test fails
when that layer stops holding, not when another one happens to cover for it. Layers the kernel
did not grant here (a user namespace, say) skip, naming the layer; the seccomp filter, which the
pool refuses to start without, never skips.
"""

from __future__ import annotations

import platform
import socket
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from flywheel.selfplay import executor

OS = "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0].__init__.__globals__"
CTYPES = "ct = os['sys'].modules['ctypes']\nlibc = ct.CDLL(None, use_errno=True)\n"
FUTEX = 202 if platform.machine() == "x86_64" else 98
ALL_BUT = {
    "seccomp": ["namespaces", "chroot", "setuid", "landlock"],
    "landlock": ["namespaces", "chroot", "setuid", "seccomp"],
    "namespaces": ["chroot", "setuid", "landlock", "seccomp"],
    "chroot": ["namespaces", "setuid", "landlock", "seccomp"],
    "setuid": ["namespaces", "chroot", "landlock", "seccomp"],
    "nothing": ["namespaces", "chroot", "setuid", "landlock", "seccomp"],
}


@pytest.fixture(scope="module")
def layer_pools() -> Iterator[dict[str, executor.Pool]]:
    pools: dict[str, executor.Pool] = {}
    try:
        for layer, disable in ALL_BUT.items():
            with pytest.warns(RuntimeWarning) if "seccomp" in disable else _nothing():
                pools[layer] = executor.Pool(
                    workers=1,
                    timeout_s=2.0,
                    memory_mb=256,
                    disable=disable,
                    allow_unconfined="seccomp" in disable,
                )
        yield pools
    finally:
        for pool in pools.values():
            pool.close()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _raw(pool: executor.Pool, body: str, audit: bool = False) -> executor.ExecResult:
    """Run `def f(x): <body>` as f(1), bypassing the static check; the trainer's verdict."""
    code = f"def f(x):\n    os = {OS}\n" + textwrap.indent(textwrap.dedent(body), "    ")
    job = {"code": code, "call": "f(1)", "cap": 400, "audit_hook": audit}
    ((result,),) = pool._execute([[job]])
    return executor.pool._parsed(result, 400)[0]


def _connect_loopback(pool: executor.Pool, port: int) -> executor.ExecResult:
    """[socket made, connect's result, errno] for a TCP connect to 127.0.0.1:port from a child.
    fd 0 is closed first: RLIMIT_NOFILE leaves no room for a new descriptor otherwise."""
    return _raw(
        pool,
        CTYPES + "os['close'](0)\n"
        f"fd = libc.socket(2, 1, 0)\naddr = bytes([2, 0, {port >> 8}, {port & 255}, 127, 0, 0, 1]) + bytes(8)\n"
        "return [fd >= 0, libc.connect(fd, addr, 16), ct.get_errno()]",
    )


def _needs(pool: executor.Pool, layer: str) -> None:
    if not pool.isolation.get(layer):
        pytest.skip(f"isolation layer {layer!r} is not available on this kernel/user")


SECCOMP_DENIES = {
    "open_for_reading": "os['open']('/etc/hostname', os['O_RDONLY'])",
    "open_for_writing": "os['open']('/tmp/flywheel-seccomp-probe', os['O_CREAT'] | os['O_WRONLY'])",
    "stat_a_path": "os['stat']('/')",
    "list_a_directory": "os['listdir']('/')",
    "unlink": "os['unlink']('/tmp/anything')",
    "mkdir": "os['mkdir']('/tmp/flywheel-seccomp-dir')",
    "fork": "os['fork']()",
    "execve": "os['execv']('/bin/true', ['true'])",
    "signal_the_zygote": "os['kill'](os['getppid'](), 9)",
    "signal_the_process_group": "os['kill'](0, 0)",
    "write_to_another_descriptor": "os['write'](0, b'x')",
    "dup_a_descriptor": "os['dup'](3)",
    "pipe": "os['pipe']()",
    "socket": CTYPES
    + "assert libc.socket(2, 1, 0) == -1 and ct.get_errno() == 1\nraise PermissionError('socket')",
    "ptrace": CTYPES
    + "assert libc.ptrace(16, 1, 0, 0) == -1 and ct.get_errno() == 1\nraise PermissionError('ptrace')",
    "executable_memory": CTYPES + "libc.mmap.restype = ct.c_void_p\n"
    "assert libc.mmap(None, 4096, 7, 0x22, -1, 0) == ct.c_void_p(-1).value and ct.get_errno() == 1\n"
    "raise PermissionError('mmap')",
    "unshare": CTYPES
    + "assert libc.unshare(0x10000000) == -1 and ct.get_errno() == 1\nraise PermissionError('unshare')",
    "prctl": CTYPES
    + "assert libc.prctl(4, 1, 0, 0, 0) == -1 and ct.get_errno() == 1\nraise PermissionError('prctl')",
    # A shared futex on a page every process maps would be a channel between sandboxed processes.
    "shared_futex": CTYPES + "word = ct.c_int(0)\n"
    f"assert libc.syscall({FUTEX}, ct.byref(word), 1, 1, 0, 0, 0) == -1 and ct.get_errno() == 1\n"
    f"assert libc.syscall({FUTEX}, ct.byref(word), 129, 1, 0, 0, 0) == 0  # a private wake is fine\n"
    "raise PermissionError('futex')",
}


@pytest.mark.parametrize("call", list(SECCOMP_DENIES.values()), ids=list(SECCOMP_DENIES))
def test_the_seccomp_filter_alone_denies(layer_pools: dict[str, executor.Pool], call: str) -> None:
    pool = layer_pools["seccomp"]
    assert pool.isolation["seccomp"] is True  # never skipped: the pool refuses to start without it
    before = pool.worker_pids
    result = _raw(pool, call)
    assert result.kind == "error" and "PermissionError" in (result.error or ""), result
    assert pool.worker_pids == before and pool.run_program("def f(x):\n    return x", "3").output_repr == "3"


def test_under_seccomp_a_child_still_computes_allocates_and_answers(
    layer_pools: dict[str, executor.Pool],
) -> None:
    result = _raw(
        layer_pools["seccomp"],
        "return [len(bytearray(50 * 2 ** 20)), sorted({3, 1, 2}), str(os['getpid']() > 0)]",
    )
    assert result.ok and result.output_repr == "[52428800, [1, 2, 3], 'True']", result


def test_landlock_alone_denies_files_and_tcp(layer_pools: dict[str, executor.Pool]) -> None:
    pool = layer_pools["landlock"]
    _needs(pool, "landlock")
    # fd 0 (/dev/null) is closed first: RLIMIT_NOFILE leaves a child no room for a new descriptor,
    # and this test is about what Landlock refuses once there is room.
    for call in (
        "os['close'](0)\nos['open']('/etc/hostname', os['O_RDONLY'])",
        "os['close'](0)\nos['listdir']('/')",
        "os['mkdir']('/tmp/flywheel-ll')",
    ):
        result = _raw(pool, call)
        assert result.kind == "error" and "PermissionError" in (result.error or ""), (call, result)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        connect = _connect_loopback(pool, port)
        assert connect.ok and connect.output_repr == "[True, -1, 13]", connect  # EACCES from Landlock


def test_network_namespace_alone_has_nowhere_to_connect(layer_pools: dict[str, executor.Pool]) -> None:
    pool = layer_pools["namespaces"]
    _needs(pool, "netns")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        outcome = _connect_loopback(pool, port)
        assert outcome.ok and eval(outcome.output_repr or "")[:2] == [True, -1]  # a socket, nowhere to go
        with pytest.raises(TimeoutError):
            server.accept()


def test_chroot_alone_shows_an_empty_read_only_root(
    layer_pools: dict[str, executor.Pool], tmp_path: Any
) -> None:
    pool = layer_pools["chroot"]
    _needs(pool, "chroot")
    assert _raw(pool, "os['close'](0)\nreturn os['listdir']('/')").output_repr == "[]"
    read = _raw(pool, "os['close'](0)\nreturn os['open']('/etc/passwd', 0)")
    assert read.kind == "error" and "FileNotFoundError" in (read.error or "")
    assert __import__("os").listdir(pool.jail) == []


def test_root_children_run_as_sandbox_uids_never_shared_by_concurrent_siblings(
    layer_pools: dict[str, executor.Pool],
) -> None:
    pool = layer_pools["setuid"]
    _needs(pool, "setuid")
    slow = "n = 0\nwhile n < 3_000_000:\n    n += 1\nreturn os['getuid']()"
    jobs = [
        {
            "code": f"def f(x):\n    os = {OS}\n" + textwrap.indent(body, "    "),
            "call": "f(1)",
            "cap": 400,
            "audit_hook": False,
        }
        for body in (slow, "return os['getuid']()")
    ]
    (results,) = pool._execute([jobs])  # the first outlives SLOW_AFTER_S: the second starts beside it
    uids = [int(executor.pool._parsed(result, 400)[0].output_repr or "-1") for result in results]
    assert uids[0] != uids[1] and all(60000 <= uid < 65000 for uid in uids), uids
    fork = _raw(pool, "return os['fork']()")  # RLIMIT_NPROC 0 holds for a non-root uid
    assert fork.kind == "error" and "BlockingIOError" in (fork.error or "")


def test_a_child_sees_no_environment_and_only_its_own_descriptors(
    layer_pools: dict[str, executor.Pool],
) -> None:
    pool = layer_pools["nothing"]  # fstat itself is refused under seccomp
    assert _raw(pool, "return sorted(os['environ'])").output_repr == "['LC_ALL', 'PYTHONHASHSEED']"
    fds = _raw(
        pool,
        """
        open_fds = []
        for fd in range(64):
            try:
                os['fstat'](fd)
                open_fds.append(fd)
            except OSError:
                pass
        return open_fds
        """,
    )
    assert fds.output_repr == "[0, 1, 2, 3]"  # /dev/null on 0-2 and the result pipe


def test_the_audit_hook_alone_blocks_escapes(layer_pools: dict[str, executor.Pool]) -> None:
    pool = layer_pools["nothing"]
    assert pool.isolation["seccomp"] is False  # opted out for this test only
    for body, event in [
        ("return os['system']('true')", "os.system"),
        ("return os['listdir']('/')", "os.listdir"),
        ("return os['fork']()", "os.fork"),
        ("return os['sys'].modules['ctypes'].CDLL(None).getpid()", "ctypes."),
        ("r = os['sys'].modules['resource']\nreturn r.setrlimit(9, (1, 1))", "resource."),
    ]:
        outcome = _raw(pool, body, audit=True)
        assert outcome.kind == "error", body
        assert f"sandbox: {event}" in (outcome.error or ""), outcome


def test_the_pool_refuses_to_run_without_seccomp_unless_told_to() -> None:
    with pytest.raises(ValueError, match="allow_unconfined"):
        executor.Pool(disable=["seccomp"])
    with pytest.raises(ValueError, match="unknown layers"):
        executor.Pool(disable=["audit"])
    with (
        executor.Pool(workers=1) as pool,
        pytest.raises(executor.SandboxUnavailable, match=r"'seccomp'.*FLYWHEEL_SANDBOX_UNCONFINED=1"),
    ):
        pool._checked({"seccomp": False, "landlock": 0})
