"""flywheel.local.execute: the kube executor's twin over the SQLite store. The TrainingRun
controller's real plans are carried out; nothing is mocked (no process is started: the realiser
is not called here)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from flywheel import errors
from flywheel.controllers import deployment, pytorchjob, settings, trainingrun
from flywheel.local import execute, store

NOW = datetime.datetime(2026, 12, 7, 20, 0, tzinfo=datetime.UTC)
RUN = {
    "apiVersion": "flywheel.dev/v1alpha1",
    "kind": "TrainingRun",
    "metadata": {"name": "iris", "namespace": "default"},
    "spec": {"data": {"repo": "r", "path": "d.csv"}, "model": {"task": "classification", "target": "y"}},
}


def reconcile(s: store.Store) -> execute.Outcome:
    resource = s.get("TrainingRun", "iris")
    assert resource is not None
    return execute.reconcile_once(s, trainingrun, resource, settings.Settings(), NOW)[1]


def test_first_reconcile_creates_the_children_then_a_second_writes_nothing(tmp_path: Path) -> None:
    s = store.Store(tmp_path)
    s.put(RUN)
    first = reconcile(s)
    assert first.writes[:2] == [
        "created ConfigMap/iris-config",
        "created PyTorchJob/iris",
    ]  # the plan's order
    assert "status TrainingRun/iris" in first.writes and "event CreatingJob" in first.writes
    job = s.get(pytorchjob.KIND, "iris")
    assert job is not None and job["apiVersion"] == pytorchjob.API_VERSION
    assert job["metadata"]["ownerReferences"][0]["uid"] == s.get("TrainingRun", "iris")["metadata"]["uid"]
    status = s.get("TrainingRun", "iris")["status"]
    assert status["observedGeneration"] == 1 and status["phase"] == "Pending"
    # The next look sees the job (not started yet): JobCreated, as the operator's converge says at once.
    assert reconcile(s).writes == ["status TrainingRun/iris"]
    assert s.get("TrainingRun", "iris")["status"]["conditions"][0]["reason"] == "JobCreated"
    assert reconcile(s).writes == []  # and from then on, reconciling again is a no-op


def test_a_spec_change_before_the_job_started_deletes_it_then_creates_it_anew(tmp_path: Path) -> None:
    s = store.Store(tmp_path)
    s.put(RUN)
    reconcile(s)
    s.put({**RUN, "spec": {**RUN["spec"], "training": {"epochs": 3}}})
    assert reconcile(s).writes[:2] == ["deleted PyTorchJob/iris", "deleted ConfigMap/iris-config"]
    assert s.get(pytorchjob.KIND, "iris") is None
    assert reconcile(s).writes[:2] == ["created ConfigMap/iris-config", "created PyTorchJob/iris"]
    job = s.get(pytorchjob.KIND, "iris")
    assert job["metadata"]["annotations"][pytorchjob.ANNOTATION_GENERATION] == "2"


def test_a_lost_config_map_is_put_back_while_the_job_runs(tmp_path: Path) -> None:
    s = store.Store(tmp_path)
    s.put(RUN)
    reconcile(s)
    running = [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}]
    s.patch_status(pytorchjob.KIND, "iris", {"conditions": running})
    s.delete("ConfigMap", "iris-config")
    assert "created ConfigMap/iris-config" in reconcile(s).writes
    assert s.get("TrainingRun", "iris")["status"]["phase"] == "Running"


DEPLOYMENT = {
    "apiVersion": "flywheel.dev/v1alpha1",
    "kind": "Deployment",
    "metadata": {"name": "shuttle", "namespace": "default"},
    "spec": {"champion": {"uri": "file:///models/m1"}, "port": 3999},
}


def test_a_deployments_serving_child_shares_the_kind_but_not_the_listing(tmp_path: Path) -> None:
    """The apps/v1 child of a Deployment is stored under kind Deployment too: listing the kind
    (`flywheel get deployment`) shows Flywheel's only, and the child is listed by its apiVersion."""
    s = store.Store(tmp_path)
    resource = s.put(DEPLOYMENT)
    execute.reconcile_once(s, deployment, resource, settings.Settings(service_host="127.0.0.1"), NOW)
    assert [m["metadata"]["name"] for m in s.list("Deployment")] == ["shuttle"]
    (child,) = s.list("Deployment", api_version="apps/v1")
    assert child["metadata"]["name"] == "shuttle-serving"
    assert s.get("Deployment", "shuttle")["status"]["endpoint"] == "http://127.0.0.1:3999"


def test_a_child_never_overwrites_an_object_of_another_group_with_its_name(tmp_path: Path) -> None:
    """The store keys by kind and name: a Flywheel Deployment named `shuttle-serving` would be
    overwritten by the serving child of `shuttle`. The plan is refused instead, naming both."""
    s = store.Store(tmp_path)
    s.put({**DEPLOYMENT, "metadata": {"name": "shuttle-serving", "namespace": "default"}})
    resource = s.put(DEPLOYMENT)
    with pytest.raises(errors.UserError, match="Deployment/shuttle-serving: the name is taken"):
        execute.reconcile_once(s, deployment, resource, settings.Settings(), NOW)
    assert s.get("Deployment", "shuttle-serving")["apiVersion"] == "flywheel.dev/v1alpha1"
