"""One control plane: the same TrainingRun and SelfPlayRun on both backends end with equal
conditions (type, status, reason) and the same phase.

Local: `runners.<kind>.run` for real (the controller plans, flywheel.local.execute writes the store,
the realiser runs a real torchrun of the real trainer: DVC resolve, the gate, training, export).
Kubernetes: the operator's reconcile path (`operators.reconcile.reconcile_once`, flywheel.kube over
real HTTP) against the kmock API emulator. No Training Operator or kubelet runs there, so the test
stands in for them, the one mocked party: it sets the PyTorchJob Running, then replays what the
local workload really left (the job's final conditions and the Master pod with its termination
message). Equal conditions then mean the two adapters feed the controller the same world and
carry out its plans the same way; a local path that decided anything itself would differ.

Scenarios: Succeeded, Failed at the data gate, Failed in the trainer (a target column that is not
there, the gate off), a spec change after the run (SpecChangedAfterStart on both), and a SelfPlayRun whose
trainer succeeds or fails.

Deployment: locally a real `bentoml serve` of real trainer exports (tests/integration/serving/
trained.py), realised from the stored apps/v1 child; on Kubernetes no Deployment controller or
kubelet runs, so the test plays them by replaying the local child's status (replicas, ready and
updated counts, Available/Progressing) onto the emulator's apps/v1 Deployment (simulated pod
readiness), with observedGeneration set to that object's own generation. Scenarios: to Ready, a
champion whose TrainingRun Failed, a change of the champion (a rollout, a hot swap locally), and
a champion the pods cannot load (RolloutFailed; locally the live server refuses it).
"""

from __future__ import annotations

import asyncio
import copy
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich import console as rich_console

from flywheel.api import contract
from flywheel.controllers import deployment, plans, pytorchjob, trainingrun
from flywheel.controllers import settings as settings_mod
from flywheel.kube import client, objects
from flywheel.local import runners
from flywheel.local.runners import deployment as dep_runner
from flywheel.local.runners import trainingrun as tr_runner
from operators import reconcile
from operators import selfplayrun as selfplay_operator
from tests.integration.local import test_deployment_runner as served
from tests.integration.operators.conftest import emulator  # noqa: F401  (the fixture)
from tests.integration.serving import trained

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.usefixtures("emulator")]
ROOT = Path(__file__).resolve().parents[3]
NS = "default"


def training_manifest(name: str, **spec: Any) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples" / "trainingrun-local.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": NS}
    doc["spec"]["training"] = {"epochs": 1, "checkpointEvery": 1000}
    doc["spec"]["model"]["architecture"] = {"hiddenLayers": [8]}
    doc["spec"]["resources"] = {"procsPerReplica": 1}
    doc["spec"].update(spec)
    return doc


