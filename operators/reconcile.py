"""Generic kopf glue: one level-based reconciler per kind, from a pure controller module.

A controller module offers `observe_refs(resource, settings) -> [Ref]`,
`validate(resource) -> the api model` and `plan(resource, observed, now, settings, model=) -> Plan`
(`model`: the resource validated once per reconcile). `register()` binds it to kopf:

- `@kopf.on.resume` + `@kopf.on.create` + `@kopf.on.update` on one function: whatever happened,
  observe -> plan (pure) -> flywheel.kube.execute. It never looks at the event type or diff.
- One reconcile, one status write: `flywheel.kube.execute.reconcile` plans again from the server's
  answers when a plan created or changed children, so the status that the child's watch event
  would have produced a reconcile later is written at once; a resource never reconciled is
  planned without 404 reads, each assumption checked by its create (see that module).
- Child watch: each child resource is watched cluster-wide (or in each --namespace, see
  WATCH_NAMESPACES) with the owner-kind label as the server-side selector (flywheel.kube.watch, a
  thread per child kind and namespace, started and stopped by kopf start-up/cleanup handlers); an
  event enqueues the owner (name from the owner-name label) only if kopf handed us that owner. Known
  limit: with --peering, a replica that served an owner and then lost the election keeps
  following that owner's children until it restarts (its reconciles are idempotent: duplicate
  requests, no divergent writes).
  Not `@kopf.on.event`: kopf spent ~1.5 ms of CPU per child event on its one event loop
  (measured: bench/operator_throughput.py), for events that are mostly our own writes coming
  back. Not a polling `@kopf.timer`: a job's progress reaches the owner within one watch event,
  and kopf adds a finalizer to every object that has a timer (an extra write, and deletion
  blocked while the operator is down).
  Pods are not watched: the Training Operator marks the job Succeeded/Failed only after the Master
  pod ended, so the job's event arrives when the pod's termination message is already readable.
- Restart reads: the child watches keep what they list (flywheel.kube.watch), and the first
  reconcile of each owner after a start reads its watched children from there (start-up waits
  up to SYNC_WAIT for each first list). A restart with 1000 TrainingRuns then lists the jobs once
  instead of sending 1000 job GETs; ConfigMaps and Pods are not watched and are still read. Later
  reconciles read the API: a store is behind our own writes until their events come back, and
  planning from it would repeat them. kopf has no store to offer for this: its @kopf.index is
  fed by kopf's own per-event machinery, the cost the child watch exists to avoid.
- No echo: a child event whose resourceVersion this operator already knows (it read that version,
  or wrote it and got it back) carries nothing new, so the queued reconcile is dropped before it
  reads anything: our own creates and patches do not come back as a second reconcile. Deletions,
  events without a kind or resourceVersion, and requeues always reconcile.
- Requeue: `plan.requeue_after` schedules one re-reconcile of that object on the event loop
  (controller-runtime's RequeueAfter).
- Failures (the API answered 409/429/5xx, timed out, refused; or anything else raised): the same
  requeue, after a per-object exponential backoff with jitter (RETRY_BACKOFF doubling up to
  RETRY_CAP, reset by the object's next successful reconcile) and a token of the process-wide
  RETRIES bucket, never a kopf.TemporaryError: kopf
  writes two bookkeeping PATCHes per retry and retries at a fixed delay, so 200 runs throttled
  together came back as one wave of 200 every 10 s, each adding writes to a server already
  saying 429. From REPORT_AFTER consecutive failures on, the object says so: Ready=False and
  Reconciling=True (kstatus: still in progress), reason ReconcileError, the API's message, and
  a Warning event per distinct message, at most one per object per EVENT_INTERVAL (best effort:
  the API may refuse these writes too). The next successful reconcile writes the controller's
  own conditions again.
- Handlers return None: kopf writes nothing into status; progress and diff-base live in
  flywheel.dev/* annotations (operators/_startup.py).
- `plan.permanent_error`: the status (Ready=False, reason, message) is written first, then
  kopf.PermanentError stops retries until the spec changes.

Reconciles of one object never overlap (a lock per object); requests from child events coalesce.
Kubernetes calls are blocking and run in a thread pool, never on kopf's event loop.

Interface for the per-kind modules (stable): `register(controller, kind=, children=, registry=,
settings=) -> Binding`, `Child(group, version, plural)`, `Binding(kind, controller, settings)` with
`.locks`, `reconcile_once(controller, resource, settings, now=) -> (Plan, Outcome)`, `_EXECUTOR`,
`RETRY_BACKOFF`. Added later, backward compatible: Binding.known/triggers/forced (child-event
bookkeeping, defaults empty) and Outcome.live.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import copy
import dataclasses
import datetime
import logging
import os
import random
import time
import types
from collections.abc import Mapping
from typing import Any

import kopf

from flywheel import api
from flywheel.api import conditions, contract
from flywheel.controllers import artifact_store, plans
from flywheel.controllers import settings as settings_mod
from flywheel.kube import execute, objects, throttle, watch
from operators import metrics

logger = logging.getLogger("flywheel.operator")
RETRY_BACKOFF = 1.0
"""Seconds before the first retry of a failed reconcile; doubles per consecutive failure
($FLYWHEEL_RETRY_BACKOFF, read by configure())."""
RETRY_CAP = 60.0
"""The longest wait between retries of one object ($FLYWHEEL_RETRY_BACKOFF_CAP)."""
RETRIES = throttle.TokenBucket(qps=10, burst=100)
"""All retries of the process together, whatever the number of failing objects: a retry waits
for the later of its object's backoff and a token (controller-runtime's workqueue does the same,
at 10/s and 100). Measured (bench/operator_faults.py): per-object backoff alone let 200 runs
under a 429 storm retry ~5 times each in 20 s."""
KOPF_BACKOFF = 10.0
"""kopf's fixed delay before it retries a handler that raised something unplanned (a failed GET
before a DriftMonitor step); failed steps raise TemporaryError with this module's backoff, and
PermanentError is not retried."""
REPORT_AFTER = 2
"""Consecutive failures before the object shows Ready=False/ReconcileError: one conflict or lost
answer, retried a second later, is not news for the people reading Ready."""
EVENT_INTERVAL = 60.0
"""Seconds between two ReconcileError events of one object."""
SYNC_WAIT = 10.0
"""Seconds start-up waits for each child watch's first list (see Binding.looked)."""
WORKERS = int(os.environ.get("FLYWHEEL_OPERATOR_WORKERS", "16"))
_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="reconcile")


