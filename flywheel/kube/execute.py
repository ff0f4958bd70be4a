"""Carry out a Plan against the Kubernetes API, and gather what a controller asked to observe.

Order matters and is fixed: deletes, then children in the plan's order (a ConfigMap before the
job that mounts it), then patches of other Flywheel resources, then this resource's status (so
status describes children that exist), then events. Every step skips itself when the API
already says what the plan says, so executing a plan twice writes nothing the second time.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from flywheel.controllers import plans
from flywheel.kube import objects


@dataclasses.dataclass
class Outcome:
    """What execute() wrote, as "verb Kind/name" lines (empty: the world already matched)."""

    writes: list[str] = dataclasses.field(default_factory=list)


def observe(refs: Iterable[plans.Ref]) -> plans.Observed:
    """Read every ref (missing objects are simply absent)."""
    observed = plans.Observed()
    for ref in refs:
        obj = objects.get(ref)
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
    seen = observed or plans.Observed()
    for manifest in plan.delete:
        if objects.delete(manifest):
            outcome.writes.append(f"deleted {_key(manifest)}")
    for manifest in plan.apply:
        live = seen.get(manifest["kind"], manifest["metadata"]["name"])
        done = objects.apply(manifest, live)
        if done != "unchanged":
            outcome.writes.append(f"{done} {_key(manifest)}")
    for patch in plan.patch_resources:
        if objects.patch_spec(patch):
            outcome.writes.append(f"patched {_key(patch)}")
    if objects.patch_status(resource, status_patch(resource, plan)):
        outcome.writes.append(f"status {_key(resource)}")
    for event in plan.events:
        if objects.post_event(resource, event, now):
            outcome.writes.append(f"event {event.reason}")
    return outcome


def _key(manifest: Mapping[str, Any]) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"