def selfplay_manifest(name: str) -> dict[str, Any]:
    """examples/selfplayrun-tiny.yaml cut to one small step (as test_selfplayrun_runner does): the
    test is about who decides the status, not about self-play."""
    doc = yaml.safe_load((ROOT / "examples" / "selfplayrun-tiny.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": NS}
    doc["spec"]["policy"].pop("warmStart", None)
    doc["spec"]["heldOut"] = {"every": 1, "tasks": 2, "samples": 0}
    doc["spec"]["selfPlay"].update(
        steps=1, batchSize=1, solveRateRollouts=1, maxNewTokens=96, inductionInputs=4, references=1
    )
    doc["spec"]["executor"]["workers"] = 1
    return doc


def selfplay_failing_manifest(tmp: Path) -> dict[str, Any]:
    doc = selfplay_manifest("azr-broken")
    doc["spec"]["policy"]["model"] = str(tmp / "no-model-here")  # a valid spec; no model there
    return doc


Scenario = tuple[runners.Context, dict[str, Any], dict[str, Any]]
"""(the local context, the manifest as applied, the resource's status when the scenario ended)."""


def run_local(workdir: Path, manifest: dict[str, Any], home: str) -> runners.Context:
    ctx = runners.Context.create(workdir / home, console=rich_console.Console(file=io.StringIO()))
    ctx.cwd = workdir
    module = runners.runner(manifest["kind"])
    assert module is not None
    module.run(ctx, ctx.store.put(manifest))
    return ctx


def ended(ctx: runners.Context, manifest: dict[str, Any]) -> Scenario:
    got = ctx.store.get(manifest["kind"], manifest["metadata"]["name"], NS)
    assert got is not None
    return ctx, manifest, copy.deepcopy(got["status"])


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scenario]:
    """Every scenario run once on the local backend (real processes), keyed by scenario."""
    workdir = tmp_path_factory.mktemp("parity")
    impossible = {"type": "expect_column_values_to_be_between", "kwargs": {"column": "f1", "min_value": 1e6}}
    gated = training_manifest("gated")
    gated["spec"]["data"]["validation"] = {"expectations": [impossible]}
    broken = training_manifest("broken")
    broken["spec"]["model"]["target"] = "no_such_column"  # the gate would catch it: it is off here
    broken["spec"]["data"]["validation"] = {"enabled": False}
    ok = training_manifest("ok")
    out = {
        "succeeded": ended(run_local(workdir, ok, "home-ok"), ok),
        "gate": ended(run_local(workdir, gated, "home-gate"), gated),
        "trainer": ended(run_local(workdir, broken, "home-broken"), broken),
    }
    changed = training_manifest("ok")
    changed["spec"]["training"]["epochs"] = 2
    ctx = out["succeeded"][0]
    # The operator's rule: a finished run does not train again; it stays Succeeded and says the
    # edit in SpecDiverged.
    assert tr_runner.run(ctx, ctx.store.put(changed)) is True
    out["changed"] = ended(ctx, changed)
    assert tr_runner.run(ctx, ctx.store.get("TrainingRun", "ok", NS)) is True  # and it stays said
    spr = selfplay_failing_manifest(workdir)
    out["selfplay-failed"] = ended(run_local(workdir, spr, "home-spr"), spr)
    played = selfplay_manifest("azr")
    out["selfplay-succeeded"] = ended(run_local(workdir, played, "home-spr-ok"), played)
    return out


def summary(status: dict[str, Any]) -> tuple[str, list[tuple[str, str, str]]]:
    conds = sorted((c["type"], c["status"], c["reason"]) for c in status.get("conditions") or [])
    return status.get("phase", ""), conds


async def call(method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
    return await asyncio.to_thread(client.request, method, path, body, content_type)


async def live(api_version: str, kind: str, name: str) -> dict[str, Any]:
    got = await asyncio.to_thread(objects.get, plans.Ref(api_version, kind, name, NS))
    assert got is not None, f"{kind}/{name} is not on the API server"
    return got


async def reconcile_on_kube(controller: Any, kind: str, name: str) -> dict[str, Any]:
    resource = await live("flywheel.dev/v1alpha1", kind, name)
    # The manifests leave spec.artifacts at its default; on a cluster the chart's store fills it.
    settings = settings_mod.Settings(artifacts_uri="pvc://flywheel-artifacts")
    await asyncio.to_thread(reconcile.reconcile_once, controller, resource, settings)
    return await live("flywheel.dev/v1alpha1", kind, name)


async def patch_status(api_version: str, kind: str, name: str, status: dict[str, Any]) -> None:
    path = client.path(api_version, kind, NS, name, "status")
    await call("PATCH", path, {"status": status}, objects.MERGE_PATCH)


async def on_kube(controller: Any, scenario: Scenario) -> dict[str, Any]:
    """The operator's path for the scenario's manifest, with the Training Operator and kubelet
    played by replaying the local children's final state. Returns the resource's status."""
    ctx, manifest, _ = scenario
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    await call("POST", client.manifest_path(manifest, collection=True), manifest)
    await reconcile_on_kube(controller, kind, name)  # creates the ConfigMap and the PyTorchJob
    job_name = pytorchjob.job_name(name)
    local_job = ctx.store.get(pytorchjob.KIND, job_name, NS)
    assert local_job is not None
    start = {"startTime": local_job["status"].get("startTime")}
    running = [{"type": t, "status": "True", "reason": f"PyTorchJob{t}"} for t in ("Created", "Running")]
    await patch_status(pytorchjob.API_VERSION, pytorchjob.KIND, job_name, {"conditions": running, **start})
    await reconcile_on_kube(controller, kind, name)
    pod_name = pytorchjob.master_pod_name(job_name)
    local_pod = ctx.store.get("Pod", pod_name, NS)
    if local_pod is not None:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name, "namespace": NS},
               "spec": {"containers": [{"name": pytorchjob.CONTAINER, "image": "trainer"}]}}  # fmt: skip
        await call("POST", client.manifest_path(pod, collection=True), pod)
        await patch_status("v1", "Pod", pod_name, local_pod["status"])
    await patch_status(pytorchjob.API_VERSION, pytorchjob.KIND, job_name, local_job["status"])
    return dict((await reconcile_on_kube(controller, kind, name))["status"])


