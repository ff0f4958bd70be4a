"""Each sandbox layer holds on its own: escapes run with the static check skipped.

These programs reach the real `os` module through `().__class__.__base__.__subclasses__()`, which
the static check would refuse. With the audit hook also switched off (a job flag only tests set),
what is left is the OS jail: chroot into an empty directory, an unprivileged uid, rlimits, a network
namespace, and closed descriptors. Tests skip, naming the layer, where the kernel did not grant it.
"""

from __future__ import annotations

import socket
import textwrap
from typing import Any

import pytest

from flywheel.selfplay import executor

OS = "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0].__init__.__globals__"


def _raw(pool: executor.Pool, body: str, audit: bool = False) -> dict[str, Any]:
    """Run `def f(x): <body>` as f(1), bypassing the static check; the child's outcome dict."""
    code = f"def f(x):\n    os = {OS}\n" + textwrap.indent(textwrap.dedent(body), "    ")
    job = {"code": code, "calls": ["f(1)"], "mode": "value", "audit_hook": audit}
    ((result,),) = pool._execute([[job]])
    assert result["status"] == "ok", result
    (outcome,) = result["outcomes"]
    return dict(outcome)


def _needs(pool: executor.Pool, layer: str) -> None:
    if not pool.isolation.get(layer):
        pytest.skip(f"isolation layer {layer!r} is not available on this kernel/user")


def test_a_slow_child_and_the_next_ones_beside_it_never_share_a_uid(pool: executor.Pool) -> None:
    # The first child outlives SLOW_AFTER_S, so the zygote starts the second beside it.
    _needs(pool, "setuid")
    slow = "n = 0\nwhile n < 3_000_000:\n    n += 1\nreturn os['getuid']()"
    jobs = [
        {
            "code": f"def f(x):\n    os = {OS}\n" + textwrap.indent(body, "    "),
            "calls": ["f(1)"],
            "mode": "value",
            "audit_hook": False,
        }
        for body in (slow, "return os['getuid']()")
    ]
    (results,) = pool._execute([jobs])
    uids = [int(result["outcomes"][0]["repr"]) for result in results]
    assert uids[0] != uids[1] and all(60000 <= uid < 65000 for uid in uids), uids


def test_runs_as_an_unprivileged_uid(pool: executor.Pool) -> None:
    _needs(pool, "setuid")
    outcome = _raw(pool, "return [os['getuid'](), os['geteuid'](), os['getgid']()]")
    assert outcome["status"] == "ok"
    uid, euid, gid = eval(outcome["repr"])
    assert uid == euid == gid and 60000 <= uid < 65000  # one uid per worker, never root


def test_filesystem_is_an_empty_read_only_root(pool: executor.Pool, tmp_path: Any) -> None:
    _needs(pool, "chroot")
    assert _raw(pool, "return os['listdir']('/')") == {"status": "ok", "repr": "[]"}
    read = _raw(pool, "return os['open']('/etc/passwd', 0)")
    assert read["status"] == "error" and "FileNotFoundError" in read["error"]
    host_dir = tmp_path / "open"
    host_dir.mkdir(mode=0o777)
    host_dir.chmod(0o777)
    write_host = _raw(pool, f"return os['open']('{host_dir}/pwned', os['O_CREAT'] | os['O_WRONLY'], 0o666)")
    assert write_host["status"] == "error"
    assert list(host_dir.iterdir()) == []
    write_root = _raw(pool, "return os['open']('/pwned', os['O_CREAT'] | os['O_WRONLY'], 0o666)")
    assert write_root["status"] == "error" and "PermissionError" in write_root["error"]
    assert sorted(__import__("os").listdir(pool.jail)) == []


def test_cannot_fork(pool: executor.Pool) -> None:
    outcome = _raw(pool, "return os['fork']()")
    assert outcome["status"] == "error" and "BlockingIOError" in outcome["error"]
    system = _raw(pool, "return os['system']('true')")
    assert system != {"status": "ok", "repr": "0"}  # no process could start


def test_cannot_signal_the_zygote(pool: executor.Pool) -> None:
    _needs(pool, "setuid")
    before, replaced = pool.worker_pids, pool.replaced
    outcome = _raw(pool, "return os['kill'](os['getppid'](), 9)")
    assert outcome["status"] == "error" and "PermissionError" in outcome["error"]
    assert pool.worker_pids == before and pool.replaced == replaced


def test_cannot_raise_its_rlimits(pool: executor.Pool) -> None:
    outcome = _raw(
        pool,
        """
        resource = os['sys'].modules['resource']
        resource.setrlimit(resource.RLIMIT_NPROC, (100, 100))
        return 'raised'
        """,
    )
    assert outcome["status"] == "error" and "ValueError" in outcome["error"]
    memory = _raw(pool, "return len(bytearray(400 * 2 ** 20))")  # the pool allows 256 MB
    assert memory["status"] == "error" and "MemoryError" in memory["error"]


def test_sees_no_environment_and_no_inherited_descriptors(pool: executor.Pool) -> None:
    environ = _raw(pool, "return sorted(os['environ'])")
    assert environ == {"status": "ok", "repr": "['LC_ALL', 'PYTHONHASHSEED']"}
    fds = _raw(
        pool,
        """
        open_fds = []
        for fd in range(256):
            try:
                os['fstat'](fd)
                open_fds.append(fd)
            except OSError:
                pass
        return open_fds
        """,
    )
    assert fds["status"] == "ok"
    assert len(eval(fds["repr"])) == 4  # stdin/stdout/stderr on /dev/null + the result pipe


def test_has_no_network(pool: executor.Pool) -> None:
    _needs(pool, "netns")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        # libc through the worker's own ctypes handle, since `socket` cannot be imported in the jail.
        outcome = _raw(
            pool,
            f"""
            libc = print.__globals__['LIBC']
            fd = libc.socket(2, 1, 0)
            addr = bytes([2, 0, {port >> 8}, {port & 255}, 127, 0, 0, 1]) + bytes(8)
            return [fd >= 0, libc.connect(fd, addr, 16)]
            """,
        )
        assert outcome == {"status": "ok", "repr": "[True, -1]"}  # a socket, but nowhere to connect
        with pytest.raises(TimeoutError):
            server.accept()


def test_audit_hook_alone_blocks_escapes(pool: executor.Pool) -> None:
    for body, event in [
        ("return os['system']('true')", "os.system"),
        ("return os['listdir']('/')", "os.listdir"),
        ("return os['fork']()", "os.fork"),
        ("return print.__globals__['LIBC'].getpid()", "ctypes."),
        ("g = (i for i in [1])\nreturn str(g.gi_frame)", "object.__getattr__"),
        ("r = os['sys'].modules['resource']\nreturn r.setrlimit(9, (1, 1))", "resource."),
    ]:
        outcome = _raw(pool, body, audit=True)
        assert outcome["status"] == "error", body
        assert f"sandbox: {event}" in outcome["error"], outcome
