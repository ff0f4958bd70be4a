"""Carry out a Plan against the Kubernetes API, and gather what a controller asked to observe.

Order matters and is fixed: deletes, then children in the plan's order (a ConfigMap before the
job that mounts it), then patches of other Flywheel resources, then the events, then this
resource's status (so status describes children that exist, and a crash cannot lose an event
whose transition the status already records). Every step skips itself when the
API already says what the plan says, so executing a plan twice writes nothing the second time.

Requests that do not depend on each other go out together (the reads of observe(); the status
events): a reconcile then waits for 5 round trips instead of 7 when it creates a job, which is
most of its latency on a busy API server or a busy machine.

`converge()` is what the operators run: when a plan created or changed children, the controller
plans again at once from the server's answers to those writes (no GET) and from the status the
first plan wrote, exactly what the next reconcile (woken by the child's watch event) would see;
the statuses of both rounds go out as one patch. One reconcile then leaves the status a person
would otherwise see only after the child's event came back, with one status write instead of two
and no re-read (measured: bench/operator_throughput.py).

`reconcile()` adds the fresh path: a resource no reconcile ever finished or failed on (no status,
no kopf annotation) has, as far as we know, no children yet. It is planned from "nothing exists"
without reading; every object the plan read as absent must be one it creates, and the create
checks it (409 -> `Stale`: back to observe -> plan, which then sees what is there). Refs the
plan did not read are read only when a later plan asks for them. A new TrainingRun then costs no
404 reads and no read of its Master pod (the plan reads it only from a finished job): its job
exists after two round trips instead of three. The price, only when a
foreign object holds a child's name: children created before the 409 stay (owned by the
resource, collected with it) while the status reports the conflict.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import dataclasses
import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flywheel.api import contract
from flywheel.controllers import plans
from flywheel.kube import objects

_IO = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="kube-io")
"""Runs the independent requests of one reconcile side by side (never submits to itself)."""
MAX_ROUNDS = 3
"""Plans per converge(): a controller that keeps changing children stops here (the next event
or requeue goes on)."""


@dataclasses.dataclass
class Outcome:
    """What execute() wrote, as "verb Kind/name" lines (empty: the world already matched)."""

    writes: list[str] = dataclasses.field(default_factory=list)
    live: dict[str, plans.Manifest] = dataclasses.field(default_factory=dict)
    """Children as this reconcile last saw them ("Kind/name"): read by observe(), or the server's
    answer to our write. A watch event carrying one of these resourceVersions says nothing new."""


Cache = Callable[[plans.Ref], tuple[bool, "plans.Manifest | None"]]
"""A read from a watch's store: (known, object); not known -> read from the API."""


def observe(refs: Iterable[plans.Ref], cache: Cache | None = None) -> plans.Observed:
    """Read every ref, side by side (missing objects are simply absent); refs the `cache` knows
    are taken from it (a copy: plans and callers may change what they observed)."""
    observed = plans.Observed()
    wanted: list[plans.Ref] = []
    for ref in refs:
        known, obj = cache(ref) if cache is not None else (False, None)
        if not known:
            wanted.append(ref)
        elif obj is not None:
            observed.objects[ref.key] = copy.deepcopy(obj)
    found = list(_IO.map(objects.get, wanted)) if len(wanted) > 1 else [objects.get(r) for r in wanted]
    for ref, obj in zip(wanted, found, strict=True):
        if obj is not None:
            observed.objects[ref.key] = obj
    return observed


def status_patch(resource: Mapping[str, Any], plan: plans.Plan) -> dict[str, Any]:
    """The plan's status patch plus observedGeneration: the generation this reconcile has seen."""
    patch = dict(plan.status)
    generation = resource.get("metadata", {}).get("generation")
    if generation is not None:
        patch["observedGeneration"] = generation
    return patch


