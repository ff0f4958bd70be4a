"""Run a Python snippet as the self-play pods run: a non-root uid, no capabilities, no_new_privs.

Used by the executor benchmark and by the executor's hostile-corpus tests. As root, the command
goes through `setpriv`; the code it needs is copied where that uid can read it (a checkout or a
virtualenv under /root, mode 700, is not), and the interpreter is one that uid may execute.
Already non-root: the command runs as it is.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

EXECUTOR_FILES = ["flywheel/__init__.py", "flywheel/selfplay/__init__.py", "flywheel/selfplay/executor"]


def prefix(uid: int) -> list[str]:
    """The command prefix that drops to `uid` (nothing when not root)."""
    if os.getuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        raise RuntimeError("setpriv (util-linux) is needed to drop to a non-root uid")
    return [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
    ]


def interpreter(uid: int) -> str:
    """A Python that `uid` may execute. Checked through a shell running as that uid: setpriv itself
    still holds its capabilities while it looks up the program it starts."""
    candidates = [os.path.realpath(sys.executable), "/usr/bin/python3.11", "/usr/bin/python3"]
    if os.getuid() != 0:
        return sys.executable
    for candidate in candidates:
        probe = subprocess.run(
            [
                *prefix(uid),
                "/bin/sh",
                "-c",
                'exec "$0" -c "import sys; assert sys.version_info >= (3, 10)"',
                candidate,
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if probe.returncode == 0:
            return candidate
    raise RuntimeError(f"no Python interpreter that uid {uid} may execute among {candidates}")


def command(uid: int, python: str, *args: str) -> list[str]:
    """`python args...` as `uid`, started through a shell that already runs as that uid."""
    return [*prefix(uid), "/bin/sh", "-c", 'exec "$0" "$@"', python, *args]


def copy_files(source: pathlib.Path, paths: list[str], into: pathlib.Path) -> pathlib.Path:
    """Copy files or folders (their *.py) from `source` into `into`, readable by everyone."""
    for path in paths:
        origin = source / path
        files = sorted(origin.glob("*.py")) if origin.is_dir() else [origin]
        for file in files:
            target = into / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, target)
    readable(into)
    return into


def readable(folder: pathlib.Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755)