@dataclasses.dataclass(frozen=True)
class Child:
    """A child resource whose changes should re-reconcile its owner."""

    group: str
    version: str
    plural: str


ChildKey = tuple[str, str, str]
"""(kind, namespace, name) of a child."""


@dataclasses.dataclass
class Binding:
    """One kind bound to its controller, plus the per-object locks and requeue timers."""

    kind: str
    controller: types.ModuleType
    settings: settings_mod.Settings
    locks: dict[tuple[str, str], asyncio.Lock] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(asyncio.Lock)
    )
    queued: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    timers: dict[tuple[str, str], asyncio.TimerHandle] = dataclasses.field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)
    known: dict[ChildKey, str] = dataclasses.field(default_factory=dict)
    """resourceVersion of each child as our last reconcile read or wrote it."""
    triggers: dict[tuple[str, str], list[tuple[ChildKey, str]]] = dataclasses.field(default_factory=dict)
    """Child events waiting for the queued reconcile of an owner: (child, resourceVersion)."""
    forced: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    """Owners queued by something that always needs a reconcile (requeue, deletion, unknown)."""
    served: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    """Owners kopf handed to this binding; child events of any other owner are ignored."""
    watches: list[watch.Watch] = dataclasses.field(default_factory=list)
    """The child watches (flywheel.kube.watch), started and stopped with the operator."""
    failures: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    """Consecutive failed reconciles per object (forgotten on success)."""
    reported: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)
    """When (monotonic) each object last got a ReconcileError event."""
    rng: random.Random = dataclasses.field(default_factory=random.Random)
    """The retries' jitter (seeded in tests)."""
    looked: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    """Owners reconciled since this process started. The first reconcile of each reads its
    watched children from the watches' stores (a restart lists them once instead of a GET per
    owner); later ones read the API, which is never behind our own writes."""

    @property
    def plural(self) -> str:
        return api.KINDS[self.kind].PLURAL


