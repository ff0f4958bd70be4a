"""SelfPlayRun controller: rendered children pass upstream schemas, the sandbox NetworkPolicy fences
the pods, and status comes from the job conditions plus the trainer's termination message (produced
here by the trainer's own `finish`, so both sides of the contract are exercised)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from flywheel.api import conditions, contract
from flywheel.api import selfplayrun as api
from flywheel.controllers import plans, pytorchjob, selfplayrun, settings
from flywheel.selfplay import config, trainer
from tests.unit.controllers import upstream

SETTINGS = settings.Settings()
T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def resource(name: str = "azr", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "SelfPlayRun",
        "metadata": {"name": name, "namespace": "ml", "uid": "uid-7", "generation": 1},
        "spec": spec,
    }


@pytest.mark.slow  # the upstream CRD, webhook and SDK round trip take several seconds
def test_children_are_policy_configmap_job_and_pass_upstream_checks() -> None:
    manifest = resource(resources={"replicas": 2}, selfPlay={"steps": 3})
    netpol, config_map, job = selfplayrun.render_children(manifest, SETTINGS)
    upstream.assert_upstream_valid(job)
    upstream.validate_core(netpol)
    upstream.validate_core(config_map)
    [c] = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    assert c["command"] == ["torchrun", "-m", contract.SELFPLAY_MODULE]
    assert c["image"] == SETTINGS.selfplay_image
    pod_spec = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    workload = json.loads(config_map["data"][contract.CONFIG_FILE])
    cfg = config.parse(workload)  # the trainer reads exactly what the controller wrote
    assert cfg.spec.self_play.steps == 3 and cfg.name == "azr" and cfg.namespace == "ml"
    assert cfg.artifacts_uri == "file:///var/lib/flywheel/artifacts/ml/selfplayruns/azr"
    assert selfplayrun.render_children(manifest, SETTINGS) == [netpol, config_map, job]


def test_sandbox_pods_drop_every_capability_and_may_ask_for_their_own_user_namespace() -> None:
    # The executor's seccomp filter and Landlock stack on RuntimeDefault without privileges; the
    # pod keeps the restricted baseline either way, and hostUsers: false is opt-in.
    _, _, plain = selfplayrun.render_children(resource(resources={"replicas": 2}), SETTINGS)
    _, _, userns = selfplayrun.render_children(
        resource(resources={"replicas": 2}, executor={"userNamespace": True}), SETTINGS
    )
    for job, host_users in ((plain, None), (userns, False)):
        for replica in job["spec"]["pytorchReplicaSpecs"].values():
            pod = replica["template"]["spec"]
            assert pod.get("hostUsers") == host_users
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for container in pod["containers"]:
                context = container["securityContext"]
                assert context["capabilities"]["drop"] == ["ALL"] and "add" not in context["capabilities"]
                assert context["allowPrivilegeEscalation"] is False and context["runAsNonRoot"] is True


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"]["matchLabels"]
    return all(labels.get(k) == v for k, v in wanted.items())


def test_network_policy_denies_egress_of_a_single_pod_run() -> None:
    netpol, _, job = selfplayrun.render_children(resource(), SETTINGS)
    pod_labels = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["labels"]
    assert selects(netpol, pod_labels)
    assert not selects(netpol, {**pod_labels, contract.LABEL_OWNER_NAME: "other-run"})
    assert netpol["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert netpol["spec"]["egress"] == []  # no egress at all


def test_network_policy_allows_only_peers_and_dns_for_ddp_and_ports_for_s3() -> None:
    multi = selfplayrun.render_children(resource(resources={"replicas": 3}), SETTINGS)[0]
    egress = multi["spec"]["egress"]
    assert egress[0] == {"to": [{"podSelector": multi["spec"]["podSelector"]}]}
    assert {p["port"] for p in egress[1]["ports"]} == {53}
    assert len(egress) == 2
    s3 = selfplayrun.render_children(resource(artifacts={"uri": "s3://bucket/runs"}), SETTINGS)[0]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in s3["spec"]["egress"]] == [
        [53, 53],
        [80, 443, 9000],
    ]


def job_with(manifest: dict[str, Any], *conds: tuple[str, str]) -> dict[str, Any]:
    job = selfplayrun.render_children(manifest, SETTINGS)[2]
    job["status"] = {"conditions": [{"type": t, "status": s, "message": f"job {t}"} for t, s in conds]}
    return job


def observed(
    manifest: dict[str, Any], job: dict[str, Any] | None, pod_message: str | None = None
) -> plans.Observed:
    objects: dict[str, Any] = {}
    if job is not None:
        objects[f"PyTorchJob/{job['metadata']['name']}"] = job
        netpol, config_map, _ = selfplayrun.render_children(manifest, SETTINGS)
        objects[f"NetworkPolicy/{netpol['metadata']['name']}"] = netpol
        objects[f"ConfigMap/{config_map['metadata']['name']}"] = config_map
    if pod_message is not None:
        name = pytorchjob.master_pod_name(pytorchjob.job_name(manifest["metadata"]["name"]))
        terminated = {"terminated": {"exitCode": 0, "message": pod_message}}
        objects[f"Pod/{name}"] = {"status": {"containerStatuses": [{"name": "pytorch", "state": terminated}]}}
    return plans.Observed(objects)


def test_observe_refs_cover_job_configmap_pod_and_policy() -> None:
    kinds = [r.kind for r in selfplayrun.observe_refs(resource(), SETTINGS)]
    assert kinds == ["PyTorchJob", "ConfigMap", "Pod", "NetworkPolicy"]


def test_first_reconcile_creates_the_fence_before_the_job() -> None:
    manifest = resource()
    out = selfplayrun.plan(manifest, observed(manifest, None), T0, SETTINGS)
    assert [m["kind"] for m in out.apply] == ["NetworkPolicy", "ConfigMap", "PyTorchJob"]
    assert out.status["phase"] == conditions.PENDING and out.requeue_after is not None


def test_spec_change_before_pods_started_recreates_the_job_and_says_so_once() -> None:
    started = resource()
    job = job_with(started, ("Created", "True"), ("Suspended", "True"))  # not admitted yet
    edited = resource(selfPlay={"steps": 7})
    edited["metadata"]["generation"] = 2
    edited["status"] = {"phase": conditions.PENDING}  # no phase change: the event must come anyway
    out = selfplayrun.plan(edited, observed(started, job), T0, SETTINGS)
    assert [m["kind"] for m in out.delete] == ["PyTorchJob", "ConfigMap"] and out.apply == []
    assert [e.reason for e in out.events] == [conditions.R_RECREATING]
    job["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:01Z"
    waiting = selfplayrun.plan(edited, observed(started, job), T0, SETTINGS)
    assert waiting.delete == [] and waiting.events == []


def test_running_job_restores_a_missing_policy() -> None:
    manifest = resource()
    job = job_with(manifest, ("Created", "True"), ("Running", "True"))
    seen = observed(manifest, job)
    del seen.objects["NetworkPolicy/azr-sandbox"]
    out = selfplayrun.plan(manifest, seen, T0, SETTINGS)
    assert out.status["phase"] == conditions.RUNNING
    assert [m["kind"] for m in out.apply] == ["NetworkPolicy"]


def trainer_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    log = tmp_path / "termination-log"
    monkeypatch.setenv(contract.ENV_TERMINATION_LOG, str(log))
    monkeypatch.delenv(contract.ENV_RESULT_PATH, raising=False)
    cfg = config.Config("azr", "ml", api.SelfPlayRunSpec(), f"file://{tmp_path}/run")
    summary = {
        "step": 12,
        "buffers": {"abduction": 40, "deduction": 38, "induction": 9},
        "validProposalRate": {"abduction": 0.5, "deduction": 0.25, "induction": 0.125},
        "solveRate": {"abduction": 0.3, "deduction": 0.2, "induction": 0.0},
        "proposerReward": {"abduction": 0.1, "deduction": -0.2, "induction": -0.9},
        "checkpoint": "file:///x/checkpoints/step-000012.pt",
        "batch": {"size": 64, "perRank": 4, "ranks": 16},
        "heldOut": {
            "step": 10,
            "solveRate": {"abduction": 0.25, "deduction": 0.5, "induction": 0.0},
            "sampledSolveRate": {"abduction": 0.2, "deduction": 0.4, "induction": float("nan")},
        },
    }
    trainer.finish(cfg, trainer.artifacts.Store(cfg.artifacts_uri), summary)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["step"] == 12
    return log.read_text()


def test_succeeded_job_status_carries_the_trainer_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = resource()
    message = trainer_message(tmp_path, monkeypatch)
    assert len(message) < 4096
    job = job_with(manifest, ("Created", "True"), ("Running", "False"), ("Succeeded", "True"))
    out = selfplayrun.plan(manifest, observed(manifest, job, message), T0, SETTINGS)
    status = out.status
    assert status["phase"] == conditions.SUCCEEDED and out.requeue_after is None
    assert status["step"] == 12 and status["buffers"]["abduction"] == 40
    assert status["solveRate"] == {"abduction": 0.3, "deduction": 0.2, "induction": 0.0}
    assert status["checkpoint"].endswith("step-000012.pt")
    assert status["batch"] == {"size": 64, "perRank": 4, "ranks": 16}
    assert status["heldOut"] == {
        "step": 10,
        "solveRate": {"abduction": 0.25, "deduction": 0.5, "induction": 0.0},
        "sampledSolveRate": {"abduction": 0.2, "deduction": 0.4},  # NaN is dropped, not sent to the API
    }
    api.SelfPlayRunStatus.model_validate(status)  # the status patch is a valid SelfPlayRunStatus
    ready = plans.get_condition(status["conditions"], conditions.READY)
    assert ready is not None and ready["status"] == "True"
    again = selfplayrun.plan({**manifest, "status": status}, observed(manifest, job, message), T0, SETTINGS)
    assert again.status == status and again.apply == []  # reconciling twice changes nothing


def test_failed_run_reports_the_trainers_reason_and_drops_garbage() -> None:
    manifest = resource()
    job = job_with(manifest, ("Failed", "True"))
    message = json.dumps({"phase": "Failed", "message": "RuntimeError: boom", "solveRate": "nonsense"})
    out = selfplayrun.plan(manifest, observed(manifest, job, message), T0, SETTINGS)
    assert out.status["phase"] == conditions.FAILED and "boom" in out.status["message"]
    assert "solveRate" not in out.status
    garbled = selfplayrun.plan(manifest, observed(manifest, job, "not json"), T0, SETTINGS)
    assert "not a JSON result" in garbled.status["message"]


def test_invalid_spec_is_a_permanent_error() -> None:
    manifest = resource(selfPlay={"batchSize": 0})
    out = selfplayrun.plan(manifest, observed(manifest, None), T0, SETTINGS)
    assert out.permanent_error and "batchSize" in out.permanent_error and out.apply == []


def test_running_status_follows_the_newest_step_event_of_the_log_tail(
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = resource(selfPlay={"steps": 9})
    job = job_with(manifest, ("Created", "True"), ("Running", "True"))
    per_task = {"abduction": 0.5, "deduction": 0.25, "induction": 0.0}
    for step in (1, 2):  # the trainer's own emitter writes the lines the operator reads
        trainer.emit({"event": "step", "step": step, "buffers": {"deduction": step + 1}, "solveRate": per_task,
                      "proposerReward": {**per_task, "induction": float("nan")}, "checkpoint": f"c{step}"})  # fmt: skip
    tail = "[default0]:" + capsys.readouterr().out + '{"event": "step", "step": 3, "solveR'  # torn last line
    out = selfplayrun.plan(manifest, observed(manifest, job), T0, SETTINGS, log_tail=tail)
    status = out.status
    assert status["phase"] == conditions.RUNNING and status["step"] == 2 and status["checkpoint"] == "c2"
    assert status["solveRate"] == per_task and status["buffers"] == {"deduction": 3.0}
    assert status["proposerReward"] == {"abduction": 0.5, "deduction": 0.25}  # NaN is not JSON: dropped
    assert "step 2/9" in status["message"] and out.requeue_after is not None
    api.SelfPlayRunStatus.model_validate(status)
    for junk in (None, "", "no events here\n{not json", '{"event": "epoch", "step": 5}'):
        quiet = selfplayrun.plan(manifest, observed(manifest, job), T0, SETTINGS, log_tail=junk)
        assert "step" not in quiet.status and quiet.status["phase"] == conditions.RUNNING


def test_progress_already_in_status_stays_when_the_log_cannot_be_read() -> None:
    manifest = resource(selfPlay={"steps": 9})
    job = job_with(manifest, ("Created", "True"), ("Running", "True"))
    line = json.dumps({"event": "step", "step": 4, "solveRate": {"deduction": 0.5}})
    first = selfplayrun.plan(manifest, observed(manifest, job), T0, SETTINGS, log_tail=line)
    later = {**manifest, "status": first.status}
    again = selfplayrun.plan(later, observed(manifest, job), T0, SETTINGS, log_tail=None)
    assert again.status == first.status and again.events == []


def test_a_pvc_model_gets_its_own_read_only_claim_which_the_trainer_resolves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flywheel.selfplay import policy

    manifest = resource(
        policy={"model": "pvc://models/Qwen2.5-Coder-7B"}, artifacts={"uri": "pvc://flywheel-artifacts"}
    )
    _, _, job = selfplayrun.render_children(manifest, SETTINGS)
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    [c] = pod["containers"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in pod[
        "volumes"
    ]
    assert {"name": "models", "mountPath": contract.MODELS_MOUNT, "readOnly": True} in c["volumeMounts"]
    model = tmp_path / "Qwen2.5-Coder-7B"
    model.mkdir()
    (model / "config.json").write_text("{}")
    monkeypatch.setenv(contract.ENV_MODELS_ROOT, str(tmp_path))  # where the claim is mounted
    assert policy.resolve("pvc://models/Qwen2.5-Coder-7B") == model
    same = resource(policy={"model": "pvc://shared/models/x"}, artifacts={"uri": "pvc://shared/runs"})
    _, _, job = selfplayrun.render_children(same, SETTINGS)
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]].count("artifacts") == 1 and "models" not in str(pod["volumes"])
    assert {"name": "artifacts", "mountPath": contract.MODELS_MOUNT, "readOnly": True} in pod["containers"][
        0
    ]["volumeMounts"]


def test_a_model_uri_without_a_folder_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"policy.model 'pvc://models': use pvc://claim/path"):
        api.SelfPlayRunSpec.model_validate({"policy": {"model": "pvc://models"}})


def test_a_succeeded_run_edited_afterwards_stays_succeeded_also_once_its_job_is_gone() -> None:
    """The edit shows on SpecDiverged only; Ready and phase are the run's result (kstatus: Current)."""
    manifest = resource()
    job = job_with(manifest, ("Created", "True"), ("Running", "False"), ("Succeeded", "True"))
    message = json.dumps({"phase": "Succeeded", "step": 3})
    done = {
        **manifest,
        "status": selfplayrun.plan(manifest, observed(manifest, job, message), T0, SETTINGS).status,
    }
    assert done["status"]["jobSpecHash"] == pytorchjob.spec_hash(manifest)
    edited = {**done, "metadata": {**done["metadata"], "generation": 2}, "spec": {"selfPlay": {"steps": 7}}}
    for seen in (observed(manifest, job, message), plans.Observed()):  # job there; job collected
        out = selfplayrun.plan(edited, seen, T0, SETTINGS)
        status = {**done["status"], **out.status}
        assert status["phase"] == conditions.SUCCEEDED and status["observedGeneration"] == 2
        rows = {c["type"]: c["status"] for c in status["conditions"]}
        assert rows[conditions.READY] == "True" and rows[conditions.STALLED] == "False"
        assert rows[conditions.SPEC_DIVERGED] == "True"
        assert [e.reason for e in out.events] == [conditions.R_SPEC_CHANGED]