@pytest.mark.parametrize(
    ("scenario", "phase", "reason"),
    [
        ("succeeded", "Succeeded", "Succeeded"),
        ("gate", "Failed", "ValidationFailed"),
        ("trainer", "Failed", "Failed"),
    ],
)
async def test_a_trainingrun_ends_alike_on_both_backends(
    local: dict[str, Scenario], scenario: str, phase: str, reason: str
) -> None:
    kube_status = await on_kube(trainingrun, local[scenario])
    local_status = local[scenario][2]
    assert summary(kube_status) == summary(local_status)
    assert summary(local_status)[0] == phase
    assert ("Ready", "True" if phase == "Succeeded" else "False", reason) in summary(local_status)[1]


async def test_a_spec_change_after_the_run_is_said_alike_on_both_backends(
    local: dict[str, Scenario],
) -> None:
    await on_kube(trainingrun, local["succeeded"])
    _, changed, local_status = local["changed"]
    path = client.manifest_path(changed)
    await call("PATCH", path, {"spec": changed["spec"]}, objects.MERGE_PATCH)
    kube_status = (await reconcile_on_kube(trainingrun, "TrainingRun", "ok"))["status"]
    assert summary(kube_status) == summary(local_status)
    # A finished run keeps its result (phase and Ready); the edit is its own condition.
    assert summary(local_status)[0] == "Succeeded"
    assert ("Ready", "True", "Succeeded") in summary(local_status)[1]
    assert ("SpecDiverged", "True", "SpecChangedAfterStart") in summary(local_status)[1]
    assert local_status["observedGeneration"] == kube_status["observedGeneration"] == 2


@pytest.mark.parametrize(
    ("scenario", "phase"), [("selfplay-succeeded", "Succeeded"), ("selfplay-failed", "Failed")]
)
async def test_a_selfplayrun_ends_alike_on_both_backends(
    local: dict[str, Scenario], scenario: str, phase: str
) -> None:
    kube_status = await on_kube(selfplay_operator, local[scenario])
    local_status = local[scenario][2]
    assert summary(kube_status) == summary(local_status)
    assert summary(local_status)[0] == phase
    if phase == "Failed":
        assert "config.json missing" in local_status["message"]
    else:  # the result fields come from the same termination message on both
        assert local_status["step"] == kube_status["step"] == 1
        assert local_status["solveRate"] == kube_status["solveRate"]


# --- Deployment -------------------------------------------------------------------------------------

SERVING_RUNS = {
    "shuttle": ("Succeeded", "wine-a"),
    "shuttle-2": ("Succeeded", "wine-b"),
    "broken": ("Failed", None),
}
ServingScenario = tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]
"""(the Deployment as applied, its local status at the end, its apps/v1 child as the realiser left it)."""


