"""Runs a hostile corpus against a real sandbox pool and reports every breach of the host.

Standard library only: `test_executor_nonroot.py` copies this file and the executor package into a
world-readable folder and runs it as `python harness.py < config.json` under a non-root uid with
no capabilities (the shipped pod), and the same `run()` is called in-process as root.

The host that the programs attack, all owned by the uid the harness runs as (in the pod the
trainer and the sandbox share one uid, so the kernel is all that stands between them):
- `{hostdir}`: a directory holding `canary.txt` (mode 666), `{victim}`, `secret.txt` and a file
  whose name no program is told (a listing that works shows it);
- `{marker}`: a path in /tmp that must never come to exist;
- `{port}`: a TCP listener on 127.0.0.1 and `{unix}`: an abstract unix socket listener;
- `{pid}`: this process, which counts any SIGUSR1/SIGUSR2/SIGHUP it receives;
- a secret in this process's environment and in `secret.txt`, which must never appear in a
  program's output or error.
After each program the harness checks all of that, checks that no zygote died, and runs a benign
program, which must still return its right answer.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sys
import tempfile
from typing import Any

BENIGN = ("def f(xs):\n    return sorted(set(xs))", "[3, 1, 3, 2]", "[1, 2, 3]")


class Host:
    def __init__(self) -> None:
        self.secret = "S3CR3T" + secrets.token_hex(8)
        os.environ["FLYWHEEL_TEST_SECRET"] = self.secret
        self.dir = tempfile.mkdtemp(prefix="flywheel-host-")
        os.chmod(self.dir, 0o777)
        self.victim_name = "victim-" + secrets.token_hex(4)
        self.hidden_name = "hidden-" + secrets.token_hex(8)  # named by no program: seen only by listing
        self.files = {
            self.hidden_name: "hidden " + secrets.token_hex(8),
            "canary.txt": "canary " + secrets.token_hex(8),
            self.victim_name: "victim " + secrets.token_hex(8),
            "secret.txt": self.secret,
        }
        for name, text in self.files.items():
            path = os.path.join(self.dir, name)
            with open(path, "w") as handle:
                handle.write(text)
            os.chmod(path, 0o666)
        self.modes = {name: os.stat(os.path.join(self.dir, name)).st_mode for name in self.files}
        self.rand = [str(secrets.randbelow(10**12) + 10**12) for _ in range(2)]
        self.marker = os.path.join(tempfile.gettempdir(), "flywheel-pwned-" + secrets.token_hex(8))
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        self.tcp.setblocking(False)
        self.unix_name = "flywheel-" + secrets.token_hex(8)
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind("\0" + self.unix_name)
        self.unix.listen(8)
        self.unix.setblocking(False)
        self.signals: list[int] = []
        for number in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
            signal.signal(number, lambda signum, frame: self.signals.append(signum))

    def fill(self, text: str) -> str:
        values = {
            "{hostdir}": self.dir,
            "{canary}": os.path.join(self.dir, "canary.txt"),
            "{victim}": os.path.join(self.dir, self.victim_name),
            "{secretfile}": os.path.join(self.dir, "secret.txt"),
            "{marker}": self.marker,
            "{port}": str(self.tcp.getsockname()[1]),
            "{unix}": self.unix_name,
            "{pid}": str(os.getpid()),
            "{rand1}": self.rand[0],
            "{rand2}": self.rand[1],
        }
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    def breaches(self, texts: list[str]) -> list[str]:
        found = []
        if sorted(os.listdir(self.dir)) != sorted(self.files):
            found.append(f"host dir now holds {sorted(os.listdir(self.dir))}")
        for name, text in self.files.items():
            try:
                with open(os.path.join(self.dir, name)) as handle:
                    if handle.read() != text:
                        found.append(f"{name} changed")
                if os.stat(os.path.join(self.dir, name)).st_mode != self.modes[name]:
                    found.append(f"{name} mode changed")
            except OSError as exc:
                found.append(f"{name} unreadable: {exc}")
        if os.path.lexists(self.marker):
            found.append("marker created")
        for listener, what in ((self.tcp, "tcp"), (self.unix, "unix")):
            try:
                connection, _ = listener.accept()
                connection.close()
                found.append(f"{what} listener got a connection")
            except BlockingIOError:
                pass
        if self.signals:
            found.append(f"trainer got signals {self.signals}")
            self.signals.clear()
        tokens = ["PWNED", self.secret, self.hidden_name, *self.files.values(), *self.rand]
        for text in texts:
            if any(token in text for token in tokens):
                found.append("host data in the program's output")
        return found

    def close(self) -> None:
        self.tcp.close()
        self.unix.close()
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)
        if os.path.lexists(self.marker):
            os.unlink(self.marker)


def _attack(pool: Any, executor: Any, entry: dict[str, Any], host: Host) -> tuple[str, list[str], Any]:
    """Run one entry the way its `mode` says: (verdict kind, texts it produced, extra)."""
    code, mode = host.fill(entry["code"]), entry.get("mode", "proposal")
    inputs = host.fill(entry.get("input", "1"))
    if mode in ("proposal", "benign"):
        result = pool.run_program(code, inputs)
        return result.kind, [result.output_repr or "", result.error or ""], result.output_repr
    if mode == "raw":  # the static check and the audit hook skipped: the kernel layers alone
        job = {"code": code, "call": f"f({inputs})", "cap": pool.max_output_chars, "audit_hook": False}
        ((raw,),) = pool._execute([[job]])
        verdict, _ = executor.pool._parsed(raw, pool.max_output_chars)
        return verdict.kind, [verdict.output_repr or "", verdict.error or ""], None
    pairs = [(host.fill(a), host.fill(b)) for a, b in entry.get("pairs", [])]
    if mode == "induction":  # every pair is wrong for this program: any True is a forged verdict
        verdicts = pool.check_function(code, pairs)
        return ("forged" if any(verdicts) else "refused"), [], verdicts
    if mode == "raw_induction":  # check_function's own verdict path, with the in-process filters off
        cap, verdicts = pool.max_output_chars, []
        jobs = [{"code": code, "call": f"f({a})", "cap": cap, "audit_hook": False} for a, _ in pairs]
        (results,) = pool._execute([jobs])
        for (_, gold), raw in zip(pairs, results, strict=True):
            verdict, value = executor.pool._parsed(raw, cap)
            verdicts.append(verdict.ok and executor.pool._equal(executor.checks.literal(gold)[1], value))
        return ("forged" if any(verdicts) else "refused"), [], verdicts
    if mode == "abduction":
        verdict = pool.check_output(code, inputs, host.fill(entry["gold"]))
        return ("forged" if verdict else "refused"), [], verdict
    raise ValueError(f"unknown mode {mode!r}")


def run(config: dict[str, Any]) -> dict[str, Any]:
    from flywheel.selfplay import executor

    host = Host()
    reports = []
    try:
        with executor.Pool(**config.get("pool", {})) as pool:
            pids = sorted(pool.worker_pids)
            for entry in config["corpus"]:
                try:
                    kind, texts, extra = _attack(pool, executor, entry, host)
                except Exception as exc:
                    kind, texts, extra = "raised", [], f"{type(exc).__name__}: {exc}"[:300]
                breaches = host.breaches(texts)
                if sorted(pool.worker_pids) != pids:
                    breaches.append("a zygote died or was replaced")
                    pids = sorted(pool.worker_pids)
                benign = pool.run_program(BENIGN[0], BENIGN[1])
                reports.append(
                    {
                        "name": entry["name"],
                        "kind": kind,
                        "extra": extra,
                        "breaches": breaches,
                        "benign_ok": benign.ok and benign.output_repr == BENIGN[2],
                    }
                )
            isolation = dict(pool.isolation)
            jail_empty = os.listdir(pool.jail) == []
    finally:
        host.close()
    with open("/proc/self/status") as handle:
        status = dict(line.split(":\t", 1) for line in handle if ":\t" in line)
    return {
        "uid": os.getuid(),
        "cap_eff": int(status["CapEff"], 16),
        "no_new_privs": status.get("NoNewPrivs", "0").strip() == "1",
        "isolation": isolation,
        "jail_empty": jail_empty,
        "reports": reports,
    }


if __name__ == "__main__":
    json.dump(run(json.load(sys.stdin)), sys.stdout)
