"""The kernel-enforced layers of the sandbox: a seccomp-bpf allow-list, Landlock, namespaces.

Problem: inside the shipped pod (non-root, no capabilities, no privilege escalation) a chroot,
a uid switch and a network namespace are all refused, and an in-process Python check can always
be talked around. What the kernel enforces without privilege is a seccomp filter (after
`PR_SET_NO_NEW_PRIVS`) and, where the kernel has it, Landlock; user namespaces come on top where
unprivileged ones are allowed (not under most pods' RuntimeDefault profile). Each function here
reports whether the kernel applied its layer, and never raises for a refusal.

Why a BPF program assembled here rather than libseccomp: the filter is one short allow-list
(computation, memory, writing to the descriptors the child was handed, exiting), so the program
is ~60 instructions that read straight off the list below; it needs no shared library in every
image (the zygote runs `python -S` on the standard library alone), and the same bytes are built
once in the zygote and installed in each fork with a single `prctl`. The tests check the filter
by what it does (hostile programs as a non-root uid), not by what it says.

Standard library only: `_worker.py` imports this file by path (see its docstring).
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from typing import Any

RESULT_FD = 3  # the one descriptor a child may write to besides /dev/null on 1 and 2

# (x86_64, aarch64) numbers of the syscalls a sandboxed child may make. Everything else fails
# with EPERM: open*, socket*, connect, execve*, fork/clone*, kill/tgkill/tkill/pidfd_*, ptrace,
# process_vm_*, unlink*/rename*/mkdir*/chmod*, prctl, seccomp, setrlimit/prlimit64, unshare,
# setns, mount, io_uring_*, bpf, memfd_create, ioctl, *stat* on paths, ...
_ALLOW = {
    "exit": (60, 93),
    "exit_group": (231, 94),
    "rt_sigreturn": (15, 139),
    "restart_syscall": (219, 128),
    "brk": (12, 214),
    "munmap": (11, 215),
    "mremap": (25, 216),
    "madvise": (28, 233),
    "rt_sigprocmask": (14, 135),
    "rt_sigaction": (13, 134),
    "sigaltstack": (131, 132),
    "clock_gettime": (228, 113),
    "clock_getres": (229, 114),
    "gettimeofday": (96, 169),
    "nanosleep": (35, 101),
    "clock_nanosleep": (230, 115),
    "getpid": (39, 172),
    "gettid": (186, 178),
    "getuid": (102, 174),
    "geteuid": (107, 175),
    "getgid": (104, 176),
    "getegid": (108, 177),
    "getrandom": (318, 278),
    "sched_yield": (24, 124),
    "close": (3, 57),
    "fstat": (5, 80),
    "getrusage": (98, 165),
}
# Allowed only on the child's own descriptors (argument 0): /dev/null on 1 and 2, the result pipe.
_WRITE = {"write": (1, 64), "writev": (20, 66)}
# Allowed only without PROT_EXEC (argument 2): no new executable memory, so no injected code.
_NO_EXEC = {"mmap": (9, 222), "mprotect": (10, 226)}
# Allowed only as a private wait or wake (argument 1): a shared futex on a page every process maps
# (libc's) would be a channel between sandboxed processes, namespaces or not.
_FUTEX = {"futex": (202, 98)}
_PRIVATE_FUTEX_OPS = (128, 129, 137, 138, 384, 393)  # WAIT, WAKE, WAIT/WAKE_BITSET | PRIVATE (| REALTIME)
_ARCHES = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
RET_KILL_PROCESS, RET_ERRNO, RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
EPERM, PROT_EXEC, X32_SYSCALL_BIT = 1, 0x4, 0x40000000
# classic BPF opcodes
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_NR, _ARCH, _ARG0_LO, _ARG1_LO, _ARG2_LO = 0, 4, 16, 24, 32

CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS = 0x10000000, 0x40000000, 0x08000000, 0x04000000
_LANDLOCK_CREATE_RULESET, _LANDLOCK_RESTRICT_SELF = 444, 446  # the same number on every arch


class _Filter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


def assemble(machine: str | None = None) -> list[tuple[int, int, int, int]]:
    """The allow-list as classic BPF instructions (code, jt, jf, k) for this (or the named) arch.

    Layout: check the arch (anything else, and x32 calls, kill the process), then one `JEQ` per
    allowed syscall jumping to ALLOW, the fd check or the PROT_EXEC check; the default is EPERM
    (a Python exception in the program, not a dead child)."""
    machine = machine or platform.machine()
    if machine not in _ARCHES:
        raise OSError(f"no seccomp syscall table for {machine}")
    column, audit_arch = _ARCHES[machine]
    plain = sorted(numbers[column] for numbers in _ALLOW.values())
    writes = [numbers[column] for numbers in _WRITE.values()]
    no_exec = [numbers[column] for numbers in _NO_EXEC.values()]
    futex = [numbers[column] for numbers in _FUTEX.values()]
    # Instructions with symbolic targets, resolved once every label's position is known.
    code: list[tuple[int, Any, Any, int]] = [
        (_LD_W_ABS, 0, 0, _ARCH),
        (_JEQ_K, 1, 0, audit_arch),
        (_RET_K, 0, 0, RET_KILL_PROCESS),
        (_LD_W_ABS, 0, 0, _NR),
    ]
    if machine == "x86_64":  # the x32 ABI reuses numbers with this bit set: never allowed
        code += [(_JGE_K, 0, 1, X32_SYSCALL_BIT), (_RET_K, 0, 0, RET_KILL_PROCESS)]
    code += [(_JEQ_K, "allow", 0, nr) for nr in plain]
    code += [(_JEQ_K, "fd", 0, nr) for nr in writes]
    code += [(_JEQ_K, "prot", 0, nr) for nr in no_exec]
    code += [(_JEQ_K, "futex", 0, nr) for nr in futex]
    code.append((_RET_K, 0, 0, RET_ERRNO | EPERM))  # no allowed syscall matched
    labels = {"fd": len(code)}
    code += [
        (_LD_W_ABS, 0, 0, _ARG0_LO),  # fds are `unsigned int`: the kernel reads the low word only
        (_JEQ_K, "allow", 0, 1),
        (_JEQ_K, "allow", 0, 2),
        (_JEQ_K, "allow", "deny", RESULT_FD),
    ]
    labels["prot"] = len(code)
    code += [(_LD_W_ABS, 0, 0, _ARG2_LO), (_JSET_K, "deny", "allow", PROT_EXEC)]
    labels["futex"] = len(code)
    code.append((_LD_W_ABS, 0, 0, _ARG1_LO))
    code += [(_JEQ_K, "allow", 0, op) for op in _PRIVATE_FUTEX_OPS[:-1]]
    code.append((_JEQ_K, "allow", "deny", _PRIVATE_FUTEX_OPS[-1]))
    labels["deny"] = len(code)  # classic BPF jumps forward only: both verdicts come last
    code.append((_RET_K, 0, 0, RET_ERRNO | EPERM))
    labels["allow"] = len(code)
    code.append((_RET_K, 0, 0, RET_ALLOW))

    def target(at: int, jump: Any) -> int:
        offset = labels[jump] - at - 1 if isinstance(jump, str) else jump
        if not 0 <= offset <= 255:
            raise OSError("seccomp program too long for a BPF jump")
        return offset

    return [(op, target(at, jt), target(at, jf), k) for at, (op, jt, jf, k) in enumerate(code)]


class Seccomp:
    """The filter, built once in the zygote; `install()` in each child is a single prctl."""

    def __init__(self, libc: Any) -> None:
        self._libc = libc
        instructions = assemble()
        self._filters = (_Filter * len(instructions))(*(_Filter(*ins) for ins in instructions))
        self._program = _Program(len(instructions), self._filters)
        self._pointer = ctypes.byref(self._program)

    def install(self) -> bool:
        """Needs no_new_privs (set in the zygote, inherited over fork). True if the kernel took it."""
        return bool(self._libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, self._pointer, 0, 0) == 0)


def no_new_privs(libc: Any) -> bool:
    return bool(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)


def unshare(libc: Any, as_root: bool) -> dict[str, bool]:
    """New network, IPC and UTS namespaces; as non-root they need a new user namespace first.

    A pod under RuntimeDefault seccomp usually refuses the user namespace: the layer reports
    False and the seccomp filter alone keeps the child off the network."""
    flags = CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if as_root:
        return {"userns": False, "netns": libc.unshare(flags) == 0}
    ok = libc.unshare(CLONE_NEWUSER | flags) == 0
    return {"userns": ok, "netns": ok}


def landlock(libc: Any) -> int:
    """Deny every filesystem access Landlock knows (no rule grants any), TCP bind/connect, abstract
    unix sockets and signals to processes outside the domain. The ABI version applied, or 0."""
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    abi = syscall(_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return 0
    fs = (1 << 13) - 1  # ABI 1: execute, write, read, readdir, remove, make_* ...
    fs |= (1 << 13) if abi >= 2 else 0  # refer
    fs |= (1 << 14) if abi >= 3 else 0  # truncate
    fs |= (1 << 15) if abi >= 5 else 0  # ioctl on devices
    net = 0b11 if abi >= 4 else 0  # bind and connect TCP
    scoped = 0b11 if abi >= 6 else 0  # abstract unix sockets, signals
    attr = struct.pack("=QQQ", fs, net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    buffer = ctypes.create_string_buffer(attr, len(attr))
    fd = syscall(_LANDLOCK_CREATE_RULESET, buffer, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if fd < 0:
        return 0
    try:
        applied = syscall(_LANDLOCK_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0)) == 0
    finally:
        os.close(fd)
    return abi if applied else 0
