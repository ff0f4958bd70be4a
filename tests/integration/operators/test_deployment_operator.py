"""The Deployment operator, run by kopf for real against the Kubernetes API emulator over HTTP.

No kube-controller-manager runs here: the tests patch the apps/v1 Deployment's status themselves,
standing in for the Deployment controller rolling pods (the only mocked party), and write the
TrainingRuns' status as the TrainingRun operator would. The children the operator sends are
validated against the official Kubernetes 1.30 schemas (kubernetes-validate, strict).
"""

from __future__ import annotations

import asyncio
import copy
import pathlib
from typing import Any

import kmock
import kopf
import kubernetes_validate
import pytest
import yaml

from flywheel.api import contract
from flywheel.controllers import deployment
from operators import _startup, reconcile
from operators import deployment as deployment_operator
from tests.integration.operators import conftest, kube_emulator
from tests.integration.operators import test_trainingrun_operator as tr_tests

NS = conftest.NAMESPACE
MDEPS = "flywheel.dev/v1alpha1/deployments"
APPS = "apps/v1/deployments"
CHILD = "shuttle-serving"
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
EXTRA = {
    APPS: kmock.ResourceInfo(
        kind="Deployment", singular="deployment", namespaced=True, subresources={"status"}, verbs=VERBS
    ),
    "v1/services": kmock.ResourceInfo(kind="Service", singular="service", namespaced=True, verbs=VERBS),
    "autoscaling/v2/horizontalpodautoscalers": kmock.ResourceInfo(
        kind="HorizontalPodAutoscaler", singular="horizontalpodautoscaler", namespaced=True, verbs=VERBS
    ),
    "policy/v1/poddisruptionbudgets": kmock.ResourceInfo(
        kind="PodDisruptionBudget", singular="poddisruptionbudget", namespaced=True, verbs=VERBS
    ),
}
EXAMPLE = yaml.safe_load((pathlib.Path(__file__).parents[3] / "examples/deployment.yaml").read_text())

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def serving_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Declare the serving children's kinds before the emulator starts. Requeues (a champion still
    training: REQUEUE_WAITING) and retries keep their real delays: the operator runs on fake time."""
    for key, info in EXTRA.items():
        monkeypatch.setitem(kube_emulator.RESOURCES, key, info)


def make_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    _startup.register(registry, login=kopf.login_with_kubeconfig)
    deployment_operator.register(registry)
    return registry


def manifest(run: str = "train-a") -> dict[str, Any]:
    """examples/deployment.yaml with its champion from TrainingRun `run` (shadow challenger, HPA 2-8)."""
    out = copy.deepcopy(EXAMPLE)
    out["metadata"] = {"name": "shuttle", "namespace": NS}
    out["spec"]["champion"] = {"fromTrainingRun": run}
    return out


async def training_run(name: str, version: str, succeeded: bool = True) -> str:
    """A TrainingRun as its operator leaves it; returns its model directory URI."""
    await tr_tests.create(tr_tests.run_manifest(name))
    model = f"pvc://flywheel-artifacts/default/trainingruns/{name}/model"
    if succeeded:
        status = {
            "phase": "Succeeded",
            "model": {"cardUri": f"{model}/model_card.json", "quantizedUri": f"{model}/model_int8.onnx", "version": version},
        }  # fmt: skip
        await tr_tests.patch_status("flywheel.dev/v1alpha1", "TrainingRun", name, status)
    return model


def status(em: Any) -> dict[str, Any]:
    items = em.live(MDEPS, NS)
    return (items[0].get("status") or {}) if items else {}


def condition(em: Any, type_: str = "Ready") -> dict[str, Any]:
    return next((c for c in status(em).get("conditions", []) if c["type"] == type_), {})


def child(em: Any) -> dict[str, Any]:
    return next(d for d in em.live(APPS, NS) if d["metadata"]["name"] == CHILD)


async def roll(em: Any, replicas: int = 2) -> None:
    """The Deployment controller's part: every replica updated to the current template and ready."""
    generation = child(em)["metadata"]["generation"]
    rolled = {"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
              "readyReplicas": replicas, "availableReplicas": replicas}  # fmt: skip
    await tr_tests.patch_status("apps/v1", "Deployment", CHILD, rolled)


def template_env(dep: dict[str, Any]) -> dict[str, str]:
    container = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