def execute(
    resource: Mapping[str, Any],
    plan: plans.Plan,
    observed: plans.Observed | None = None,
    now: datetime.datetime | None = None,
) -> Outcome:
    """Apply `plan` for `resource`. `observed` (what the plan was made from) lets unchanged
    children be skipped without a request. Raises client.ApiError on a failed call; the caller
    retries the whole reconcile, which is safe because every step is idempotent."""
    outcome = Outcome()
    apply_children(plan, observed or plans.Observed(), outcome)
    finish(resource, status_patch(resource, plan), plan.events, now, outcome)
    return outcome


PlanFn = Callable[[Mapping[str, Any], plans.Observed], plans.Plan]


def reconcile(
    resource: Mapping[str, Any],
    refs: Iterable[plans.Ref],
    plan_fn: PlanFn,
    now: datetime.datetime | None = None,
    cache: Cache | None = None,
) -> tuple[plans.Plan, Outcome]:
    """observe -> plan -> converge; for a resource never reconciled, the fresh path first.
    A resource being deleted gets no new children (see no_creates_when_deleting). `cache`:
    where observe may read (see observe)."""
    wanted = list(refs)
    if deleting(resource):
        plan_fn = no_creates_when_deleting(plan_fn)
    elif never_reconciled(resource):
        with contextlib.suppress(Stale):
            return converge(resource, plan_fn, _Assumed(), now, pending=wanted)
    return converge(resource, plan_fn, observe(wanted, cache), now)


def deleting(resource: Mapping[str, Any]) -> bool:
    return bool((resource.get("metadata") or {}).get("deletionTimestamp"))


def no_creates_when_deleting(plan_fn: PlanFn) -> PlanFn:
    """`plan_fn` minus the creates: a child created for an owner that is being deleted is
    only garbage for the collector (measured: 8 of them under deletions mid-flight). Children
    that exist may still be brought to the plan, and the status still written."""

    def plan(view: Mapping[str, Any], seen: plans.Observed) -> plans.Plan:
        out = plan_fn(view, seen)
        out.apply = [m for m in out.apply if _key(m) in seen.objects]
        return out

    return plan


def never_reconciled(resource: Mapping[str, Any]) -> bool:
    """No status and none of kopf's flywheel.dev/ annotations (progress of a failed attempt, or
    the last handled spec): no reconcile of ours ever finished or failed on it."""
    ours = f"{contract.ANNOTATION_PREFIX}/"
    annotations = (resource.get("metadata") or {}).get("annotations") or {}
    return not resource.get("status") and not any(key.startswith(ours) for key in annotations)


class Stale(Exception):
    """The fresh path's assumption failed (a child exists already); nothing relied on it yet."""


