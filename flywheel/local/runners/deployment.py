"""Deployment on one machine: a supervised `bentoml serve` on localhost, promoted by hot swap.

`flywheel run -f examples/deployment-local.yaml` resolves the champion (and challenger) exactly as
the operator does (flywheel.controllers.deployment_models: a URI, or a Succeeded TrainingRun of this
home), writes the serving config (flywheel.controllers.deployment_children.serving_config, with
local paths) and starts FlywheelService through the supervisor, bound to 127.0.0.1. Ready turns
True only when /readyz answers 200 (the models are loaded). Foreground, the CLI serves until Ctrl-C
(the server stops with it); with --detach it returns once the server is ready.

- Port: spec.port (a port still in use after a bounded wait fails the Deployment, saying so; a
  restart's own connections in TIME-WAIT do not count); endpoint http://127.0.0.1:<port>.
- Traffic log: spec.logging.sink, else <artifacts>/traffic/<name> (sink_uri()), where
  <artifacts> is spec.artifacts.uri, or <home>/artifacts when it is the in-cluster default.
- Promotion: when only the champion changed (promote(), or `flywheel run` with a new
  spec.champion) and the server runs one worker, the running server loads the new model and swaps
  it in one step (/admin/promote, with a token only this home can read): zero failed requests.
  The old champion becomes status.rollbackTarget. Any other change (challenger, traffic, batching,
  port) restarts the server: requests sent during the restart fail.
- observe(): a server that died (or was killed) turns Ready False with reason ServerExited.

The process side (start, readiness, hot swap, bookkeeping files) is deployment_process.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pydantic

from flywheel import artifacts, errors
from flywheel.api import conditions, contract
from flywheel.api import deployment as api
from flywheel.api.common import Manifest
from flywheel.controllers import deployment_children as children
from flywheel.controllers import deployment_models as models
from flywheel.controllers import deployment_status as dstatus
from flywheel.controllers import plans
from flywheel.local.runners import Context
from flywheel.local.runners import deployment_process as process
from flywheel.local.runners import status as status_mod

KIND = api.Deployment.KIND


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
        conditions.Condition(conditions.READY, "False", conditions.R_SERVER_EXITED, message),
        conditions.Condition(conditions.CHAMPION_READY, "False", conditions.R_SERVER_EXITED, message),
    )
    writer.event(conditions.R_SERVER_EXITED, message, "Warning")
    return ctx.store.get(KIND, name, namespace) or manifest


def artifacts_root(ctx: Context, dep: api.Deployment) -> str:
    """spec.artifacts.uri, or <home>/artifacts when it is the in-cluster default."""
    return ctx.artifacts_uri(dep.spec.artifacts.uri)


def sink_uri(ctx: Context, manifest: Manifest) -> str:
    """Where the local server logs traffic (what a DriftMonitor reads)."""
    dep = plans.validate_spec(api.Deployment, manifest)
    if dep.spec.logging.sink:
        return dep.spec.logging.sink
    return contract.traffic_sink(artifacts_root(ctx, dep), dep.name)


def _with_card_version(model: models.Model) -> models.Model:
    """A uri model's version from its card (a TrainingRun's comes with its status), so status shows
    which model is served after a promotion or rollback by uri."""
    if model.version is not None:
        return model
    try:
        card = json.loads(artifacts.Store(model.uri).read_bytes(contract.MODEL_CARD))
    except (OSError, ValueError, errors.UserError):
        return model  # the server's own load reports an unreadable card
    version = card.get("version") if isinstance(card, dict) else None
    return model._replace(version=str(version)) if version else model


class _Server:
    """One Deployment's server: its desired config, its process, its status."""

    def __init__(self, ctx: Context, manifest: Manifest) -> None:
        self.ctx = ctx
        self.dep = plans.validate_spec(api.Deployment, manifest)
        self.name, self.namespace = self.dep.name, self.dep.namespace
        self.current: dict[str, Any] = manifest.get("status") or {}
        self.status = status_mod.Writer(ctx, manifest)
        self.manifest = manifest

    # --- the reconcile ----------------------------------------------------------------------------
    def reconcile(self, follow: bool, start: bool = True) -> bool:
        observed = self._observed()
        resolution = models.resolve(self.dep.spec.champion, observed)
        if resolution.model is None:
            return self._no_champion(resolution)
        champion = _with_card_version(resolution.model)
        challenger = None
        if self.dep.spec.challenger is not None:
            challenger = models.resolve(self.dep.spec.challenger, observed).model
            challenger = challenger and _with_card_version(challenger)
        want = self._config(champion, challenger)
        port = self.dep.spec.port
        served = process.served(self.ctx, self.name, port)  # what the live server serves, if any
        if served == want:
            self._serving(champion, challenger, observed, port)
            self.ctx.console.print(f"deployment/{self.name}: already serving at {process.endpoint(port)}")
        elif served is not None and process.swappable(served, want):
            self._swap(port, want, champion, challenger, observed)
        elif start:
            if not self._start(want, champion, challenger, observed):
                return False
        else:  # promote() on a stopped Deployment: the spec is recorded; the next run serves it
            self._record_rollback(champion)
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

    # --- outcomes ---------------------------------------------------------------------------------
    def _no_champion(self, champion: models.Resolution) -> bool:
        hint = (
            ""
            if champion.failed
            else "; run it first (e.g. `flywheel run -f examples/trainingrun-local.yaml`)"
        )
        message = f"champion: {champion.why}{hint}"
        if champion.failed:
            return self.status.fail(conditions.R_MODEL_FAILED, message, conditions.CHAMPION_READY)
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
        if not process.wait_for_port(port):
            message = f"spec.port {port} is in use on 127.0.0.1; choose another port"
            return self.status.fail(conditions.R_INVALID_SPEC, message, conditions.CHAMPION_READY)
        info = process.start(self.ctx, self.name, config, port)
        message = f"starting the server (pid {info.pid}) on port {port}"
        self.status.patch(
            {
                "phase": conditions.PENDING,
                "message": message,
                "observedGeneration": self.status.generation,
                "endpoint": process.endpoint(port),
                "replicas": 1,
                "readyReplicas": 0,
            },
            conditions.Condition(conditions.READY, "Unknown", conditions.R_ROLLING_OUT, message),
        )
        self.ctx.console.print(f"deployment/{self.name}: {message}")
        problem = process.wait_ready(self.ctx, self.name, info, port)
        if problem is not None:
            self.ctx.supervisor.stop(KIND, self.name)
            extra = {"readyReplicas": 0}
            return self.status.fail(conditions.R_FAILED, problem, conditions.CHAMPION_READY, extra)
        process.mark_served(self.ctx, self.name, port, config)
        self._record_rollback(champion)
        self._serving(champion, challenger, observed, port)
        served = f"serving {champion.version or champion.uri} at {process.endpoint(port)}"
        self.status.event(conditions.R_AVAILABLE, served)
        return True

    def _swap(
        self,
        port: int,
        config: dict[str, Any],
        champion: models.Model,
        challenger: models.Model | None,
        observed: plans.Observed,
    ) -> None:
        refused = process.hot_swap(self.ctx, self.name, port, champion.uri, champion.quantized)
        if refused is not None:
            raise errors.UserError(f"deployment/{self.name}: the server refused the new champion: {refused}")
        process.mark_served(self.ctx, self.name, port, config)
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
            self.status.event(conditions.R_CHAMPION_CHANGED, message)
            self.current = {**self.current, "championUri": champion.uri, "rollbackTarget": previous}

    def _serving(
        self, champion: models.Model, challenger: models.Model | None, observed: plans.Observed, port: int
    ) -> None:
        message = f"serving {champion.version or champion.uri} at {process.endpoint(port)}"
        self.status.patch(
            {
                "phase": conditions.RUNNING,
                "message": message,
                "observedGeneration": self.status.generation,
                "endpoint": process.endpoint(port),
                "replicas": 1,
                "readyReplicas": 1,
                **dstatus.model_fields(champion, challenger),
            },
            *dstatus.serving_rows(champion, True, message),
            dstatus.challenger_row(self.dep, observed, challenger),
        )

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
