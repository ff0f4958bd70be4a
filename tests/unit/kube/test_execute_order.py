"""execute's order of writes and its guard for owners being deleted (objects.* replaced by an
in-memory stand-in that records requests: this is about which requests go out and in what order;
the emulator tests cover the HTTP)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from flywheel.controllers import plans
from flywheel.kube import execute, objects

RESOURCE = {"apiVersion": "flywheel.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": "r", "namespace": "ns", "uid": "u", "generation": 1},
            "status": {"phase": "Pending"}}  # fmt: skip
JOB = plans.Ref("kubeflow.org/v1", "PyTorchJob", "r", "ns")
CONFIG = plans.Ref("v1", "ConfigMap", "r-config", "ns")


class Crash(Exception):
    """The process dies here."""


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Requests as "VERB Kind/name"; the job exists, the ConfigMap does not."""
    sent: list[str] = []

    def get(ref: plans.Ref) -> dict[str, Any] | None:
        sent.append(f"GET {ref.key}")
        return {"kind": ref.kind, "metadata": {"name": ref.name}} if ref.kind == "PyTorchJob" else None

    def apply_live(manifest: Mapping[str, Any], live: Any = None) -> tuple[str, Mapping[str, Any]]:
        sent.append(f"{'PATCH' if live else 'POST'} {manifest['kind']}/{manifest['metadata']['name']}")
        return ("patched" if live else "created"), manifest

    def patch_status(resource: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
        sent.append("PATCH status")
        return True

    def post_event(resource: Mapping[str, Any], event: plans.Event, now: Any = None) -> bool:
        sent.append(f"POST Event {event.reason}")
        return True

    monkeypatch.setattr(objects, "get", get)
    monkeypatch.setattr(objects, "apply_live", apply_live)
    monkeypatch.setattr(objects, "patch_status", patch_status)
    monkeypatch.setattr(objects, "post_event", post_event)
    return sent


def manifest(ref: plans.Ref) -> dict[str, Any]:
    return {
        "apiVersion": ref.api_version,
        "kind": ref.kind,
        "metadata": {"name": ref.name, "namespace": "ns"},
    }


def plan_both(view: Mapping[str, Any], seen: plans.Observed) -> plans.Plan:
    return plans.Plan(
        apply=[manifest(CONFIG), manifest(JOB)],
        status={"phase": "Running"},
        events=[plans.Event("JobRunning", "the job runs")],
    )


def test_events_go_out_before_the_status_that_records_their_transition(api: list[str]) -> None:
    """A process killed between the two re-plans the transition (the status does not say it yet)
    and re-sends the event, which the API answers 409 by its content-derived name: never lost."""
    execute.reconcile(RESOURCE, [JOB, CONFIG], plan_both)
    assert api.index("POST Event JobRunning") < api.index("PATCH status")


def test_a_failed_event_post_leaves_the_status_unwritten(
    api: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_: Any) -> bool:
        raise Crash

    monkeypatch.setattr(objects, "post_event", crash)
    with pytest.raises(Crash):
        execute.reconcile(RESOURCE, [JOB, CONFIG], plan_both)
    assert "PATCH status" not in api


def test_an_owner_being_deleted_gets_no_new_children(api: list[str]) -> None:
    deleting = {**RESOURCE, "metadata": {**RESOURCE["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    execute.reconcile(deleting, [JOB, CONFIG], plan_both)
    assert "POST ConfigMap/r-config" not in api  # missing: not created
    assert "PATCH PyTorchJob/r" in api  # exists: still brought to the plan
    execute.reconcile(RESOURCE, [JOB, CONFIG], plan_both)
    assert "POST ConfigMap/r-config" in api  # the same plan for a live owner creates it


def test_event_names_tell_occurrences_apart_and_repeat_for_the_same_one() -> None:
    now = plans.parse_rfc3339("2026-01-01T00:00:00Z")
    first = plans.Event("CreatingJob", "creating PyTorchJob r", occurrence="Running@t1")
    name = objects.event_manifest(RESOURCE, first, now)["metadata"]["name"]
    later = objects.event_manifest(RESOURCE, first, plans.parse_rfc3339("2026-01-01T01:00:00Z"))
    assert later["metadata"]["name"] == name  # a retry of the same occurrence: the API says 409
    second = plans.Event("CreatingJob", "creating PyTorchJob r", occurrence="Running@t2")
    assert objects.event_manifest(RESOURCE, second, now)["metadata"]["name"] != name