class _Assumed(plans.Observed):
    """The fresh path's observation: nothing exists. Records what the plan read, so that every
    assumption is either checked by a create (409 -> Stale) or not taken at all."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, kind: str, name: str) -> plans.Manifest | None:
        self.read.add(f"{kind}/{name}")
        return super().get(kind, name)


def converge(
    resource: Mapping[str, Any],
    plan_fn: PlanFn,
    observed: plans.Observed,
    now: datetime.datetime | None = None,
    pending: Iterable[plans.Ref] = (),
) -> tuple[plans.Plan, Outcome]:
    """Plan and apply until the children stop changing (at most MAX_ROUNDS plans), then write the
    composed status once and every round's events. Returns the last plan (its requeue_after and
    permanent_error are what the last reconcile of the step-by-step world would have said).
    `pending`: refs not read yet (fresh path); read only if a later plan asks for them."""
    outcome = Outcome(live=dict(observed.objects))
    seen = observed
    before: dict[str, Any] = dict(resource.get("status") or {})
    status = before  # what the status would say after each round's patch
    events: list[plans.Event] = []
    view = dict(resource)
    for round_ in range(1, MAX_ROUNDS + 1):
        plan = plan_fn(view, seen)
        outcome.live.update(seen.objects)  # with what a _Lazy read for this plan
        if isinstance(seen, _Assumed):
            _check_assumptions(plan, seen)
        changed = apply_children(plan, seen, outcome, create_only=isinstance(seen, _Assumed))
        status = plans.merge_patch(status, status_patch(resource, plan))
        events.extend(e for e in plan.events if e not in events)
        # Only creates and patches of children are folded: a delete's effect arrives later (a
        # foreground delete finishes after its children), and an error must stop at once.
        if not changed or plan.delete or plan.permanent_error or round_ == MAX_ROUNDS:
            break
        unread = [ref for ref in pending if ref.key not in seen.objects]
        unread += seen.unread.values() if isinstance(seen, _Lazy) else ()
        seen = _Lazy({**seen.objects, **changed}, [ref for ref in unread if ref.key not in changed])
        pending = ()
        view = {**view, "status": status}
    finish(resource, diff(before, status), events, now, outcome)
    return plan, outcome


class _Lazy(plans.Observed):
    """Refs not read yet are read when a plan first asks for them: a plan that never looks at
    one costs no request (a job created a moment ago has no finished Master pod to read)."""

    def __init__(self, found: Mapping[str, plans.Manifest], unread: Iterable[plans.Ref]) -> None:
        super().__init__(objects=dict(found))
        self.unread = {ref.key: ref for ref in unread}

    def get(self, kind: str, name: str) -> plans.Manifest | None:
        ref = self.unread.pop(f"{kind}/{name}", None)
        if ref is not None and (obj := objects.get(ref)) is not None:
            self.objects[ref.key] = obj
        return super().get(kind, name)


def _check_assumptions(plan: plans.Plan, seen: _Assumed) -> None:
    """Fresh path: every absent object the plan read must be one it creates (the create checks
    it); deletes and patches of other resources are not planned from assumptions."""
    creates = {_key(manifest) for manifest in plan.apply}
    if seen.read - creates or plan.delete or plan.patch_resources:
        raise Stale(", ".join(sorted(seen.read - creates)))


def apply_children(
    plan: plans.Plan, observed: plans.Observed, outcome: Outcome, *, create_only: bool = False
) -> dict[str, plans.Manifest]:
    """Deletes, children and patches of other resources; returns the children created or patched,
    as the server answered ("Kind/name"). `create_only`: a child that exists raises Stale."""
    changed: dict[str, plans.Manifest] = {}
    for manifest in plan.delete:
        if objects.delete(manifest):
            outcome.writes.append(f"deleted {_key(manifest)}")
        outcome.live.pop(_key(manifest), None)
    for manifest in plan.apply:
        key = _key(manifest)
        if create_only:
            created = objects.create(manifest)
            if created is None:
                raise Stale(f"{key} exists")
            done, live = "created", created
        else:
            current = observed.get(manifest["kind"], manifest["metadata"]["name"])
            done, live = objects.apply_live(manifest, current)
        outcome.live[key] = live
        if done != "unchanged":
            outcome.writes.append(f"{done} {key}")
            changed[key] = live
    for patch in plan.patch_resources:
        if objects.patch_spec(patch):
            outcome.writes.append(f"patched {_key(patch)}")
    return changed


def finish(
    resource: Mapping[str, Any],
    status: Mapping[str, Any],
    events: Iterable[plans.Event],
    now: datetime.datetime | None,
    outcome: Outcome,
) -> None:
    """The events, then this resource's status (skipped when it already says so).

    Events first: they are derived from the status transition, so once the status is written a
    later reconcile has nothing to announce. A process that dies between the two then re-plans
    the same transition, and the re-sent events are 409s (objects.event_manifest names them by
    content), not duplicates; the other order lost the event. Events of one reconcile go out
    side by side."""
    events = list(events)
    posts = [_IO.submit(objects.post_event, resource, event, now) for event in events]
    concurrent.futures.wait(posts)
    posted = [e for e, post in zip(events, posts, strict=True) if post.result()]  # raises a failed post
    if objects.patch_status(resource, status):
        outcome.writes.append(f"status {_key(resource)}")
    outcome.writes.extend(f"event {e.reason}" for e in posted)


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns `old` into `new` (nulls remove what `new` lacks). Two
    patches in turn cannot always be written as one patch without knowing the target (a key set
    to a scalar, then to an object); from the target they always can."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            if inner := diff(before, value):
                patch[key] = inner
        elif key not in old or before != value:
            patch[key] = _without_nulls(value)
    return patch


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _key(manifest: Mapping[str, Any]) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"