def configure(env: Mapping[str, str]) -> None:
    """Read the retry settings from `env` (the operator's start); a bad value raises ValueError
    naming the variable. Not at import: a typo must reach the person as one line, not a traceback."""
    global RETRY_BACKOFF, RETRY_CAP

    def seconds(name: str, default: float) -> float:
        text = env.get(name) or str(default)
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name}={text!r} is not a number of seconds") from None
        if not value >= 0:  # also NaN
            raise ValueError(f"{name}={text!r} must be >= 0")
        return value

    RETRY_BACKOFF = seconds("FLYWHEEL_RETRY_BACKOFF", 1.0)
    RETRY_CAP = seconds("FLYWHEEL_RETRY_BACKOFF_CAP", 60.0)
    qps = seconds("FLYWHEEL_RETRY_QPS", 10.0)
    burst = seconds("FLYWHEEL_RETRY_BURST", 100.0)
    if burst < 1:
        raise ValueError(f"FLYWHEEL_RETRY_BURST={env.get('FLYWHEEL_RETRY_BURST')!r} must be >= 1")
    global RETRIES
    RETRIES = throttle.TokenBucket(qps=qps, burst=int(burst))


def reconcile_once(
    controller: types.ModuleType,
    resource: plans.Manifest,
    settings: settings_mod.Settings,
    now: datetime.datetime | None = None,
    cache: execute.Cache | None = None,
) -> tuple[plans.Plan, execute.Outcome]:
    """observe -> plan -> execute, synchronously: the whole reconcile, testable without kopf."""
    at = now or datetime.datetime.now(datetime.UTC)
    # Validated once per reconcile: execute plans a second time from the server's answers when
    # the first plan changed children, and the spec is the same for both.
    model: list[Any] = []

    def plan(view: Any, seen: plans.Observed) -> plans.Plan:
        # The platform's store fills a defaulted spec.artifacts.uri; a store inside the pod is refused.
        resolved, ephemeral = artifact_store.resolve(view, settings)
        if ephemeral is not None:
            return artifact_store.refusal(view, ephemeral, at)
        if not model:
            model.append(plans.validated(controller.validate, resolved))
        out: plans.Plan = controller.plan(resolved, seen, at, settings, model=model[0])
        return out

    return execute.reconcile(resource, controller.observe_refs(resource, settings), plan, at, cache)


def _from_watches(binding: Binding) -> execute.Cache:
    """Reads of the children this binding watches, from the watches' stores (once they listed)."""
    streams = {(stream.api_version, stream.kind): stream for stream in binding.watches if stream.kind}

    def read(ref: plans.Ref) -> tuple[bool, plans.Manifest | None]:
        stream = streams.get((ref.api_version, ref.kind))
        return stream.cached(ref.namespace, ref.name) if stream is not None else (False, None)

    return read


async def _reconcile(binding: Binding, resource: plans.Manifest) -> plans.Plan | None:
    """Run one reconcile of `resource` under its lock; returns the plan (None: object gone)."""
    meta = resource["metadata"]
    key = (meta.get("namespace") or "default", meta["name"])
    loop = asyncio.get_running_loop()
    async with binding.locks[key]:
        started = time.monotonic()
        cache = None if key in binding.looked else _from_watches(binding)
        try:
            plan, outcome = await loop.run_in_executor(
                _EXECUTOR, reconcile_once, binding.controller, resource, binding.settings, None, cache
            )
        except Exception as exc:
            metrics.observe(binding.kind, "error", time.monotonic() - started)
            delay = _failed(binding, key, exc)
            if binding.failures[key] >= REPORT_AFTER:
                await loop.run_in_executor(_EXECUTOR, _report, binding, key, resource, exc)
            _schedule(binding, key, delay)
            return None
        binding.failures.pop(key, None)
        binding.looked.add(key)
        _remember(binding, key[0], outcome)
        result = "changed" if outcome.writes else "unchanged"
        metrics.observe(
            binding.kind, "invalid" if plan.permanent_error else result, time.monotonic() - started
        )
        if outcome.writes:
            logger.info("Reconciled %s %s/%s: %s", binding.kind, *key, ", ".join(outcome.writes))
        metrics.status(binding.kind, key, plan.status)
    _schedule(binding, key, plan.requeue_after)
    return plan


def _failed(binding: Binding, key: tuple[str, str], exc: Exception) -> float:
    """Count a failed reconcile of `key`; returns the backoff before its retry, and logs it."""
    failures = binding.failures[key] = binding.failures.get(key, 0) + 1
    backoff = throttle.Backoff(base=RETRY_BACKOFF, cap=RETRY_CAP, rng=binding.rng).delay(failures)
    delay = max(backoff, RETRIES.reserve())
    log = logger.warning if failures >= REPORT_AFTER else logger.info
    log("Reconcile of %s %s/%s failed (%d in a row), retrying in %.1fs: %s",
        binding.kind, *key, failures, delay, exc)  # fmt: skip
    return delay