async def test_children_validate_and_champion_change_rolls_out_with_status(emulator: Any) -> None:
    model_a = await training_run("train-a", "a-1")
    model_b = await training_run("train-b", "b-1")
    async with conftest.running(make_registry(), fake_time=True):
        await tr_tests.create(manifest())
        await conftest.eventually(lambda: emulator.live(APPS, NS), what="the serving Deployment")
        await conftest.eventually(
            lambda: condition(emulator).get("reason") == "RollingOut", what="RollingOut"
        )
        kinds = {}
        for key in ("v1/configmaps", APPS, "v1/services", *list(EXTRA)[2:]):
            (obj,) = emulator.live(key, NS)
            kubernetes_validate.validate(obj, "1.30", strict=True)  # what the API server stored
            kinds[obj["kind"]] = obj
        assert set(kinds) == {
            "ConfigMap",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
        }
        assert template_env(child(emulator))[contract.ENV_CHAMPION_URI] == model_a
        assert status(emulator)["readyReplicas"] == 0 and condition(emulator)["status"] == "Unknown"

        await roll(emulator)
        await conftest.eventually(lambda: condition(emulator).get("status") == "True", what="Ready")
        first = status(emulator)
        assert first["endpoint"] == f"http://{CHILD}.{NS}.svc:3000"
        assert (first["replicas"], first["readyReplicas"], first["phase"]) == (2, 2, "Running")
        assert (first["championVersion"], first["championUri"]) == ("a-1", model_a)
        assert (first["servedChampionVersion"], first["servedChampionUri"]) == ("a-1", model_a)
        assert first["challengerUri"] == EXAMPLE["spec"]["challenger"]["uri"]
        assert condition(emulator, "ChallengerReady")["status"] == "True"
        old_hash = child(emulator)["spec"]["template"]["metadata"]["annotations"][
            contract.ANNOTATION_CONFIG_HASH
        ]

        # A promotion: the champion now comes from train-b.
        patch = {"spec": {"champion": {"fromTrainingRun": "train-b"}}}
        await tr_tests.call("PATCH", tr_tests.client.path("flywheel.dev/v1alpha1", "Deployment", NS, "shuttle"),
                            patch, tr_tests.objects.MERGE_PATCH)  # fmt: skip
        await conftest.eventually(lambda: template_env(child(emulator))[contract.ENV_CHAMPION_URI] == model_b,
                                  what="the new champion in the pod template")  # fmt: skip
        rolled = child(emulator)
        assert (
            rolled["spec"]["template"]["metadata"]["annotations"][contract.ANNOTATION_CONFIG_HASH] != old_hash
        )
        assert rolled["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
        await conftest.eventually(lambda: condition(emulator).get("reason") == "RollingOut", what="rolling")
        assert status(emulator)["rollbackTarget"] == model_a
        # Wanted b-1 at once; served stays a-1 while the old pods answer (not Ready yet).
        mid = status(emulator)
        assert (mid["championVersion"], mid["servedChampionVersion"]) == ("b-1", "a-1")
        await roll(emulator)
        await conftest.eventually(lambda: status(emulator).get("championVersion") == "b-1"
                                  and condition(emulator).get("status") == "True", what="Ready on b-1")  # fmt: skip
    final = status(emulator)
    assert final["servedChampionUri"] == model_b
    assert (final["championUri"], final["rollbackTarget"], final["observedGeneration"]) == (
        model_b,
        model_a,
        2,
    )
    reasons = {e["reason"] for e in emulator.live("v1/events", NS)
               if e.get("involvedObject", {}).get("kind") == "Deployment"}  # fmt: skip
    assert {"RollingOut", "Available", "ChampionChanged"} <= reasons
    # Level-based: once converged, reconciling again writes nothing.
    settings = reconcile.settings_mod.Settings()
    _, outcome = await asyncio.to_thread(
        reconcile.reconcile_once, deployment, emulator.live(MDEPS, NS)[0], settings
    )
    assert outcome.writes == []


async def test_waits_for_the_training_run_then_serves_it(emulator: Any) -> None:
    await training_run("train-a", "a-1", succeeded=False)
    async with conftest.running(make_registry(), fake_time=True):
        await tr_tests.create(manifest())
        await conftest.eventually(
            lambda: condition(emulator).get("reason") == "WaitingForModel", what="waiting"
        )
        assert emulator.live(APPS, NS) == [] and condition(emulator)["status"] == "Unknown"
        assert "train-a has not succeeded yet" in condition(emulator)["message"]
        done = {"phase": "Succeeded", "model": {"cardUri": "pvc://a/m/model_card.json", "version": "a-1"}}
        await tr_tests.patch_status("flywheel.dev/v1alpha1", "TrainingRun", "train-a", done)
        await conftest.eventually(
            lambda: emulator.live(APPS, NS), what="the serving Deployment after the run"
        )
    assert template_env(child(emulator))[contract.ENV_CHAMPION_URI] == "pvc://a/m"


async def test_deleting_the_deployment_leaves_nothing_behind(emulator: Any) -> None:
    """Every child carries an owner reference to the Deployment's uid (the emulated GC follows
    them), and no late child event or requeue re-creates anything."""
    await training_run("train-a", "a-1")
    async with conftest.running(make_registry(), fake_time=True):
        await tr_tests.create(manifest())
        await conftest.eventually(lambda: len(emulator.live("policy/v1/poddisruptionbudgets", NS)) == 1,
                                  what="all five children")  # fmt: skip
        await tr_tests.call(
            "DELETE", tr_tests.client.path("flywheel.dev/v1alpha1", "Deployment", NS, "shuttle")
        )
        await conftest.eventually(lambda: not emulator.live(MDEPS, NS), what="the Deployment gone")
        await asyncio.sleep(0.5)
    for key in ("v1/configmaps", *EXTRA):
        assert emulator.live(key, NS) == [], key
    assert len(emulator.live("flywheel.dev/v1alpha1/trainingruns", NS)) == 1  # not ours to delete


def config_hash(dep: dict[str, Any]) -> str:
    return str(dep["spec"]["template"]["metadata"]["annotations"][contract.ANNOTATION_CONFIG_HASH])


async def test_a_retrained_run_rolls_the_pods_and_an_unchanged_one_does_not(emulator: Any) -> None:
    """The TrainingRun succeeds again with a new model at the same URI (what a retrain writes): the
    operator learns it from the TrainingRun's watch event alone, the version in the serving config
    changes the pod template's hash, and status names the version served once the pods rolled. The
    same version reported again (a status refresh) changes nothing."""
    model = await training_run("train-a", "train-a-0f0f0f0f0f0f")
    async with conftest.running(make_registry()):
        await tr_tests.create(manifest())
        await conftest.eventually(lambda: emulator.live(APPS, NS), what="the serving Deployment")
        await roll(emulator)
        await conftest.eventually(lambda: condition(emulator).get("status") == "True", what="Ready")
        before = config_hash(child(emulator))

        retrained = {"phase": "Succeeded", "model": {"cardUri": f"{model}/model_card.json",
                     "quantizedUri": f"{model}/model_int8.onnx", "version": "train-a-1a1a1a1a1a1a"}}  # fmt: skip
        await tr_tests.patch_status("flywheel.dev/v1alpha1", "TrainingRun", "train-a", retrained)
        await conftest.eventually(lambda: config_hash(child(emulator)) != before, what="the pods rolling")
        assert template_env(child(emulator))[contract.ENV_CHAMPION_URI] == model  # same URI, new model
        (config_map,) = emulator.live("v1/configmaps", NS)
        assert '"version": "train-a-1a1a1a1a1a1a"' in config_map["data"][contract.CONFIG_FILE]
        await conftest.eventually(lambda: condition(emulator).get("reason") == "RollingOut", what="rolling")
        await roll(emulator)
        await conftest.eventually(lambda: status(emulator).get("championVersion") == "train-a-1a1a1a1a1a1a"
                                  and condition(emulator).get("status") == "True", what="Ready on the retrain")  # fmt: skip
        rolled = config_hash(child(emulator))

        again = {**retrained, "message": "status refreshed, same model"}
        await tr_tests.patch_status("flywheel.dev/v1alpha1", "TrainingRun", "train-a", again)
        await asyncio.sleep(0.5)
        assert config_hash(child(emulator)) == rolled
    messages = [e["message"] for e in emulator.live("v1/events", NS)
                if e.get("involvedObject", {}).get("kind") == "Deployment" and e["reason"] == "ChampionChanged"]  # fmt: skip
    assert messages == ["champion train-a-0f0f0f0f0f0f -> train-a-1a1a1a1a1a1a; rolling pods"]
    assert status(emulator)["championUri"] == model and not status(emulator).get("rollbackTarget")
    settings = reconcile.settings_mod.Settings()
    _, outcome = await asyncio.to_thread(
        reconcile.reconcile_once, deployment, emulator.live(MDEPS, NS)[0], settings
    )
    assert outcome.writes == []
