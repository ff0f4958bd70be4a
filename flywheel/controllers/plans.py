"""The Plan a reconciler returns, and the helpers every controller shares.

A plan says what the world should look like after this reconcile: children to apply (idempotent
create-or-update), children to delete, a status patch, events for people, and whether to look
again later. The adapters (flywheel.kube for Kubernetes, flywheel.local for one machine) carry it
out; the decision itself stays here, pure and testable.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import pydantic

from flywheel.api import common, conditions, contract, loading
from flywheel.api.common import Manifest as Manifest  # noqa: PLC0414 - re-exported: plans.Manifest

R = TypeVar("R", bound=common.Resource)


@dataclasses.dataclass(frozen=True)
class Event:
    """An event for people: type Normal or Warning, a CamelCase reason, a sentence."""

    reason: str
    message: str
    type: str = "Normal"
    occurrence: str = ""
    """Tells two occurrences of the same event apart (the API deduplicates events by a name
    derived from the resource, the text and this): the state a transition leaves, say."""


class PermanentError(Exception):
    """The spec cannot work as written; retrying will not help (the status says why)."""


@dataclasses.dataclass
class Plan:
    """What one reconcile decided."""

    apply: list[Manifest] = dataclasses.field(default_factory=list)
    """Children to create, or update when they differ (server-side apply semantics)."""
    delete: list[Manifest] = dataclasses.field(default_factory=list)
    """Children to delete (only apiVersion, kind, metadata.name/namespace are read)."""
    status: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Merge patch for .status (camelCase keys)."""
    patch_resources: list[Manifest] = dataclasses.field(default_factory=list)
    """Merge patches of other Flywheel resources (e.g. promotion patches a Deployment's spec)."""
    events: list[Event] = dataclasses.field(default_factory=list)
    requeue_after: float | None = None
    """Seconds until the next look ("not yet"), or None when only a change can move things."""
    permanent_error: str | None = None
    """Set when the spec is invalid: the adapter stops retrying until the spec changes."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else replaces
    (inputs are not modified). The one implementation both adapters and the tests apply."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def now_rfc3339(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime.datetime:
    """An RFC 3339 time as the API server and now_rfc3339 write it, as an aware UTC datetime (a
    time without an offset is read as UTC). Raises ValueError when it is not one."""
    parsed = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)).astimezone(datetime.UTC)


def set_condition(
    current: list[dict[str, Any]],
    condition: conditions.Condition,
    now: datetime.datetime,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """Return `current` with `condition` set, in its wire form (metav1.Condition, camelCase keys):
    lastTransitionTime moves only when the status changes.

    Pure: the input list is not modified. Conditions stay keyed by type and sorted with Ready
    first, so reconciling twice produces byte-identical status.
    """
    out = [dict(c) for c in current if c.get("type") != condition.type]
    previous = next((c for c in current if c.get("type") == condition.type), None)
    changed = previous is None or previous.get("status") != condition.status
    wire: dict[str, Any] = {
        "type": condition.type,
        "status": condition.status,
        "reason": condition.reason,
        "message": condition.message,
        "lastTransitionTime": now_rfc3339(now) if changed else previous.get("lastTransitionTime"),  # type: ignore[union-attr]
    }
    if generation is not None:
        wire["observedGeneration"] = generation
    out.append(wire)
    out.sort(key=lambda c: (c["type"] != "Ready", c["type"]))
    return out


def set_conditions(
    current: list[dict[str, Any]],
    rows: Iterable[conditions.Condition],
    now: datetime.datetime,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """set_condition for each row, in order."""
    out = list(current)
    for row in rows:
        out = set_condition(out, row, now, generation)
    return out


def get_condition(current: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in current or [] if c.get("type") == type_), None)


def progress_rows(ready: conditions.Condition, stalled: bool | None = None) -> list[conditions.Condition]:
    """kstatus's abnormal-true pair for a Ready row: Reconciling=True while Ready is Unknown (work
    in progress: rolling out, waiting for a model or a first check), Stalled=True when it cannot
    progress without a person (by default: Ready is False). kstatus reads Reconciling/Stalled
    before Ready, so without them a resource mid-rollout or waiting reads Current, and Flux's
    `wait: true` passes early. Both are always present (False when not), like TrainingRun's."""
    stuck = ready.status == "False" if stalled is None else stalled
    busy = ready.status == "Unknown" and not stuck
    return [
        conditions.Condition(conditions.RECONCILING, str(busy), ready.reason, ready.message if busy else ""),
        conditions.Condition(conditions.STALLED, str(stuck), ready.reason, ready.message if stuck else ""),
    ]


