"""Status writing for runners, the operator's way: merge patches, conditions keyed by type with
lastTransitionTime moving only on change (plans.set_condition), observedGeneration on each, events
for people. Every runner uses this, so `flywheel get -o yaml` reads like `kubectl get -o yaml`."""

from __future__ import annotations

from typing import Any

from flywheel.api import conditions
from flywheel.api.common import Manifest
from flywheel.controllers import plans
from flywheel.local import runners


class Writer:
    """Writes one resource's status and events; remembers its conditions between patches."""

    def __init__(self, ctx: runners.Context, manifest: Manifest) -> None:
        self.ctx = ctx
        self.kind = manifest["kind"]
        meta = manifest["metadata"]
        self.name = meta["name"]
        self.namespace = meta.get("namespace") or "default"
        self.generation = int(meta.get("generation") or 1)
        self.conditions: list[dict[str, Any]] = list((manifest.get("status") or {}).get("conditions") or [])

    @property
    def ref(self) -> str:
        return f"{self.kind.lower()}/{self.name}"

    def patch(self, patch: dict[str, Any], *conds: conditions.Condition) -> None:
        """Merge-patch status, setting the given conditions."""
        self.conditions = plans.set_conditions(self.conditions, conds, self.ctx.now(), self.generation)
        if conds:
            patch = {**patch, "conditions": self.conditions}
        self.ctx.store.patch_status(self.kind, self.name, patch, self.namespace)

    def event(self, reason: str, message: str, type_: str = "Normal") -> None:
        self.ctx.store.add_event(self.kind, self.name, reason, message, type_, self.namespace)

    def suspend(self, message: str) -> None:
        """Stopped before the end (Ctrl-C, a killed CLI); the next `flywheel run` continues it."""
        self.patch(
            {"phase": conditions.SUSPENDED, "message": message},
            conditions.Condition(conditions.READY, "False", conditions.R_JOB_SUSPENDED, message),
        )
        self.event(conditions.R_JOB_SUSPENDED, message, "Warning")

    def fail(self, reason: str, message: str, condition: str, extra: dict[str, Any] | None = None) -> bool:
        """End Failed: `condition` and Ready False with the reason; returns False for the caller."""
        completed = plans.now_rfc3339(self.ctx.now())
        self.patch(
            {**(extra or {}), "phase": conditions.FAILED, "message": message, "completionTime": completed},
            conditions.Condition(condition, "False", reason, message),
            conditions.Condition(conditions.READY, "False", reason, message),
        )
        self.event(reason, message, "Warning")
        self.ctx.console.print(f"[red]{self.ref}: failed: {message}[/red]", highlight=False)
        return False
