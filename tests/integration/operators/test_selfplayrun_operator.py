"""The SelfPlayRun operator, run by kopf for real against the Kubernetes API emulator over HTTP.

Stand-ins (the only mocked parties): the Kubeflow Training Operator (tests patch the PyTorchJob's
status and create its Master pod) and the kubelet, which serves the Master pod's log (a kmock route
answers GET pods/<master>/log with the lines rank 0 would have printed) and its termination message.
The children are checked against the upstream PyTorchJob CRD and webhook rules and the official
Kubernetes schemas, as the API server stored them.
"""

from __future__ import annotations

import asyncio
import copy
import json
import pathlib
from typing import Any

import kopf
import pytest
import yaml

from flywheel.controllers import selfplayrun
from flywheel.kube import client
from operators import _startup, reconcile
from operators import selfplayrun as selfplayrun_operator
from tests.integration.operators import conftest
from tests.integration.operators import test_trainingrun_operator as tr_tests
from tests.unit.controllers import upstream

NS = conftest.NAMESPACE
RUNS = "flywheel.dev/v1alpha1/selfplayruns"
JOBS = "kubeflow.org/v1/pytorchjobs"
POLICIES = "networking.k8s.io/v1/networkpolicies"
CONFIGMAPS = "v1/configmaps"
MASTER = "azr-tiny-master-0"
LOG_PATH = f"/api/v1/namespaces/{NS}/pods/{MASTER}/log"
EXAMPLE = yaml.safe_load((pathlib.Path(__file__).parents[3] / "examples/selfplayrun-tiny.yaml").read_text())
TASKS = ("abduction", "deduction", "induction")
TOTAL = EXAMPLE["spec"]["selfPlay"]["steps"]

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def platform_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example leaves spec.artifacts at its default: on a cluster the chart's artifacts.uri fills
    it. (NetworkPolicies are declared by kube_emulator; requeues and retries keep their real delays:
    the operator runs on fake time, conftest.running.)"""
    monkeypatch.setenv("FLYWHEEL_ARTIFACTS_URI", "pvc://flywheel-artifacts")


def make_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    _startup.register(registry, login=kopf.login_with_kubeconfig)
    selfplayrun_operator.register(registry)
    return registry


def manifest() -> dict[str, Any]:
    out = copy.deepcopy(EXAMPLE)
    out["metadata"]["namespace"] = NS
    return out


def step_line(step: int, solve: float) -> str:
    """A step event as the trainer prints it (flywheel.selfplay.trainer: sorted keys, one line)."""
    per_task = lambda v: dict.fromkeys(TASKS, v)  # noqa: E731
    event = {
        "event": "step", "step": step, "steps": TOTAL, "buffers": per_task(step + 1),
        "validProposalRate": per_task(0.5), "solveRate": per_task(solve), "proposerReward": per_task(0.25),
        "solverReward": per_task(-0.5), "loss": 0.1, "gradNorm": 0.2, "tokens": 99,
        "executor": {"programs": 12, "seconds": 0.1, "programsPerSecond": 120.0},
        "checkpoint": f"file:///a/checkpoints/step-{step:06d}.pt", "seconds": 1.5 * step,
    }  # fmt: skip
    return json.dumps(event, sort_keys=True)


def run_status(em: Any) -> dict[str, Any]:
    runs = em.live(RUNS, NS)
    return (runs[0].get("status") or {}) if runs else {}


def ready(em: Any) -> dict[str, Any]:
    return next((c for c in run_status(em).get("conditions", []) if c["type"] == "Ready"), {})


async def start_job(em: Any, log: list[str]) -> None:
    """The Training Operator starts the job and its Master pod; the kubelet serves the log."""
    em[f"get {LOG_PATH}"] << (lambda: "\n".join(log).encode() + b"\n")
    await conftest.eventually(lambda: em.live(JOBS, NS), what="the PyTorchJob")
    await tr_tests.patch_status(
        "kubeflow.org/v1", "PyTorchJob", "azr-tiny", tr_tests.job_condition("Running")
    )
    await tr_tests.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": MASTER, "namespace": NS},
                           "spec": {"containers": [{"name": "pytorch", "image": "selfplay"}]}})  # fmt: skip
    await tr_tests.patch_status("v1", "Pod", MASTER, {"phase": "Running"})


async def test_children_are_fence_config_and_job_all_valid_and_owned(emulator: Any) -> None:
    async with conftest.running(make_registry(), fake_time=True):
        run = await tr_tests.create(manifest())
        await conftest.eventually(lambda: emulator.live(JOBS, NS), what="the PyTorchJob")
    (job,) = emulator.live(JOBS, NS)
    (policy,) = emulator.live(POLICIES, NS)
    (config_map,) = emulator.live(CONFIGMAPS, NS)
    assert upstream.schema_errors(job) == [] and upstream.webhook_errors(job) == []
    for obj in (policy, config_map):
        upstream.validate_core({k: v for k, v in obj.items() if k != "status"})
    for obj in (job, policy, config_map):
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["uid"] == run["metadata"]["uid"] and owner["kind"] == "SelfPlayRun"
    assert policy["spec"]["egress"] == [] and policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    pod_labels = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()  # it fences them
    assert run_status(emulator)["phase"] == "Pending" and run_status(emulator)["observedGeneration"] == 1


async def test_per_step_progress_then_result_reach_status(emulator: Any) -> None:
    log = ["[I] torchrun starting", json.dumps({"event": "start", "step": 0, "steps": TOTAL})]
    async with conftest.running(make_registry(), fake_time=True):
        await tr_tests.create(manifest())
        await start_job(emulator, log)
        log.append(step_line(1, 0.0))
        await conftest.eventually(lambda: run_status(emulator).get("step") == 1, what="step 1 in status")
        running = run_status(emulator)
        assert running["phase"] == "Running" and ready(emulator)["status"] == "Unknown"
        assert running["solveRate"] == dict.fromkeys(TASKS, 0.0) and running["buffers"]["induction"] == 2
        assert running["checkpoint"].endswith("step-000001.pt") and f"step 1/{TOTAL}" in running["message"]
        log.extend([step_line(2, 0.25), "a stray line {not json", step_line(3, 0.5)[:40]])  # torn last line
        await conftest.eventually(lambda: run_status(emulator).get("step") == 2, what="step 2 in status")
        assert run_status(emulator)["solveRate"]["deduction"] == 0.25
        # The run ends: the Master pod's termination message carries the result.
        result = {"phase": "Succeeded", "message": f"self-play finished at step {TOTAL}", "step": TOTAL,
                  "buffers": dict.fromkeys(TASKS, 5), "solveRate": dict.fromkeys(TASKS, 0.75),
                  "checkpoint": f"file:///a/checkpoints/step-{TOTAL:06d}.pt"}  # fmt: skip
        terminated = {"exitCode": 0, "reason": "Completed", "message": json.dumps(result)}
        await tr_tests.patch_status("v1", "Pod", MASTER,
                                    {"phase": "Succeeded", "containerStatuses": [{"name": "pytorch", "state": {"terminated": terminated}}]})  # fmt: skip
        reads = len(emulator[f"get {LOG_PATH}"])
        await tr_tests.patch_status(
            "kubeflow.org/v1", "PyTorchJob", "azr-tiny", tr_tests.job_condition("Succeeded")
        )
        await conftest.eventually(lambda: run_status(emulator).get("phase") == "Succeeded", what="Succeeded")
        await asyncio.sleep(0.5)
        assert len(emulator[f"get {LOG_PATH}"]) <= reads + 1  # no log reads once it ended
    final = run_status(emulator)
    assert final["step"] == TOTAL and final["solveRate"] == dict.fromkeys(TASKS, 0.75)
    assert final["checkpoint"].endswith(f"step-{TOTAL:06d}.pt") and ready(emulator)["status"] == "True"


async def test_a_deleted_fence_comes_back_and_reconciling_twice_writes_nothing(emulator: Any) -> None:
    async with conftest.running(make_registry(), fake_time=True):
        await tr_tests.create(manifest())
        await start_job(emulator, [step_line(1, 0.0)])
        await conftest.eventually(lambda: run_status(emulator).get("step") == 1, what="step 1 in status")
        await tr_tests.call(
            "DELETE", client.path("networking.k8s.io/v1", "NetworkPolicy", NS, "azr-tiny-sandbox")
        )
        await conftest.eventually(lambda: emulator.live(POLICIES, NS), what="the fence back")
        await asyncio.sleep(0.3)
    before = len(emulator.writes())
    run = emulator.live(RUNS, NS)[0]
    settings = reconcile.settings_mod.Settings.from_env()  # the platform store, as the operator has it
    _, outcome = await asyncio.to_thread(reconcile.reconcile_once, selfplayrun_operator, run, settings)
    assert outcome.writes == [] and len(emulator.writes()) == before
    assert selfplayrun.network_policy_name("azr-tiny") == "azr-tiny-sandbox"
