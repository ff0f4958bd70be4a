"""Deployment on one machine: the operator's controller, with a local serving child.

`flywheel run -f examples/deployment-local.yaml` runs the same observe -> plan -> apply as
operators/deployment.py: flywheel.controllers.deployment resolves the champion (and challenger: a
URI, or a Succeeded TrainingRun of this home) and puts its children in the store (the serving
ConfigMap, the apps/v1 Deployment `<name>-serving`, a Service, an HPA and a PDB when wanted);
flywheel.local.realize_serving runs the apps/v1 Deployment as a supervised `bentoml serve` bound
to 127.0.0.1 and writes its status as the Deployment controller would; the controller reads it
back and decides Ready, ChampionReady, the served and the wanted champion, rollbackTarget and the
ChampionChanged events, as on Kubernetes. Foreground, the CLI serves until Ctrl-C (the server stops
with it); with --detach it returns once the server is ready.

- Port: spec.port (a port still in use after a bounded wait fails the rollout, saying so; a
  restart's own connections in TIME-WAIT do not count); endpoint http://127.0.0.1:<port>.
- Traffic log: spec.logging.sink, else <artifacts>/traffic/<name> (sink_uri()), where
  <artifacts> is spec.artifacts.uri, or <home>/artifacts when it is the in-cluster default.
- Promotion: a new champion (promote(), `flywheel run` with a new spec.champion, or its
  TrainingRun retrained) changes the pod template, a rollout. When only the champion changed and
  the server runs one worker, the realiser rolls it out by hot swap (the running server loads the
  new model and swaps it in): zero failed requests. Any other change (challenger, traffic,
  batching, port) restarts the server: requests sent during the restart fail.
- A server that died (or was killed) makes Ready False, reason ServingUnavailable, once
  `flywheel get` (observe()) or the foreground run sees it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pydantic

from flywheel import errors
from flywheel.api import conditions, contract
from flywheel.api import deployment as api
from flywheel.api.common import Manifest
from flywheel.controllers import deployment as controller
from flywheel.controllers import deployment_children as children
from flywheel.controllers import plans
from flywheel.controllers import settings as settings_mod
from flywheel.local import execute, realize, realize_serving
from flywheel.local.runners import Context
from flywheel.local.runners import status as status_mod

KIND = api.Deployment.KIND
CHILD_API_VERSION = "apps/v1"
SETTINGS = settings_mod.Settings(service_host="127.0.0.1")
"""The operator's defaults; the Service's address is loopback here (status.endpoint)."""
MAX_ROUNDS = 20
"""Reconcile-and-realise rounds per run: a rollout takes two; waiting for a ConfigMap a few more."""


class _Run:
    """One Deployment driven on this machine: reconcile with the controller, realise its child."""

    def __init__(self, ctx: Context, manifest: Manifest) -> None:
        self.ctx = ctx
        meta = manifest["metadata"]
        self.name, self.namespace = meta["name"], meta.get("namespace") or "default"
        self.child_name = children.child(self.name)

    def current(self) -> Manifest:
        got = self.ctx.store.get(KIND, self.name, self.namespace)
        if got is None:
            raise errors.UserError(
                f"deployment/{self.name} is not in {self.ctx.home}; run it with `flywheel run -f`"
            )
        return got

    def child(self) -> Manifest | None:
        got = self.ctx.store.get(KIND, self.child_name, self.namespace)
        return got if got is not None and got.get("apiVersion") == CHILD_API_VERSION else None

    def reconcile(self) -> Manifest:
        execute.reconcile_once(self.ctx.store, controller, self.current(), SETTINGS, self.ctx.now())
        return self.current()

    def drive(self) -> tuple[Manifest, str | None]:
        """Reconcile and realise until the controller's verdict stands: (resource, what the
        realiser last did; None when the controller rendered no child)."""
        did = None
        resource = self.current()
        for _ in range(MAX_ROUNDS):
            resource = self.reconcile()
            child = self.child()
            if child is None:  # no model to serve yet, a failed one, or an invalid spec
                return resource, None
            did = realize_serving.sync(self.ctx, child)
            if did.startswith("waiting"):
                time.sleep(0.2)
                continue
            resource = self.reconcile()
            if _ready(resource) != "Unknown":
                break
        return resource, did

    def stop(self, message: str) -> None:
        """Ctrl-C: the server stops, the child has no ready replica, the Deployment is Suspended."""
        child = self.child()
        workload = realize.Workload(KIND, self.name)
        if child is not None:
            realize_serving.stop(self.ctx, child, workload)
        else:
            self.ctx.supervisor.stop(KIND, self.name)
        writer = status_mod.Writer(self.ctx, self.current())
        writer.suspend(message)
        writer.patch({"readyReplicas": 0})

    def follow(self) -> bool:
        """Foreground: serve until Ctrl-C (run() stops the server) or until the server dies."""
        self.ctx.console.print(f"deployment/{self.name}: serving; Ctrl-C stops it")
        while True:
            info = self.ctx.supervisor.find(KIND, self.name)  # a restart by another CLI is followed
            if info is None or not self.ctx.supervisor.alive(info):
                observe(self.ctx, self.current())
                return False
            time.sleep(0.5)


def _ready(resource: Manifest) -> str:
    ready = plans.get_condition((resource.get("status") or {}).get("conditions"), conditions.READY) or {}
    return str(ready.get("status") or "Unknown")


def _report(ctx: Context, resource: Manifest, did: str | None) -> bool:
    """Say what happened, in the controller's words; True when it serves the wanted champion."""
    name = resource["metadata"]["name"]
    status = resource.get("status") or {}
    served = status.get("championVersion") or status.get("championUri")
    endpoint = status.get("endpoint")
    if _ready(resource) == "True":
        if did == "unchanged":
            ctx.console.print(f"deployment/{name}: already serving at {endpoint}")
        elif did == "swapped":
            ctx.console.print(f"deployment/{name}: promoted {served} (hot swap, no restart)")
        else:
            ctx.console.print(f"deployment/{name}: serving {served} at {endpoint}")
        return True
    ready = plans.get_condition(status.get("conditions"), conditions.READY) or {}
    message = status.get("message") or ready.get("message") or "see `flywheel get deployment`"
    if ready.get("reason") == conditions.R_WAITING_MODEL:
        message += "; run it first (e.g. `flywheel run -f examples/trainingrun-local.yaml`)"
    elif ready.get("reason") in (conditions.R_ROLLOUT_FAILED, conditions.R_UNAVAILABLE):
        message += f" (see `flywheel logs deployment/{name}`)"
    ctx.console.print(f"[red]deployment/{name}: not serving: {message}[/red]", highlight=False)
    return False