def training_run_record(home: Path, run: str, source: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A TrainingRun and the status its runner writes (Succeeded with the model of an export, or
    Failed): the Deployment's champion resolves from it on both backends."""
    phase, model = SERVING_RUNS[run]
    manifest = {"apiVersion": "flywheel.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": run, "namespace": NS},
                "spec": {"data": {"repo": "/unused", "path": "d.csv"},
                         "model": {"task": "classification", "target": "target"}}}  # fmt: skip
    if model is None:
        return manifest, {"phase": phase, "message": "trainer failed: boom"}
    target = home / "artifacts" / NS / "trainingruns" / run / "model"
    if not target.exists():
        shutil.copytree(trained.model_dir(source, model), target)
    card = trained.card(source, model)
    return manifest, {"phase": phase, "model": {"cardUri": f"{target.as_uri()}/{contract.MODEL_CARD}",
                      "quantizedUri": f"{target.as_uri()}/{contract.QUANTIZED_FILE}", "version": card["version"]}}  # fmt: skip


def serving_manifest(name: str, champion: str, port: int) -> dict[str, Any]:
    doc = yaml.safe_load(yaml.safe_dump(served.EXAMPLE))
    doc["metadata"] = {"name": name, "namespace": NS}
    doc["spec"]["champion"] = {"fromTrainingRun": champion}
    doc["spec"]["port"] = port
    return doc


def serving_ended(ctx: runners.Context, manifest: dict[str, Any]) -> ServingScenario:
    name = manifest["metadata"]["name"]
    got = ctx.store.get("Deployment", name, NS)
    assert got is not None
    child = ctx.store.get("Deployment", f"{name}-serving", NS)
    return manifest, copy.deepcopy(got["status"]), copy.deepcopy(child)


