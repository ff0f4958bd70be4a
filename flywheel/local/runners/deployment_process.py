"""The local serving process of a Deployment: wait for its port and readiness, hot swap, its log.

flywheel.local.realize_serving starts the process (the apps/v1 Deployment's pod template, made
local) and uses these helpers; `admin-token` in the supervisor's run directory
(<home>/runs/deployment/<name>/) is the bearer token of /admin/promote, readable by this user only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from flywheel.local import supervisor as supervisor_mod
from flywheel.local.runners import Context

KIND = "Deployment"
READY_TIMEOUT = float(os.environ.get("FLYWHEEL_SERVING_READY_TIMEOUT", "180"))
TOKEN_FILE = "admin-token"  # noqa: S105 - a file name


def endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def swappable(served: dict[str, Any], want: dict[str, Any]) -> bool:
    """A hot swap suffices: nothing but the champion differs, and one worker holds the models."""
    rest = {k: v for k, v in served.items() if k != "champion"}
    return rest == {k: v for k, v in want.items() if k != "champion"} and int(served.get("workers", 1)) == 1


# A server runs for days: its log is rotated by size (flywheel.local.logwriter), at most 4 x 16 MiB.
LOG_MAX_BYTES = int(os.environ.get("FLYWHEEL_SERVING_LOG_MAX_BYTES", str(16 * 1024 * 1024)))
LOG_BACKUPS = 3
PORT_WAIT = float(os.environ.get("FLYWHEEL_SERVING_PORT_WAIT", "30"))


def port_free(port: int) -> bool:
    """Whether the server could listen on `port` now. With SO_REUSEADDR, as the server binds
    (circus): connections of a stopped server lingering in TIME-WAIT do not block it, a listener does."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, timeout: float = PORT_WAIT, poll: float = 0.2) -> bool:
    """True once `port` is free; False when it stays taken for `timeout` seconds. A server just
    stopped may still hold its listener for a moment (its workers exit after the arbiter)."""
    deadline = time.monotonic() + timeout
    while not port_free(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


def wait_ready(ctx: Context, name: str, info: supervisor_mod.ProcessInfo, port: int) -> str | None:
    """None once /readyz says 200 (the models are loaded); else why not."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if not ctx.supervisor.alive(info):
            code = ctx.supervisor.exit_code(info)
            return f"the server exited (code {code}) before it was ready: {log_tail(ctx, name)}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{endpoint(port)}/readyz", timeout=2).status_code == 200:
                return None
        time.sleep(0.3)
    return f"the server was not ready within {READY_TIMEOUT:.0f}s: {log_tail(ctx, name)}"


def hot_swap(ctx: Context, name: str, port: int, uri: str, quantized: bool) -> str | None:
    """Ask the live server to load `uri` and swap it in as champion; None when done, else why not."""
    token = (ctx.supervisor.run_dir(KIND, name) / TOKEN_FILE).read_text().strip()
    resp = httpx.post(
        f"{endpoint(port)}/admin/promote",
        json={"uri": uri, "quantized": quantized},
        headers={"authorization": f"Bearer {token}"},
        timeout=120,
    )
    return None if resp.status_code == 200 else resp.text[:500]


def log_tail(ctx: Context, name: str) -> str:
    """The last error line of the server's log, and where the rest is."""
    path = ctx.supervisor.log_path(KIND, name)
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    error = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
    return f"{error.strip()[:300]} (see `flywheel logs deployment/{name}`)"


def write_private(path: Path, text: str) -> None:
    """Write a secret readable by this user only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