def run(ctx: Context, manifest: Manifest) -> bool:
    """Serve one stored Deployment (see the module docstring); True once it serves."""
    driver = _Run(ctx, manifest)
    try:
        resource, did = driver.drive()
        if not _report(ctx, resource, did):
            return False
        return driver.follow() if not ctx.detach else True
    except KeyboardInterrupt:
        driver.stop("stopped by Ctrl-C; run `flywheel run` again to serve")
        raise


def promote(ctx: Context, name: str, namespace: str, champion: dict[str, Any]) -> None:
    """Make `champion` (a ModelRef dict: fromTrainingRun or uri) the stored Deployment's champion;
    a serving Deployment rolls it out at once (a hot swap: no failed request), and the old one
    becomes rollbackTarget. One that is not serving gets the new spec only; its next `flywheel
    run` serves it. Raises errors.UserError when the Deployment is missing or the new champion
    cannot be served."""
    stored = ctx.store.get(KIND, name, namespace)
    if stored is None:
        raise errors.UserError(f"deployment/{name} is not in {ctx.home}; run it with `flywheel run -f`")
    spec = {**stored["spec"], "champion": champion}
    try:
        plans.validate_spec(api.Deployment, {**stored, "spec": spec})
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]
        raise errors.UserError(f"deployment/{name}: champion {champion}: {problem['msg']}") from exc
    ctx.store.put({k: v for k, v in stored.items() if k != "status"} | {"spec": spec})
    info = ctx.supervisor.find(KIND, name)
    if info is None or not ctx.supervisor.alive(info):
        return
    # A server that cannot hot swap (other settings changed meanwhile) is restarted, detached: it
    # must not die with the process that promoted (e.g. a DriftMonitor's `flywheel run`).
    resource, did = _Run(dataclasses.replace(ctx, detach=True), stored).drive()
    if not _report(ctx, resource, did):
        raise errors.UserError(f"deployment/{name}: promotion failed: see `flywheel get deployment {name}`")


def observe(ctx: Context, manifest: Manifest) -> Manifest:
    """`flywheel get`: notice a server that is gone without a CLI to record it (killed, crashed,
    or --detach), then reconcile; starts nothing. A Deployment stopped on purpose stays Suspended."""
    if (manifest.get("status") or {}).get("phase") == conditions.SUSPENDED:
        return manifest
    driver = _Run(ctx, manifest)
    child = driver.child()
    if child is None:
        return manifest
    if realize_serving.sync(ctx, child, start=False) == "gone":
        return driver.reconcile()
    return manifest


def artifacts_root(ctx: Context, dep: api.Deployment) -> str:
    """spec.artifacts.uri, or <home>/artifacts when it is the in-cluster default."""
    return ctx.artifacts_uri(dep.spec.artifacts.uri)


def sink_uri(ctx: Context, manifest: Manifest) -> str:
    """Where the local server logs traffic (what a DriftMonitor reads)."""
    dep = plans.validate_spec(api.Deployment, manifest)
    if dep.spec.logging.sink:
        return dep.spec.logging.sink
    return contract.traffic_sink(artifacts_root(ctx, dep), dep.name)
