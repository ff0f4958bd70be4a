"""DriftMonitor operator: flywheel.drift.loop.step bound to kopf, on the Kubernetes API.

A DriftMonitor is a schedule, not a desired state, so it is driven by time as well as by changes:

- `@kopf.on.resume/create/update`: a step now (a new spec, or an operator that just started).
- a short `@kopf.timer` (TIMER_SECONDS): a step only when the schedule says a check is due
  (schedule.is_due on the stored status), a challenger is still undecided, or a flywheel.dev/approve
  annotation is not yet carried out (see wants_step); otherwise nothing, so an idle monitor costs
  one comparison per tick and no API call.
- a `@kopf.index` of DriftMonitors by (namespace, deploymentRef), kept by kopf's watch: the timer
  asks it whether this monitor owns its Deployment (flywheel.controllers.driftmonitor_claims) with
  no API call, so a monitor that an older one blocks steps only when that changes (the owner is
  deleted or points elsewhere: it takes over within one tick). The step itself lists the
  namespace's DriftMonitors once and decides from that list, not from the index.
- `@kopf.on.event` on TrainingRuns labelled as this kind's children: a challenger that finished is
  evaluated within one watch event.

Every step re-reads the monitor under a per-object lock and runs in a thread pool (Kubernetes calls
and the Evidently check are blocking). Handlers return None: kopf writes nothing into status.

KubeBackend is loop.Backend on flywheel.kube. The data commit of a retrain comes from
`git ls-remote` (the operator image carries git, not DVC; a rev that already is a commit is kept as
is). The drift check and the evaluation run in the operator process through loop.EvidentlyAnalysis,
reading traffic and models from the artifact store; tests pass their own Analysis and clock.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kopf

from flywheel import api, artifacts, errors
from flywheel.api import conditions, contract
from flywheel.api import driftmonitor as dm_api
from flywheel.api import trainingrun as tr_api
from flywheel.controllers import driftmonitor as controller
from flywheel.controllers import driftmonitor_claims as claims
from flywheel.controllers import driftmonitor_decisions as decisions
from flywheel.controllers import plans
from flywheel.controllers import settings as settings_mod
from flywheel.drift import loop
from flywheel.kube import client, objects
from operators import reconcile

KIND = api.DriftMonitor.KIND
TIMER_SECONDS = float(os.environ.get("FLYWHEEL_DRIFT_TIMER_SECONDS", "10"))
CACHE_DIR = artifacts.CACHE_ROOT  # an emptyDir in the pod
COMMIT = re.compile(r"^[0-9a-f]{40}$")
logger = logging.getLogger("flywheel.operator")
Clock = Callable[[], datetime.datetime]


def git_commit(data: tr_api.Data) -> str:
    """The commit spec.data.rev names now, from `git ls-remote` (a 40-hex rev is already one)."""
    if COMMIT.match(data.rev):
        return data.rev
    try:
        argv = ["git", "ls-remote", "--", data.repo, data.rev, f"{data.rev}^{{}}"]
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never wait for a password
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True, env=env).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise errors.UserError(
            f"retrain.template.data.repo {data.repo!r}: git ls-remote failed: {exc}"
        ) from None
    refs = {}
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        refs[ref] = sha
    peeled = [sha for ref, sha in refs.items() if ref.endswith("^{}")]  # an annotated tag's commit
    if peeled or refs:
        return (peeled or list(refs.values()))[0]
    raise errors.UserError(
        f"retrain.template.data.rev {data.rev!r} is not a branch, tag or commit of {data.repo}; fix the rev"
    )


class KubeBackend:
    """loop.Backend on the Kubernetes API (flywheel.kube); writes are idempotent."""

    def __init__(self, resolve_commit: Callable[[tr_api.Data], str] = git_commit, clock: Clock | None = None):
        self._resolve = resolve_commit
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        return objects.get(plans.Ref(api.API_VERSION, kind, name, namespace))

    def list(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        listed = client.request("GET", client.path(api.API_VERSION, kind, namespace))
        return list(listed.get("items") or [])

    def create(self, manifest: dict[str, Any]) -> None:
        try:
            client.request("POST", client.manifest_path(manifest, collection=True), body=manifest)
        except client.ApiError as exc:
            if exc.status != 409:  # AlreadyExists: an earlier step created it; leave it as it is
                raise

    def patch(self, patch: dict[str, Any]) -> None:
        objects.patch_spec(patch)

    def patch_status(self, resource: dict[str, Any], status: dict[str, Any]) -> None:
        objects.patch_status(resource, status)

    def event(self, resource: dict[str, Any], event: plans.Event) -> None:
        objects.post_event(resource, event, self._clock())

    def resolve_commit(self, data: tr_api.Data) -> str:
        return self._resolve(data)

    def model_dir(self, uri: str) -> Path:
        return artifacts.local_dir(uri, CACHE_DIR / "models")

    def traffic_sink(self, deployment: dict[str, Any]) -> str:
        """spec.logging.sink, else <artifacts.uri>/traffic/<name> (what the serving config says)."""
        spec = deployment.get("spec") or {}
        sink = (spec.get("logging") or {}).get("sink")
        root = (spec.get("artifacts") or {}).get("uri") or api.common.Artifacts().uri
        return str(sink or contract.traffic_sink(root, deployment["metadata"]["name"]))

    def cache_dir(self) -> Path:
        return CACHE_DIR

    def artifacts_uri(self, uri: str) -> str:
        return uri


INDEX = "driftmonitor_claims"
"""The kopf in-memory index of DriftMonitors by (namespace, deploymentRef): who may own what."""


def claim_entry(body: dict[str, Any]) -> dict[Any, Any]:
    """The index entry of one DriftMonitor: the fields driftmonitor_claims reads, nothing more."""
    meta = body.get("metadata") or {}
    ref = (body.get("spec") or {}).get("deploymentRef")
    keep = {k: meta.get(k) for k in ("name", "namespace", "creationTimestamp", "deletionTimestamp")}
    return {(meta.get("namespace") or "default", ref): {"metadata": keep, "spec": {"deploymentRef": ref}}}


def wants_step(
    body: dict[str, Any], now: datetime.datetime, peers: list[dict[str, Any]] | None = None
) -> bool:
    """The ownership seen in `peers` (the index's monitors naming the same Deployment) differs from
    what status says; else, while another monitor owns the Deployment, never (so a waiting monitor
    costs no API call per tick and takes over within a tick of the owner's deletion). Otherwise: a
    check is due, a challenger is still undecided (its decision may be waiting), or an approval
    names the last decision and status does not show it carried out or refused yet. (kopf's update
    handler never sees the approval: annotations under its storage prefix, flywheel.dev/, are not
    part of the diff it watches; so approvals are picked up by this timer, within one tick.)"""
    status = body.get("status") or {}
    ready = plans.get_condition(status.get("conditions"), conditions.READY) or {}
    owner = claims.claimed_by(body, peers)
    if owner is not None:  # step once to say so, then wait
        said = (ready.get("reason"), ready.get("message"))
        return said != (controller.R_CLAIMED, claims.message(body, owner))
    if peers is not None and ready.get("reason") == controller.R_CLAIMED:
        return True  # the owner is gone: take over now
    if (status.get("retrain") or {}).get("active"):
        return True
    approval = decisions.approval_of(body)
    last = status.get("lastDecision") or {}
    if approval and last.get("challenger") == approval and last.get("decision") != "promoted":
        promoted = plans.get_condition(status.get("conditions"), conditions.PROMOTED) or {}
        if decisions.ignored(approval) not in str(promoted.get("message")):
            return True
    try:
        monitor = controller.validate(body)
    except ValueError:
        return False  # invalid: the create/update handler reported it; a spec change will retry
    return loop.is_due(body, monitor, now)


def register(
    registry: kopf.OperatorRegistry,
    settings: settings_mod.Settings | None = None,
    *,
    analysis: loop.Analysis | None = None,
    resolve_commit: Callable[[tr_api.Data], str] = git_commit,
    clock: Clock | None = None,
    timer_seconds: float | None = None,
) -> reconcile.Binding:
    """Bind DriftMonitor steps to kopf in `registry` (see the module docstring)."""
    binding = reconcile.Binding(KIND, controller, settings or settings_mod.Settings.from_env())
    now = clock or (lambda: datetime.datetime.now(datetime.UTC))
    backend = KubeBackend(resolve_commit, now)
    group, version, plural = api.GROUP, api.VERSION, dm_api.DriftMonitor.PLURAL

    async def step(namespace: str, name: str) -> None:
        key = (namespace, name)
        pool = asyncio.get_running_loop()
        async with binding.locks[key]:
            ref = plans.Ref(api.API_VERSION, KIND, name, namespace)
            resource = await pool.run_in_executor(reconcile._EXECUTOR, objects.get, ref)
            if resource is None or resource["metadata"].get("deletionTimestamp"):
                binding.failures.pop(key, None)
                return
            try:
                result = await pool.run_in_executor(
                    reconcile._EXECUTOR, loop.step, backend, resource, now(), analysis
                )
            except Exception as exc:
                # As the other kinds (operators/reconcile.py): a growing, jittered delay per
                # monitor, and from the second failure on the monitor says so. The retry itself
                # stays kopf's (a step is driven by kopf's handlers and timer, not our requeue).
                delay = reconcile._failed(binding, key, exc)
                if binding.failures[key] >= reconcile.REPORT_AFTER:
                    await pool.run_in_executor(
                        reconcile._EXECUTOR, reconcile._report, binding, key, resource, exc
                    )
                raise kopf.TemporaryError(str(exc), delay=delay) from exc
            binding.failures.pop(key, None)
        if result.plan.permanent_error:
            raise kopf.PermanentError(result.plan.permanent_error)
        for started in result.started:
            logger.info("DriftMonitor %s/%s started challenger %s", namespace, name, started)

    async def on_change(body: kopf.Body, **_: Any) -> None:
        meta = body["metadata"]
        await step(meta.get("namespace") or "default", meta["name"])

    for decorator in (kopf.on.resume, kopf.on.create, kopf.on.update):
        decorator(
            group, version, plural, id="step-driftmonitor", backoff=reconcile.KOPF_BACKOFF, registry=registry
        )(on_change)

    def index(body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return claim_entry(dict(body))

    kopf.index(group, version, plural, id=INDEX, registry=registry)(index)

    async def on_timer(body: kopf.Body, **kwargs: Any) -> None:
        resource = copy.deepcopy(dict(body))
        key = next(iter(claim_entry(resource)))
        peers = [dict(p) for p in kwargs[INDEX].get(key, [])]
        if wants_step(resource, now(), peers):
            await on_change(body)

    kopf.timer(group, version, plural, id="driftmonitor-schedule", interval=timer_seconds or TIMER_SECONDS,
               registry=registry)(on_timer)  # fmt: skip

    async def on_challenger(body: kopf.Body, **_: Any) -> None:
        meta = body.get("metadata", {})
        owner = (meta.get("labels") or {}).get(contract.LABEL_OWNER_NAME)
        if owner:
            await step(meta.get("namespace") or "default", owner)

    kopf.on.event(group, version, tr_api.TrainingRun.PLURAL, id="driftmonitor-challengers",
                  labels={contract.LABEL_OWNER_KIND: KIND}, registry=registry)(on_challenger)  # fmt: skip
    return binding