def child_name(parent: str, suffix: str = "", max_len: int = 63) -> str:
    """Deterministic child name: `<parent>-<suffix>`, shortened with a stable hash past max_len."""
    name = f"{parent}-{suffix}" if suffix else parent
    if len(name) <= max_len:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: max_len - 9].rstrip('-')}-{digest}"


def labels(kind: str, name: str, component: str) -> dict[str, str]:
    """The standard labels every child carries."""
    return {
        contract.LABEL_NAME: kind.lower(),
        contract.LABEL_INSTANCE: name,
        contract.LABEL_COMPONENT: component,
        contract.LABEL_PART_OF: contract.PART_OF,
        contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
        contract.LABEL_OWNER_KIND: kind,
        contract.LABEL_OWNER_NAME: name,
    }


def owner_reference(owner: Manifest) -> dict[str, Any]:
    """A controller owner reference to `owner` (garbage collection deletes children with it)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(owner: Manifest, name: str, component: str) -> dict[str, Any]:
    """Metadata of a child: deterministic name, owner's namespace, standard labels, owner reference."""
    meta = owner["metadata"]
    return {
        "name": name,
        "namespace": meta.get("namespace") or "default",
        "labels": labels(owner["kind"], meta["name"], component),
        "ownerReferences": [owner_reference(owner)],
    }


def config_hash(obj: Any) -> str:
    """A short stable hash of a JSON-able value (to roll pods when their config changes)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Ref:
    """An object a controller wants observed before it plans: a child or a related resource."""

    api_version: str
    kind: str
    name: str
    namespace: str = "default"
    selector: str | None = None
    """A label selector: the ref is then a list (those objects, as a `List` manifest under
    `key`), not one object; `name` is only the key it is filed under."""

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


def list_ref(api_version: str, kind: str, key: str, namespace: str, selector: str) -> Ref:
    """A ref to the objects of `kind` in `namespace` that match `selector` (e.g. a Job's pods)."""
    return Ref(api_version, kind, key, namespace, selector)


def items(observed: Observed, kind: str, key: str) -> list[Manifest]:
    """The objects a list_ref read (oldest first by name), [] when it found none."""
    found = observed.get(kind, key) or {}
    return sorted(found.get("items") or [], key=lambda o: str((o.get("metadata") or {}).get("name")))


@dataclasses.dataclass
class Observed:
    """What the adapter saw for the refs a controller asked for (missing objects are absent).

    Keys are `Ref.key` ("Kind/name"). The same shape is filled by flywheel.kube (live objects with
    status) and by flywheel.local (the SQLite store and the process supervisor).
    """

    objects: dict[str, Manifest] = dataclasses.field(default_factory=dict)

    def get(self, kind: str, name: str) -> Manifest | None:
        return self.objects.get(f"{kind}/{name}")


def spec_problems(resource: Manifest, exc: pydantic.ValidationError) -> str:
    """Every problem validate_spec found, one clause each naming its field, '; '-joined (the status
    message of an InvalidSpec condition, without the `Kind/name: ` prefix the CLI prints)."""
    where = f"{resource.get('kind')}/{resource['metadata'].get('name')}"
    return "; ".join(line.removeprefix(f"{where}: ") for line in loading.error_lines(where, exc))


def validate_spec(cls: type[R], resource: Manifest) -> R:
    """Validate what the author wrote: apiVersion, kind, metadata and spec.

    Status and server-side metadata are the operator's, not the author's, so they are left out.
    """
    envelope = {k: resource[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in resource}
    return cls.model_validate(envelope)


def validated(validate: Callable[[Manifest], R], resource: Manifest) -> R | None:
    """`validate(resource)` (a controller's validate), or None when the spec is invalid: the
    controller's plan, given no model, validates again and reports every problem (the rare path).
    An adapter calls this once per reconcile and hands the model to each plan of it."""
    try:
        return validate(resource)
    except pydantic.ValidationError:
        return None


def contains(live: Any, desired: Any) -> bool:
    """Whether `live` already says everything `desired` says (server-added fields are ignored):
    the skip-if-equal rule of both adapters, so applying a plan twice writes nothing.

    Dicts: every desired key matches (a desired None means "absent"); lists: same length and
    item-wise containment (the server fills defaults inside containers, ports, ...); scalars: equal.
    """
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        return all(
            (key not in live or live[key] is None)
            if value is None
            else key in live and contains(live[key], value)
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)