def _report(binding: Binding, key: tuple[str, str], resource: plans.Manifest, exc: Exception) -> None:
    """Ready=False/ReconcileError with the error's text on the object, and a Warning event (one
    per distinct text: its name is derived from it; at most one per EVENT_INTERVAL). In a worker
    thread; a failure here is only logged: the retry is already scheduled."""
    message = str(exc) or type(exc).__name__
    now = datetime.datetime.now(datetime.UTC)
    status = resource.get("status") or {}
    conds = list(status.get("conditions") or [])
    # Reconciling (kstatus: InProgress), not Stalled: the retries go on, and most such errors
    # (429, 5xx, timeouts) pass; a Flux `wait` times out with this message instead of failing early.
    rows = [
        conditions.Condition(conditions.READY, "False", conditions.R_RECONCILE_ERROR, message),
        conditions.Condition(conditions.RECONCILING, "True", conditions.R_RECONCILE_ERROR, message),
    ]
    conds = plans.set_conditions(conds, rows, now)
    try:
        objects.patch_status(resource, {"conditions": conds})
        last = binding.reported.get(key)
        due = last is None or time.monotonic() - last >= EVENT_INTERVAL
        if due and objects.post_event(
            resource, plans.Event(conditions.R_RECONCILE_ERROR, message, "Warning"), now
        ):
            binding.reported[key] = time.monotonic()
    except Exception as report_exc:
        logger.info("Could not report the failure on %s %s/%s: %s", binding.kind, *key, report_exc)


def _schedule(binding: Binding, key: tuple[str, str], delay: float | None) -> None:
    old = binding.timers.pop(key, None)
    if old is not None:
        old.cancel()
    if delay is not None:
        loop = asyncio.get_running_loop()
        binding.timers[key] = loop.call_later(max(delay, 0.0), _enqueue, binding, key)


def _remember(binding: Binding, namespace: str, outcome: execute.Outcome) -> None:
    """Record the resourceVersion of every child this reconcile read or wrote."""
    for key, obj in outcome.live.items():
        kind, name = key.split("/", 1)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            binding.known[(kind, (obj.get("metadata") or {}).get("namespace") or namespace, name)] = version


def _enqueue(binding: Binding, key: tuple[str, str], trigger: tuple[ChildKey, str] | None = None) -> None:
    """Reconcile the object `key` soon; requests made before it starts coalesce into one.

    `trigger` is the child event that asked (child, resourceVersion); without one the reconcile
    always runs, with only triggers it runs unless every one of them is already known.
    """
    if trigger is None:
        binding.forced.add(key)
    else:
        binding.triggers.setdefault(key, []).append(trigger)
    if key in binding.queued:
        return
    binding.queued.add(key)
    task = asyncio.get_running_loop().create_task(_reconcile_key(binding, key))
    binding.tasks.add(task)
    task.add_done_callback(binding.tasks.discard)


def requeue_namespace(binding: Binding, namespace: str) -> None:
    """Reconcile every object of `namespace` this binding serves (something they may depend on,
    not a child of theirs, changed); coalesces with reconciles already queued."""
    for key in sorted(binding.served):
        if key[0] == namespace:
            _enqueue(binding, key)


def _needed(binding: Binding, key: tuple[str, str]) -> bool:
    """Whether the queued reconcile of `key` has anything to learn (takes its triggers)."""
    triggers = binding.triggers.pop(key, [])
    if key in binding.forced:
        binding.forced.discard(key)
        return True
    return not all(binding.known.get(child) == version for child, version in triggers)


async def _reconcile_key(binding: Binding, key: tuple[str, str]) -> None:
    namespace, name = key
    ref = plans.Ref(api.API_VERSION, binding.kind, name, namespace)
    loop = asyncio.get_running_loop()
    try:
        async with binding.locks[key]:
            binding.queued.discard(key)  # from here on, a new change needs a new run
            if not _needed(binding, key):
                metrics.observe(binding.kind, "skipped", 0.0)
                return
            resource = await loop.run_in_executor(_EXECUTOR, objects.get, ref)
        if resource is None or resource["metadata"].get("deletionTimestamp"):
            binding.timers.pop(key, None)
            binding.failures.pop(key, None)
            if resource is None:
                binding.served.discard(key)
                binding.reported.pop(key, None)
                binding.looked.discard(key)
            return
        await _reconcile(binding, resource)
    except Exception as exc:  # the GET failed (the reconcile handles its own): back off, requeue
        _schedule(binding, key, _failed(binding, key, exc))


