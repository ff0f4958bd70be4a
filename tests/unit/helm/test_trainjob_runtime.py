"""The chart's optional ClusterTrainingRuntime (trainJob.runtime), rendered by the real Helm engine
and validated against the vendored Trainer v2.3.0 ClusterTrainingRuntime CRD; the operators are
pointed at it, and the TrainingRun and SelfPlayRun operators may manage TrainJobs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.controllers import upstream_trainjob as v2
from tests.unit.helm import test_chart

INSTALL = {"trainJob": {"runtime": {"install": True}}}


def runtime_doc(values: dict[str, Any] | None = None) -> dict[str, Any]:
    docs = test_chart.render(values or INSTALL)
    [runtime] = [d for d in docs if d["kind"] == "ClusterTrainingRuntime"]
    return runtime


def operator_env(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    out = {}
    for doc in docs:
        if doc["kind"] == "Deployment":
            for c in doc["spec"]["template"]["spec"]["containers"]:
                out.update({e["name"]: e.get("value") for e in c.get("env", []) if e["name"] == name})
    return out


def test_not_installed_by_default_and_operators_use_the_stock_runtime() -> None:
    docs = test_chart.render({})
    assert not [d for d in docs if d["kind"] == "ClusterTrainingRuntime"]
    assert operator_env(docs, "FLYWHEEL_TRAINJOB_RUNTIME") == {
        "FLYWHEEL_TRAINJOB_RUNTIME": "torch-distributed"
    }


@pytest.mark.parametrize(
    "policy",
    [{}, {"coscheduling": {"scheduleTimeoutSeconds": 300}}, {"volcano": {}}],
    ids=["none", "coscheduling", "volcano"],
)
def test_installed_runtime_is_valid_upstream_and_used(policy: dict[str, Any]) -> None:
    values = {
        "trainJob": {"runtime": {"install": True, "podGroupPolicy": policy, "ttlSecondsAfterFinished": 600}}
    }
    docs = test_chart.render(values)
    runtime = runtime_doc(values)
    assert v2.runtime_errors(runtime) == []
    assert runtime["metadata"]["name"] == "flywheel-torch"
    assert runtime["spec"].get("podGroupPolicy", {}) == policy
    spec = runtime["spec"]["template"]["spec"]
    assert (spec["failurePolicy"]["maxRestarts"], spec["ttlSecondsAfterFinished"]) == (3, 600)
    [rjob] = spec["replicatedJobs"]
    [node] = rjob["template"]["spec"]["template"]["spec"]["containers"]
    assert (rjob["name"], node["name"], node["terminationMessagePath"]) == (
        "node",
        "node",
        "/dev/termination-log",
    )
    assert operator_env(docs, "FLYWHEEL_TRAINJOB_RUNTIME") == {"FLYWHEEL_TRAINJOB_RUNTIME": "flywheel-torch"}


def test_the_stock_runtime_is_valid_upstream_too() -> None:
    """The vendored torch-distributed template (template lines dropped) passes the same CRD, so
    the validation above is not vacuous for runtimes shaped differently from ours."""
    stock = v2.stock_runtime()
    assert v2.runtime_errors(stock) == []
    bad = {**stock, "spec": {**stock["spec"], "mlPolicy": {"numNodes": "two", "torch": {}}}}
    assert v2.runtime_errors(bad)


def test_values_schema_rejects_two_pod_group_policies() -> None:
    with pytest.raises(Exception, match=r"podGroupPolicy|maxProperties|additional"):
        test_chart.render({"trainJob": {"runtime": {"podGroupPolicy": {"volcano": {}, "coscheduling": {}}}}})


def test_run_operators_may_manage_trainjobs() -> None:
    docs = test_chart.render({})
    for doc in docs:
        if doc["kind"] == "ClusterRole" and any(r.get("resources") == ["pytorchjobs"] for r in doc["rules"]):
            rules = [r for r in doc["rules"] if r.get("resources") == ["trainjobs"]]
            assert rules and rules[0]["apiGroups"] == ["trainer.kubeflow.org"]
            assert {"create", "get", "list", "watch", "delete"} <= set(rules[0]["verbs"])
