"""Deployment on one machine: a supervised `bentoml serve` on localhost, promoted by hot swap.

`flywheel run -f examples/deployment-local.yaml` resolves the champion (and challenger) exactly as
the operator does (flywheel.controllers.deployment_models: a URI, or a Succeeded TrainingRun of this
home), writes the serving config (flywheel.controllers.deployment_children.serving_config, with
local paths) and starts FlywheelService through the supervisor, bound to 127.0.0.1. Ready turns
True only when /readyz answers 200 (the models are loaded). Foreground, the CLI serves until Ctrl-C
(the server stops with it); with --detach it returns once the server is ready.

- Port: spec.port (a port in use fails the Deployment, saying so); endpoint http://127.0.0.1:<port>.
- Traffic log: spec.logging.sink, else <artifacts>/deployments/<name>/traffic (sink_uri()), where
  <artifacts> is spec.artifacts.uri, or <home>/artifacts when it is the in-cluster default.
- Promotion: when only the champion changed (promote(), or `flywheel run` with a new
  spec.champion) and the server runs one worker, the running server loads the new model and swaps
  it in one step (/admin/promote, with a token only this home can read): zero failed requests.
  The old champion becomes status.rollbackTarget. Any other change (challenger, traffic, batching,
  port) restarts the server: requests sent during the restart fail.
- observe(): a server that died (or was killed) turns Ready False with reason ServerExited.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pydantic

from flywheel import artifacts, errors
from flywheel.api import common, conditions, contract
from flywheel.api import deployment as api
from flywheel.controllers import deployment_children as children
from flywheel.controllers import deployment_models as models
from flywheel.controllers import deployment_status as dstatus
from flywheel.controllers import plans
from flywheel.local.runners import Context
from flywheel.local.runners import status as status_mod
from flywheel.serving import config as serving_config

KIND = api.Deployment.KIND
R_SERVER_EXITED = "ServerExited"
READY_TIMEOUT = float(os.environ.get("FLYWHEEL_SERVING_READY_TIMEOUT", "180"))
TOKEN_FILE = "admin-token"  # noqa: S105 - a file name
SERVED_FILE = "served.json"
Manifest = dict[str, Any]


def run(ctx: Context, manifest: Manifest) -> bool:
    """Serve one stored Deployment (see the module docstring); True once it serves."""
    server = _Server(ctx, manifest)
    try:
        return server.reconcile(follow=not ctx.detach)
    except KeyboardInterrupt:
        ctx.supervisor.stop(KIND, server.name)
        server.status.suspend("stopped by Ctrl-C; run `flywheel run` again to serve")
        server.status.patch({"readyReplicas": 0})
        raise


def promote(ctx: Context, name: str, namespace: str, champion: dict[str, Any]) -> None:
    """Make `champion` (a ModelRef dict: fromTrainingRun or uri) the stored Deployment's champion and
    hot-swap it into the running server with no failed request; the old one becomes rollbackTarget.
    A Deployment that is not serving gets the new spec only; its next `flywheel run` serves it.
    Raises errors.UserError when the Deployment is missing or the new champion cannot be served."""
    stored = ctx.store.get(KIND, name, namespace)
    if stored is None:
        raise errors.UserError(f"deployment/{name} is not in {ctx.home}; run it with `flywheel run -f`")
    spec = {**stored["spec"], "champion": champion}
    try:
        plans.validate_spec(api.Deployment, {**stored, "spec": spec})
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]
        raise errors.UserError(f"deployment/{name}: champion {champion}: {problem['msg']}") from exc
    updated = ctx.store.put({k: v for k, v in stored.items() if k != "status"} | {"spec": spec})
    info = ctx.supervisor.find(KIND, name)
    serving = info is not None and ctx.supervisor.alive(info)
    # A server that cannot hot swap (other settings changed meanwhile) is restarted, detached: it
    # must not die with the process that promoted (e.g. a DriftMonitor's `flywheel run`).
    server = _Server(dataclasses.replace(ctx, detach=True), updated)
    if not server.reconcile(follow=False, start=serving):
        raise errors.UserError(f"deployment/{name}: promotion failed: see `flywheel get deployment {name}`")


def observe(ctx: Context, manifest: Manifest) -> Manifest:
    """Notice a server that is gone without a CLI to record it (killed, crashed, or --detach)."""
    status = manifest.get("status") or {}
    name, namespace = manifest["metadata"]["name"], manifest["metadata"].get("namespace") or "default"
    info = ctx.supervisor.find(KIND, name)
    if status.get("phase") != conditions.RUNNING or (info is not None and ctx.supervisor.alive(info)):
        return manifest
    # BentoML's workers run in sessions of their own and outlive a killed server process, still
    # holding the socket: stop them too, so "down" is what the status says.
    ctx.supervisor.stop(KIND, name, grace=5.0)
    message = f"the server process is gone; see `flywheel logs deployment/{name}`, then `flywheel run` again"
    writer = status_mod.Writer(ctx, manifest)
    writer.patch(
        {"phase": conditions.FAILED, "message": message, "readyReplicas": 0},
        (conditions.READY, "False", R_SERVER_EXITED, message),
        (conditions.CHAMPION_READY, "False", R_SERVER_EXITED, message),
    )
    writer.event(R_SERVER_EXITED, message, "Warning")
    return ctx.store.get(KIND, name, namespace) or manifest


def artifacts_root(ctx: Context, dep: api.Deployment) -> str:
    """spec.artifacts.uri, or <home>/artifacts when it is the in-cluster default."""
    uri = dep.spec.artifacts.uri
    return f"file://{ctx.home / 'artifacts'}" if uri == common.Artifacts().uri else uri


def sink_uri(ctx: Context, manifest: Manifest) -> str:
    """Where the local server logs traffic (what a DriftMonitor reads)."""
    dep = plans.validate_spec(api.Deployment, manifest)
    if dep.spec.logging.sink:
        return dep.spec.logging.sink
    return "/".join(
        [artifacts_root(ctx, dep).rstrip("/"), api.Deployment.PLURAL, dep.name, contract.TRAFFIC_DIR]
    )


class _Server:
    """One Deployment's server: its desired config, its process, its status."""

    def __init__(self, ctx: Context, manifest: Manifest) -> None:
        self.ctx = ctx
        self.dep = plans.validate_spec(api.Deployment, manifest)
        self.name, self.namespace = self.dep.name, self.dep.namespace
        self.current: dict[str, Any] = manifest.get("status") or {}
        self.status = status_mod.Writer(ctx, manifest)
        self.run_dir = ctx.supervisor.run_dir(KIND, self.name)
        self.config_path = self.run_dir / contract.CONFIG_FILE
        self.served_path = self.run_dir / SERVED_FILE
        self.manifest = manifest

    # --- the reconcile ----------------------------------------------------------------------------
    def reconcile(self, follow: bool, start: bool = True) -> bool:
        observed = self._observed()
        champion = models.resolve(self.dep.spec.champion, observed)
        if champion.model is None:
            return self._no_champion(champion)
        challenger = None
        if self.dep.spec.challenger is not None:
            challenger = models.resolve(self.dep.spec.challenger, observed).model
        want = self._config(champion.model, challenger)
        port = self.dep.spec.port
        served = self._served(port)  # what the live server on this port serves, if one does
        if served == want:
            self._serving(champion.model, challenger, observed, port)
            self.ctx.console.print(f"deployment/{self.name}: already serving at {_endpoint(port)}")
        elif served is not None and _swappable(served, want):
            self._swap(port, want, champion.model, challenger, observed)
        elif start:
            if not self._start(want, champion.model, challenger, observed):
                return False
        else:  # promote() on a stopped Deployment: the spec is recorded; the next run serves it
            self._record_rollback(champion.model)
            return True
        return self._follow() if follow else True

    def _observed(self) -> plans.Observed:
        objects = {}
        for ref in models.training_run_refs(self.manifest):
            if (run := self.ctx.store.get(ref.kind, ref.name, ref.namespace)) is not None:
                objects[ref.key] = run
        return plans.Observed(objects)

    def _config(self, champion: models.Model, challenger: models.Model | None) -> dict[str, Any]:
        root = artifacts_root(self.ctx, self.dep)
        config = children.serving_config(self.dep, champion, challenger)
        config["artifactsUri"] = root
        config["logging"]["sink"] = sink_uri(self.ctx, self.manifest)
        return config

    def _served(self, port: int) -> dict[str, Any] | None:
        info = self.ctx.supervisor.find(KIND, self.name)
        if info is None or not self.ctx.supervisor.alive(info):
            return None
        try:
            served = json.loads(self.served_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return served.get("config") if isinstance(served, dict) and served.get("port") == port else None

    # --- outcomes ---------------------------------------------------------------------------------
    def _no_champion(self, champion: models.Resolution) -> bool:
        hint = (
            ""
            if champion.failed
            else "; run it first (e.g. `flywheel run -f examples/trainingrun-local.yaml`)"
        )
        message = f"champion: {champion.why}{hint}"
        if champion.failed:
            return self.status.fail(dstatus.R_MODEL_FAILED, message, conditions.CHAMPION_READY)
        rows = dstatus.waiting_rows(champion)
        self.status.patch(
            {"phase": conditions.PENDING, "message": message, "observedGeneration": self.status.generation},
            *rows,
        )
        self.ctx.console.print(f"[red]deployment/{self.name}: not serving: {message}[/red]", highlight=False)
        return False

    def _start(
        self,
        config: dict[str, Any],
        champion: models.Model,
        challenger: models.Model | None,
        observed: plans.Observed,
    ) -> bool:
        self.ctx.supervisor.stop(KIND, self.name)  # a restart: any old server goes first
        port = self.dep.spec.port
        if not _port_free(port):
            message = f"spec.port {port} is in use on 127.0.0.1; choose another port"
            return self.status.fail(conditions.R_INVALID_SPEC, message, conditions.CHAMPION_READY)
        self.served_path.unlink(missing_ok=True)
        token = secrets.token_urlsafe(24)
        _write_private(self.run_dir / TOKEN_FILE, token)
        artifacts.atomic_write_text(self.config_path, json.dumps(config, indent=2, sort_keys=True))
        argv = [sys.executable, "-m", "bentoml", "serve", contract.SERVING_SERVICE]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        env = {
            contract.ENV_SERVING_CONFIG: str(self.config_path),
            serving_config.ENV_ADMIN_TOKEN: token,
            "BENTOML_HOME": str(self.ctx.home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
        }
        info = self.ctx.supervisor.start(
            KIND, self.name, argv, env, cwd=self.ctx.cwd, tie_to_parent=not self.ctx.detach
        )
        message = f"starting the server (pid {info.pid}) on port {port}"
        self.status.patch(
            {
                "phase": conditions.PENDING,
                "message": message,
                "observedGeneration": self.status.generation,
                "endpoint": _endpoint(port),
                "replicas": 1,
                "readyReplicas": 0,
            },
            (conditions.READY, "Unknown", dstatus.R_ROLLING_OUT, message),
        )
        self.ctx.console.print(f"deployment/{self.name}: {message}")
        problem = self._wait_ready(info, port)
        if problem is not None:
            self.ctx.supervisor.stop(KIND, self.name)
            return self.status.fail(
                conditions.R_FAILED, problem, conditions.CHAMPION_READY, {"readyReplicas": 0}
            )
        self._write_served(port, config)
        self._record_rollback(champion)
        self._serving(champion, challenger, observed, port)
        self.status.event(
            dstatus.R_AVAILABLE, f"serving {champion.version or champion.uri} at {_endpoint(port)}"
        )
        return True

    def _swap(
        self,
        port: int,
        config: dict[str, Any],
        champion: models.Model,
        challenger: models.Model | None,
        observed: plans.Observed,
    ) -> None:
        url = f"{_endpoint(port)}/admin/promote"
        token = (self.run_dir / TOKEN_FILE).read_text().strip()
        body = {"uri": champion.uri, "quantized": champion.quantized}
        resp = httpx.post(url, json=body, headers={"authorization": f"Bearer {token}"}, timeout=120)
        if resp.status_code != 200:
            raise errors.UserError(
                f"deployment/{self.name}: the server refused the new champion: {resp.text}"
            )
        # The config on disk is what a restart serves: it follows the swap.
        artifacts.atomic_write_text(self.config_path, json.dumps(config, indent=2, sort_keys=True))
        self._write_served(port, config)
        self._record_rollback(champion)
        self._serving(champion, challenger, observed, port)
        self.ctx.console.print(
            f"deployment/{self.name}: promoted {champion.version or champion.uri} (hot swap, no restart)"
        )

    def _record_rollback(self, champion: models.Model) -> None:
        previous = self.current.get("championUri")
        if previous and previous != champion.uri:
            message = f"champion {previous} -> {champion.uri}"
            self.status.patch({"rollbackTarget": previous})
            self.status.event(dstatus.R_CHAMPION_CHANGED, message)
            self.current = {**self.current, "championUri": champion.uri, "rollbackTarget": previous}

    def _serving(
        self, champion: models.Model, challenger: models.Model | None, observed: plans.Observed, port: int
    ) -> None:
        message = f"serving {champion.version or champion.uri} at {_endpoint(port)}"
        self.status.patch(
            {
                "phase": conditions.RUNNING,
                "message": message,
                "observedGeneration": self.status.generation,
                "endpoint": _endpoint(port),
                "replicas": 1,
                "readyReplicas": 1,
                **dstatus.model_fields(champion, challenger),
            },
            *dstatus.serving_rows(champion, True, message),
            dstatus.challenger_row(self.dep, observed, challenger),
        )

    def _write_served(self, port: int, config: dict[str, Any]) -> None:
        """What the live server serves, written once it does (compared on the next reconcile)."""
        artifacts.atomic_write_text(self.served_path, json.dumps({"port": port, "config": config}, indent=2))

    def _wait_ready(self, info: Any, port: int) -> str | None:
        """None once /readyz says 200; else why not (the server exited, or took too long)."""
        deadline = time.monotonic() + READY_TIMEOUT
        url = f"{_endpoint(port)}/readyz"
        while time.monotonic() < deadline:
            if not self.ctx.supervisor.alive(info):
                code = self.ctx.supervisor.exit_code(info)
                return f"the server exited (code {code}) before it was ready: {self._log_tail()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return None
            time.sleep(0.3)
        return f"the server was not ready within {READY_TIMEOUT:.0f}s: {self._log_tail()}"

    def _follow(self) -> bool:
        """Foreground: serve until Ctrl-C (run() stops the server) or until the server dies."""
        self.ctx.console.print(f"deployment/{self.name}: serving; Ctrl-C stops it")
        while True:
            info = self.ctx.supervisor.find(KIND, self.name)  # a restart by another CLI is followed
            if info is None or not self.ctx.supervisor.alive(info):
                current = self.ctx.store.get(KIND, self.name, self.namespace) or self.manifest
                observe(self.ctx, current)
                return False
            time.sleep(0.5)

    # --- small helpers ----------------------------------------------------------------------------
    def _log_tail(self) -> str:
        path = self.ctx.supervisor.log_path(KIND, self.name)
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        error = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
        return f"{error.strip()[:300]} (see `flywheel logs deployment/{self.name}`)"


def _endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _swappable(served: dict[str, Any], want: dict[str, Any]) -> bool:
    """A hot swap suffices: nothing but the champion differs, and one worker holds the models."""
    rest = {k: v for k, v in served.items() if k != "champion"}
    return rest == {k: v for k, v in want.items() if k != "champion"} and int(served.get("workers", 1)) == 1


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _write_private(path: Path, text: str) -> None:
    """Write a secret readable by this user only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
