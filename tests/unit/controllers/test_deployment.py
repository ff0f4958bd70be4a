"""The Deployment controller: rendered children pass the Kubernetes 1.30 schemas, plan is pure and
idempotent, models resolve from TrainingRuns, a champion change rolls pods and records a rollback."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from flywheel.api import conditions, contract
from flywheel.controllers import deployment, plans, settings
from flywheel.serving import config as serving_config

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(minutes=5)
SETTINGS = settings.Settings()
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "deployment.yaml"
ART = "pvc://flywheel-artifacts"


def resource(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": "fraud", "namespace": "ml", "uid": "uid-1", "generation": 1},
        "spec": {"champion": {"uri": f"{ART}/models/m1"}, "artifacts": {"uri": ART}, **spec},
    }
    return base


def training_run(name: str, phase: str, version: str = "fraud-abc123") -> dict[str, Any]:
    model_dir = f"{ART}/ml/trainingruns/{name}/model"
    status: dict[str, Any] = {"phase": phase, "message": "boom" if phase == "Failed" else ""}
    if phase == conditions.SUCCEEDED:
        status["model"] = {
            "version": version,
            "fp32Uri": f"{model_dir}/{contract.FP32_FILE}",
            "quantizedUri": f"{model_dir}/{contract.QUANTIZED_FILE}",
            "cardUri": f"{model_dir}/{contract.MODEL_CARD}",
        }
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": "ml"},
        "status": status,
    }


def observed(*objects: dict[str, Any]) -> plans.Observed:
    return plans.Observed({f"{o['kind']}/{o['metadata']['name']}": o for o in objects})


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


def live(deploy: dict[str, Any], ready: int, generation: int = 1) -> dict[str, Any]:
    """The apps/v1 Deployment as the API server would show it after rolling out (test double)."""
    out = copy.deepcopy(deploy)
    out["metadata"]["generation"] = generation
    replicas = deploy["spec"].get("replicas", ready)
    out["status"] = {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": ready,
        "readyReplicas": ready,
        "availableReplicas": ready,
    }
    return out


def example() -> dict[str, Any]:
    res = yaml.safe_load(EXAMPLE.read_text())
    res["metadata"].update(namespace="ml", uid="uid-9", generation=3)
    return res


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({}, id="minimal"),
        pytest.param(
            {
                "replicas": 3,
                "challenger": {"uri": f"{ART}/models/m2"},
                "traffic": {"mode": "canary", "challengerPercent": 10},
            },
            id="canary-3",
        ),
        pytest.param(
            {
                "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
                "artifacts": {"uri": "s3://bucket/p", "credentialsSecret": "s3"},
            },
            id="hpa-s3",
        ),
        pytest.param({"replicas": 0}, id="scaled-to-zero"),
    ],
)
def test_every_child_passes_the_kubernetes_schema_strictly(spec: dict[str, Any]) -> None:
    for child in deployment.render_children(resource(**spec), SETTINGS):
        kubernetes_validate.validate(child, "1.30", strict=True)


def test_example_renders_and_validates() -> None:
    children = deployment.render_children(example(), SETTINGS)
    assert sorted(by_kind(children)) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]
    for child in children:
        kubernetes_validate.validate(child, "1.30", strict=True)


def test_serving_pod_is_hardened_probed_and_rolls_safely() -> None:
    dep = by_kind(deployment.render_children(resource(replicas=3), SETTINGS))["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == SETTINGS.serving_image
    assert container["command"][:3] == ["bentoml", "serve", "flywheel.serving.service:FlywheelService"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 120
    sec = container["securityContext"]
    assert sec["readOnlyRootFilesystem"] and sec["runAsNonRoot"] and not sec["allowPrivilegeEscalation"]
    assert sec["capabilities"] == {"drop": ["ALL"]} and sec["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert {"/tmp", contract.WORK_DIR} <= writable
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert contract.ANNOTATION_CONFIG_HASH in dep["spec"]["template"]["metadata"]["annotations"]
    assert dep["spec"]["template"]["metadata"]["labels"][contract.LABEL_ROLE] == "champion"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env[contract.ENV_SERVING_CONFIG] == contract.CONFIG_PATH
    assert env[contract.ENV_CHAMPION_URI] == f"{ART}/models/m1"


def test_pdb_never_blocks_drains_and_hpa_owns_replicas() -> None:
    single = by_kind(deployment.render_children(resource(replicas=1), SETTINGS))
    assert "PodDisruptionBudget" not in single and "HorizontalPodAutoscaler" not in single
    three = by_kind(deployment.render_children(resource(replicas=3), SETTINGS))
    assert three["PodDisruptionBudget"]["spec"]["minAvailable"] == 2
    assert three["Deployment"]["spec"]["replicas"] == 3
    scaled = by_kind(
        deployment.render_children(
            resource(autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 5}), SETTINGS
        )
    )
    assert "replicas" not in scaled["Deployment"]["spec"]
    assert scaled["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 2
    selector = scaled["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    assert (
        selector
        == scaled["Deployment"]["spec"]["selector"]["matchLabels"]
        == scaled["Service"]["spec"]["selector"]
    )


def test_serving_config_is_what_the_service_reads() -> None:
    res = resource(
        challenger={"uri": f"{ART}/models/m2", "quantized": False},
        traffic={"mode": "canary", "challengerPercent": 25, "stickyHeader": "x-user"},
        batching={"maxBatchSize": 128, "maxLatencyMs": 30},
        logging={"sampleRate": 0.5},
    )
    config_map = by_kind(deployment.render_children(res, SETTINGS))["ConfigMap"]
    parsed = serving_config.ServingConfig.model_validate(json.loads(config_map["data"][contract.CONFIG_FILE]))
    assert parsed.champion.uri == f"{ART}/models/m1" and parsed.champion.quantized
    assert parsed.challenger is not None and not parsed.challenger.quantized
    assert (parsed.traffic.challenger_percent, parsed.traffic.sticky_header) == (25, "x-user")
    assert (parsed.batching.max_batch_size, parsed.batching.max_latency_ms) == (128, 30)
    assert parsed.logging.sample_rate == 0.5
    assert parsed.sink_uri() == f"{ART}/{contract.TRAFFIC_DIR}/fraud"


def test_champion_from_training_run_waits_until_it_succeeded() -> None:
    res = resource(champion={"fromTrainingRun": "train-a"})
    refs = {r.key for r in deployment.observe_refs(res, SETTINGS)}
    assert "TrainingRun/train-a" in refs and "Deployment/fraud-serving" in refs
    for world in (observed(), observed(training_run("train-a", "Running"))):
        out = deployment.plan(res, world, NOW, SETTINGS)
        assert out.apply == [] and out.requeue_after == deployment.REQUEUE_WAITING
        ready = plans.get_condition(out.status["conditions"], conditions.READY)
        assert ready is not None and ready["status"] == "Unknown" and "train-a" in ready["message"]
    failed = deployment.plan(res, observed(training_run("train-a", "Failed")), NOW, SETTINGS)
    assert plans.get_condition(failed.status["conditions"], conditions.READY)["status"] == "False"  # type: ignore[index]
    done = deployment.plan(res, observed(training_run("train-a", conditions.SUCCEEDED)), NOW, SETTINGS)
    assert done.status["championUri"] == f"{ART}/ml/trainingruns/train-a/model"
    assert done.status["championVersion"] == "fraud-abc123"
    assert (
        by_kind(done.apply)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"]
        == done.status["championUri"]
    )


def test_challenger_not_ready_serves_champion_alone() -> None:
    res = resource(
        challenger={"fromTrainingRun": "train-b"}, traffic={"mode": "canary", "challengerPercent": 20}
    )
    out = deployment.plan(res, observed(training_run("train-b", "Running")), NOW, SETTINGS)
    config = json.loads(by_kind(out.apply)["ConfigMap"]["data"][contract.CONFIG_FILE])
    assert "challenger" not in config and config["traffic"]["challengerPercent"] == 0
    challenger = plans.get_condition(out.status["conditions"], conditions.CHALLENGER_READY)
    assert challenger is not None and challenger["status"] == "Unknown" and out.requeue_after is not None


def _converge(
    res: dict[str, Any], world: list[dict[str, Any]], now: datetime.datetime
) -> tuple[dict[str, Any], plans.Plan]:
    """Plan, then pretend the apps/v1 controller rolled the new template out everywhere."""
    out = deployment.plan(res, observed(*world), now, SETTINGS)
    res = {**res, "status": out.status}
    rolled = live(by_kind(out.apply)["Deployment"], ready=max(1, res["spec"].get("replicas", 1)))
    return res, deployment.plan(res, observed(*world, rolled), now, SETTINGS)


def test_ready_only_after_rollout_and_plan_is_idempotent() -> None:
    res = resource(replicas=2)
    first = deployment.plan(res, observed(), NOW, SETTINGS)
    assert plans.get_condition(first.status["conditions"], conditions.READY)["status"] == "Unknown"  # type: ignore[index]
    res, settled = _converge(res, [], NOW)
    assert plans.get_condition(settled.status["conditions"], conditions.READY)["status"] == "True"  # type: ignore[index]
    assert (
        settled.status["readyReplicas"] == 2
        and settled.status["endpoint"] == "http://fraud-serving.ml.svc:3000"
    )
    assert settled.requeue_after is None
    res = {**res, "status": settled.status}
    world = observed(live(by_kind(settled.apply)["Deployment"], ready=2))
    again = deployment.plan(res, world, LATER, SETTINGS)
    assert again.status == settled.status  # byte-identical, lastTransitionTime included
    assert again.apply == settled.apply and again.delete == [] and again.events == []


def test_champion_change_rolls_pods_and_records_rollback_target() -> None:
    res, settled = _converge(resource(replicas=2), [], NOW)
    res = {**res, "status": settled.status}
    old_hash = by_kind(settled.apply)["Deployment"]["spec"]["template"]["metadata"]["annotations"][
        contract.ANNOTATION_CONFIG_HASH
    ]
    old_live = live(by_kind(settled.apply)["Deployment"], ready=2)
    promoted = {
        **res,
        "metadata": {**res["metadata"], "generation": 2},
        "spec": {**res["spec"], "champion": {"uri": f"{ART}/models/m9"}},
    }
    out = deployment.plan(promoted, observed(old_live), LATER, SETTINGS)
    new = by_kind(out.apply)["Deployment"]
    assert new["spec"]["template"]["metadata"]["annotations"][contract.ANNOTATION_CONFIG_HASH] != old_hash
    assert out.status["championUri"] == f"{ART}/models/m9"
    assert out.status["rollbackTarget"] == f"{ART}/models/m1"
    assert plans.get_condition(out.status["conditions"], conditions.READY)["status"] == "Unknown"  # type: ignore[index]
    assert any(e.reason == conditions.R_CHAMPION_CHANGED for e in out.events)
    # The rollback target survives later reconciles.
    after = deployment.plan(
        {**promoted, "status": out.status}, observed(live(new, ready=2, generation=2)), LATER, SETTINGS
    )
    assert after.status["rollbackTarget"] == f"{ART}/models/m1"


def test_turning_off_autoscaling_deletes_the_hpa_and_pdb() -> None:
    scaled = deployment.render_children(
        resource(autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 4}), SETTINGS
    )
    world = observed(*[c for c in scaled if c["kind"] in ("HorizontalPodAutoscaler", "PodDisruptionBudget")])
    out = deployment.plan(resource(replicas=1), world, NOW, SETTINGS)
    assert sorted(m["kind"] for m in out.delete) == ["HorizontalPodAutoscaler", "PodDisruptionBudget"]


def test_invalid_spec_is_a_permanent_error_naming_the_field() -> None:
    res = resource(challenger={"uri": f"{ART}/models/m2"})  # canary with 0% to the challenger
    out = deployment.plan(res, observed(), NOW, SETTINGS)
    assert out.permanent_error and "challengerPercent" in out.permanent_error
    assert out.apply == []
    ready = plans.get_condition(out.status["conditions"], conditions.READY)
    assert ready is not None and ready["reason"] == conditions.R_INVALID_SPEC


def test_served_champion_follows_the_pods_not_the_spec() -> None:
    """status.championUri is the wanted champion at once; servedChampionUri moves only when every
    wanted replica of the new template is ready, and Ready is True only then."""
    res, settled = _converge(resource(replicas=2), [], NOW)
    assert settled.status["servedChampionUri"] == settled.status["championUri"] == f"{ART}/models/m1"
    res = {**res, "status": settled.status}
    promoted = {
        **res,
        "metadata": {**res["metadata"], "generation": 2},
        "spec": {**res["spec"], "champion": {"uri": f"{ART}/models/m9"}},
    }
    old_live = live(by_kind(settled.apply)["Deployment"], ready=2)
    out = deployment.plan(promoted, observed(old_live), LATER, SETTINGS)
    assert out.status["championUri"] == f"{ART}/models/m9"
    assert out.status["servedChampionUri"] == f"{ART}/models/m1"  # the old pods still answer
    new = by_kind(out.apply)["Deployment"]
    # Mid-roll (maxSurge 1): one new pod ready beside the two old ones; not every replica is new.
    rolling = live(new, ready=1, generation=2)
    rolling["status"].update(replicas=3, readyReplicas=3)
    mid = deployment.plan({**promoted, "status": out.status}, observed(rolling), LATER, SETTINGS)
    assert mid.status["servedChampionUri"] == f"{ART}/models/m1"
    champion_ready = plans.get_condition(mid.status["conditions"], conditions.CHAMPION_READY)
    assert champion_ready is not None and f"pods serve {ART}/models/m1" in champion_ready["message"]
    assert plans.get_condition(mid.status["conditions"], conditions.READY)["status"] == "Unknown"  # type: ignore[index]
    done = deployment.plan(
        {**promoted, "status": mid.status}, observed(live(new, ready=2, generation=2)), LATER, SETTINGS
    )
    assert done.status["servedChampionUri"] == f"{ART}/models/m9"
    assert plans.get_condition(done.status["conditions"], conditions.READY)["status"] == "True"  # type: ignore[index]
    # The serving Deployment deleted under us: nothing serves until it is back.
    gone = deployment.plan({**promoted, "status": done.status}, observed(), LATER, SETTINGS)
    assert gone.status["servedChampionUri"] is None and gone.status["servedChampionVersion"] is None


def _with_conditions(deploy: dict[str, Any], ready: int, *conds: tuple[str, str, str, str]) -> dict[str, Any]:
    out = live(deploy, ready=ready)
    out["status"]["conditions"] = [
        {"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conds
    ]
    return out


def test_pods_that_never_get_ready_fail_the_rollout_and_stall() -> None:
    """Progressing False (ProgressDeadlineExceeded) is the Deployment controller giving up on the
    new template: Ready False RolloutFailed with its message, Stalled (kstatus: Failed)."""
    res = resource(replicas=1)
    first = deployment.plan(res, observed(), NOW, SETTINGS)
    child = by_kind(first.apply)["Deployment"]
    stuck = _with_conditions(
        child, 0,
        ("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."),
        ("Progressing", "False", "ProgressDeadlineExceeded", "the server exited (code 1) before it was ready"),
    )  # fmt: skip
    out = deployment.plan({**res, "status": first.status}, observed(stuck), LATER, SETTINGS)
    ready = plans.get_condition(out.status["conditions"], conditions.READY) or {}
    stalled = plans.get_condition(out.status["conditions"], conditions.STALLED) or {}
    assert (ready["status"], ready["reason"], out.status["phase"]) == ("False", "RolloutFailed", "Failed")
    assert "exited (code 1)" in ready["message"] and stalled["status"] == "True"
    assert out.events and out.events[-1].type == "Warning"


def test_a_finished_rollout_whose_pods_went_away_is_unavailable_not_rolling() -> None:
    """Available False while Progressing still says NewReplicaSetAvailable: the ready pods of the
    current template are gone (crashed): Ready False ServingUnavailable, nothing served. The same
    conditions on an older template count for nothing (a new rollout has not been looked at)."""
    res, settled = _converge(resource(replicas=1), [], NOW)
    res = {**res, "status": settled.status}
    child = by_kind(settled.apply)["Deployment"]
    down = _with_conditions(
        child, 0,
        ("Available", "False", "MinimumReplicasUnavailable", "the server process is gone"),
        ("Progressing", "True", "NewReplicaSetAvailable", "ready"),
    )  # fmt: skip
    out = deployment.plan(res, observed(down), LATER, SETTINGS)
    ready = plans.get_condition(out.status["conditions"], conditions.READY) or {}
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "ServingUnavailable",
        "the server process is gone",
    )
    assert out.status["servedChampionUri"] is None and out.status["readyReplicas"] == 0
    promoted = {**res, "spec": {**res["spec"], "champion": {"uri": f"{ART}/models/m9"}}}
    rolling = deployment.plan(promoted, observed(down), LATER, SETTINGS)
    ready = plans.get_condition(rolling.status["conditions"], conditions.READY) or {}
    assert (ready["status"], ready["reason"]) == ("Unknown", "RollingOut")


def test_the_endpoint_host_is_a_setting() -> None:
    """The local backend's servers bind loopback: the same plan names 127.0.0.1 there."""
    local = dataclasses.replace(SETTINGS, service_host="127.0.0.1")
    res = resource(replicas=1)
    assert (
        deployment.plan(res, observed(), NOW, SETTINGS).status["endpoint"]
        == "http://fraud-serving.ml.svc:3000"
    )
    assert deployment.plan(res, observed(), NOW, local).status["endpoint"] == "http://127.0.0.1:3000"