@pytest.fixture(scope="module")
def serving_local(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The Deployment scenarios on the local backend: a real server, promoted by a spec change."""
    source = trained.ensure(tmp_path_factory.getbasetemp())
    home = tmp_path_factory.mktemp("parity-serving")
    ctx = runners.Context.create(home, console=rich_console.Console(file=io.StringIO()), detach=True)
    ctx.cwd = home
    for run in SERVING_RUNS:
        manifest, status = training_run_record(home, run, source)
        ctx.store.put(manifest)
        ctx.store.patch_status("TrainingRun", run, status, NS)
    out: dict[str, ServingScenario] = {}
    try:
        ready = serving_manifest("serve", "shuttle", served.free_port())
        assert dep_runner.run(ctx, ctx.store.put(ready)) is True
        out["ready"] = serving_ended(ctx, ready)
        pid = ctx.supervisor.find("Deployment", "serve").pid  # type: ignore[union-attr]
        promoted = copy.deepcopy(ready)
        promoted["spec"]["champion"] = {"fromTrainingRun": "shuttle-2"}
        assert dep_runner.run(ctx, ctx.store.put(promoted)) is True
        out["changed"] = serving_ended(ctx, promoted)
        assert ctx.supervisor.find("Deployment", "serve").pid == pid  # type: ignore[union-attr]  # a hot swap
        failed = serving_manifest("serve-failed", "broken", served.free_port())
        assert dep_runner.run(ctx, ctx.store.put(failed)) is False
        out["failed"] = serving_ended(ctx, failed)
        # A champion the live server refuses (a directory outside the artifact store): the
        # rollout fails while the previous champion keeps serving.
        outside = home.parent / "parity-outside"
        shutil.copytree(trained.model_dir(source, "wine-a"), outside, dirs_exist_ok=True)
        refused = copy.deepcopy(promoted)
        refused["spec"]["champion"] = {"uri": outside.as_uri()}
        assert dep_runner.run(ctx, ctx.store.put(refused)) is False
        out["refused"] = serving_ended(ctx, refused)
    finally:
        ctx.supervisor.stop("Deployment", "serve", grace=5)
    yield home, source, out


async def serving_on_kube(home: Path, source: Path, scenario: ServingScenario) -> dict[str, Any]:
    """The operator's path for a Deployment; the apps/v1 controller and kubelet are played by
    replaying the local child's status. Returns the Deployment's status."""
    manifest, _, local_child = scenario
    name = manifest["metadata"]["name"]
    run_name = manifest["spec"]["champion"].get("fromTrainingRun", "shuttle")
    for run in {run_name, "shuttle", "shuttle-2"}:
        if await asyncio.to_thread(objects.get, plans.Ref("flywheel.dev/v1alpha1", "TrainingRun", run, NS)):
            continue
        run_manifest, status = training_run_record(home, run, source)
        await call("POST", client.manifest_path(run_manifest, collection=True), run_manifest)
        await patch_status("flywheel.dev/v1alpha1", "TrainingRun", run, status)
    if await asyncio.to_thread(objects.get, plans.Ref("flywheel.dev/v1alpha1", "Deployment", name, NS)):
        # A merge patch keeps keys it does not name: the champion's other source is nulled, as a
        # `kubectl apply` of the new manifest would remove it.
        champion = {"fromTrainingRun": None, "uri": None, **manifest["spec"]["champion"]}
        spec = {**manifest["spec"], "champion": champion}
        await call("PATCH", client.manifest_path(manifest), {"spec": spec}, objects.MERGE_PATCH)
    else:
        await call("POST", client.manifest_path(manifest, collection=True), manifest)
    status = (await reconcile_on_kube(deployment, "Deployment", name))["status"]
    if local_child is None:  # nothing to serve: no child on either side
        return dict(status)
    kube_child = await live("apps/v1", "Deployment", f"{name}-serving")
    replayed = copy.deepcopy(local_child["status"])
    replayed["observedGeneration"] = kube_child["metadata"].get("generation", 1)
    await patch_status("apps/v1", "Deployment", f"{name}-serving", replayed)
    return dict((await reconcile_on_kube(deployment, "Deployment", name))["status"])


@pytest.mark.parametrize(
    ("scenario", "phase", "ready"),
    [("ready", "Running", ("True", "Available")), ("failed", "Pending", ("False", "ModelUnavailable"))],
)
async def test_a_deployment_ends_alike_on_both_backends(
    serving_local: Any, scenario: str, phase: str, ready: tuple[str, str]
) -> None:
    home, source, scenarios = serving_local
    kube_status = await serving_on_kube(home, source, scenarios[scenario])
    local_status = scenarios[scenario][1]
    assert summary(kube_status) == summary(local_status)
    assert summary(local_status)[0] == phase
    assert ("Ready", *ready) in summary(local_status)[1]
    assert kube_status.get("servedChampionUri") == local_status.get("servedChampionUri")


async def test_a_champion_change_rolls_out_alike_on_both_backends(serving_local: Any) -> None:
    """The same spec change (a new champion) on both: a rollout of a new pod template that ends
    Ready with the new champion served and the old one as rollbackTarget (a hot swap locally)."""
    home, source, scenarios = serving_local
    await serving_on_kube(home, source, scenarios["ready"])
    kube_status = await serving_on_kube(home, source, scenarios["changed"])
    _, local_status, child = scenarios["changed"]
    assert summary(kube_status) == summary(local_status)
    assert ("Ready", "True", "Available") in summary(local_status)[1]
    for key in ("championUri", "servedChampionUri", "rollbackTarget", "championVersion"):
        assert kube_status.get(key) == local_status.get(key), key
    assert local_status["championUri"].endswith("/trainingruns/shuttle-2/model")
    assert local_status["observedGeneration"] == kube_status["observedGeneration"] == 2
    assert child is not None and child["status"]["observedGeneration"] == child["metadata"]["generation"] == 2


async def test_a_rollout_the_pods_cannot_finish_fails_alike_on_both_backends(serving_local: Any) -> None:
    """Ready, a champion change, then a champion the server cannot load: locally the live server
    refuses it (the old model keeps serving), on Kubernetes the new pods never get ready and the
    Deployment controller gives up (Progressing False). Both say RolloutFailed, and both still
    name the champion the ready pods serve."""
    home, source, scenarios = serving_local
    for step in ("ready", "changed"):
        await serving_on_kube(home, source, scenarios[step])
    kube_status = await serving_on_kube(home, source, scenarios["refused"])
    _, local_status, _ = scenarios["refused"]
    assert summary(kube_status) == summary(local_status), kube_status.get("message")
    assert summary(local_status)[0] == "Failed"
    assert ("Ready", "False", "RolloutFailed") in summary(local_status)[1]
    assert kube_status["servedChampionUri"] == local_status["servedChampionUri"]
    assert local_status["servedChampionUri"].endswith("/trainingruns/shuttle-2/model")