def _watcher(binding: Binding, child: Child) -> Any:
    """kopf start-up handler: watch `child` (owner-kind label selected) in a thread of its own."""

    async def start(**_: Any) -> None:
        loop = asyncio.get_running_loop()

        def on_event(type_: str | None, obj: plans.Manifest) -> None:  # in the watch's thread
            meta = obj.get("metadata") or {}
            labels = meta.get("labels") or {}
            if labels.get(contract.LABEL_OWNER_KIND) == binding.kind and labels.get(
                contract.LABEL_OWNER_NAME
            ):
                with contextlib.suppress(RuntimeError):  # the loop closed: the operator is stopping
                    loop.call_soon_threadsafe(_on_child, binding, child, type_, obj.get("kind"), meta)

        api_version = f"{child.group}/{child.version}" if child.group else child.version
        selector = f"{contract.LABEL_OWNER_KIND}={binding.kind}"
        for namespace in _watch_namespaces():
            stream = watch.Watch(
                api_version, child.plural, on_event, label_selector=selector, namespace=namespace
            )
            binding.watches.append(stream)
            stream.start()
        # kopf resumes the owners once start-up is over: give the first lists a moment to be in
        # the stores for them (without it, they read the API, as before; nothing waits for ever).
        for stream in binding.watches:
            await asyncio.to_thread(stream.synced.wait, SYNC_WAIT)

    return start


WATCH_NAMESPACES: tuple[str, ...] = ()
"""The namespaces the operator serves (its --namespace flags); empty: cluster-wide. Set by
operators.main before kopf starts."""


def _watch_namespaces() -> list[str | None]:
    """One child watch per served namespace, so a namespaced operator needs no cluster-wide list
    (the Helm chart gives it a Role per namespace); cluster-wide when none are given, or when one
    is a kopf glob pattern (a watch cannot name a pattern)."""
    if not WATCH_NAMESPACES or any(c in ns for ns in WATCH_NAMESPACES for c in "*?[!"):
        return [None]
    return list(WATCH_NAMESPACES)


def _stop(binding: Binding) -> Any:
    """kopf clean-up handler: stop the child watches, the requeue timers and the queued reconciles
    (a reconcile already in a worker thread finishes there; every step of it is idempotent)."""

    async def stop(**_: Any) -> None:
        while binding.watches:
            await asyncio.to_thread(binding.watches.pop().stop)
        for timer in binding.timers.values():
            timer.cancel()
        binding.timers.clear()
        for task in list(binding.tasks):
            task.cancel()

    return stop


def _on_child(
    binding: Binding, child: Child, type_: str | None, kind: str | None, meta: dict[str, Any]
) -> None:
    """A child changed: enqueue its owner, if kopf handed us that owner (this operator serves its
    namespace and is the active peer), with the change's resourceVersion (an echo is skipped)."""
    namespace = meta.get("namespace") or "default"
    owner = (namespace, meta["labels"][contract.LABEL_OWNER_NAME])
    if owner not in binding.served:
        return
    version = meta.get("resourceVersion")
    child_key = (kind or child.plural, namespace, meta.get("name", ""))
    if type_ == "DELETED" or not version or not kind:
        binding.known.pop(child_key, None)
        _enqueue(binding, owner)
    else:
        _enqueue(binding, owner, (child_key, version))


def register(
    controller: types.ModuleType,
    *,
    kind: str,
    children: tuple[Child, ...] = (),
    registry: kopf.OperatorRegistry,
    settings: settings_mod.Settings | None = None,
) -> Binding:
    """Bind `controller` to kopf handlers for `kind` in `registry` (see the module docstring)."""
    binding = Binding(kind, controller, settings or settings_mod.Settings.from_env())
    group, version = api.GROUP, api.VERSION

    async def reconcile(body: kopf.Body, **_: Any) -> None:
        binding.served.add((body["metadata"].get("namespace") or "default", body["metadata"]["name"]))
        plan = await _reconcile(binding, copy.deepcopy(dict(body)))
        if plan is not None and plan.permanent_error:
            raise kopf.PermanentError(plan.permanent_error)

    handler_id = f"reconcile-{kind.lower()}"
    for decorator in (kopf.on.resume, kopf.on.create, kopf.on.update):
        decorator(group, version, binding.plural, id=handler_id, backoff=KOPF_BACKOFF, registry=registry)(
            reconcile
        )

    for child in children:
        kopf.on.startup(id=f"{kind.lower()}-watch-{child.plural}", registry=registry)(
            _watcher(binding, child)
        )
    kopf.on.cleanup(id=f"{kind.lower()}-watch-stop", registry=registry)(_stop(binding))
    return binding
