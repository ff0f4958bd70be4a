"""execute.reconcile's fresh path reads a ref the first plan did not create only when a later
plan asks for it (objects.* replaced by an in-memory stand-in: this is about which requests go
out, the emulator tests cover the HTTP)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from flywheel.controllers import plans
from flywheel.kube import execute, objects

RESOURCE = {"apiVersion": "flywheel.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": "r", "namespace": "ns", "uid": "u", "generation": 1}}  # fmt: skip
JOB = plans.Ref("kubeflow.org/v1", "PyTorchJob", "r", "ns")
POD = plans.Ref("v1", "Pod", "r-master-0", "ns")


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Requests as "VERB Kind/name"; the pod exists, nothing else does until created."""
    sent: list[str] = []

    def get(ref: plans.Ref) -> dict[str, Any] | None:
        sent.append(f"GET {ref.key}")
        return {"kind": "Pod", "metadata": {"name": ref.name}} if ref.kind == "Pod" else None

    def create(manifest: Mapping[str, Any]) -> dict[str, Any]:
        sent.append(f"POST {manifest['kind']}/{manifest['metadata']['name']}")
        return {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "1"}}

    monkeypatch.setattr(objects, "get", get)
    monkeypatch.setattr(objects, "create", create)
    monkeypatch.setattr(objects, "patch_status", lambda resource, status: bool(status))
    monkeypatch.setattr(objects, "post_event", lambda *args: True)
    return sent


def plan_reading_pod_when(read_pod: bool) -> execute.PlanFn:
    def plan(view: Mapping[str, Any], seen: plans.Observed) -> plans.Plan:
        job = seen.get("PyTorchJob", "r")
        if job is None:
            manifest = {
                "apiVersion": JOB.api_version,
                "kind": "PyTorchJob",
                "metadata": {"name": "r", "namespace": "ns"},
            }
            return plans.Plan(apply=[manifest], status={"phase": "Pending"})
        pod = seen.get("Pod", "r-master-0") if read_pod else None
        return plans.Plan(status={"phase": "Created", "pod": pod is not None})

    return plan


def test_a_ref_no_plan_asks_for_is_never_read(api: list[str]) -> None:
    _, outcome = execute.reconcile(RESOURCE, [JOB, POD], plan_reading_pod_when(False))
    assert api == ["POST PyTorchJob/r"]
    assert "Pod/r-master-0" not in outcome.live


def test_a_ref_the_second_plan_asks_for_is_read_then(api: list[str]) -> None:
    plan, outcome = execute.reconcile(RESOURCE, [JOB, POD], plan_reading_pod_when(True))
    assert api == ["POST PyTorchJob/r", "GET Pod/r-master-0"]
    assert plan.status == {"phase": "Created", "pod": True}
    assert "Pod/r-master-0" in outcome.live
