"""kstatus's rules for a custom resource, as sigs.k8s.io/cli-utils/pkg/kstatus computes them
(status.Compute -> checkGenericProperties; no type-specific rules exist for CRDs), so tests can
say what Flux `wait: true` and `kpt live status` will read:

1. metadata.deletionTimestamp set -> Terminating;
2. status.observedGeneration present and != metadata.generation -> InProgress;
3. a condition Reconciling=True -> InProgress; a condition Stalled=True -> Failed (in list order);
4. otherwise -> Current. Ready is not read at all: a kind without Reconciling/Stalled reads
   Current mid-rollout.
"""

from __future__ import annotations

from typing import Any


def compute(resource: dict[str, Any]) -> str:
    meta = resource.get("metadata") or {}
    status = resource.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    observed = status.get("observedGeneration")
    if observed is not None and observed != meta.get("generation"):
        return "InProgress"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Reconciling" and condition.get("status") == "True":
            return "InProgress"
        if condition.get("type") == "Stalled" and condition.get("status") == "True":
            return "Failed"
    return "Current"
