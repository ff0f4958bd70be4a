"""The check Job end to end, nothing injected: the controller renders the Job and its ConfigMap for a
real champion and challenger (exports trained by flywheel.training on the Shuttle periods), the
Job's container command (`python -m flywheel.drift`) runs as a real subprocess on that config and
on period-2 traffic logged by the serving TrafficLogger, and its termination message, handed back
as the Job's pod, is folded by the next plan: drift found, the challenger evaluated and promoted.
(What the kubelet does, running the container in the drift image, is the only step replaced: the
same command runs here with this interpreter.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flywheel.api import contract
from flywheel.controllers import driftmonitor as dm
from flywheel.controllers import plans
from flywheel.data import examples
from tests.integration.drift import conftest
from tests.integration.drift import test_check_flow as flow

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:litestar"),
    pytest.mark.filterwarnings("ignore:.*Deprecated in litestar:DeprecationWarning"),
]
ROOT = Path(__file__).resolve().parents[3]


def resource(artifacts: Path) -> dict[str, Any]:
    template = {"data": {"repo": "/r", "path": "d.csv", "rev": "period-2"},
                "model": {"task": "classification", "target": examples.TARGET}}  # fmt: skip
    return {
        "apiVersion": "flywheel.dev/v1alpha1", "kind": "DriftMonitor",
        "metadata": {"name": "shuttle", "namespace": "default", "uid": "u1", "generation": 1},
        "spec": {"deploymentRef": "svc", "window": {"rows": 1500, "maxRows": 1000},
                 "artifacts": {"uri": artifacts.as_uri()}, "retrain": {"template": template},
                 "promotion": {"metric": "accuracy", "minImprovement": 0.0}},
        "status": {},
    }  # fmt: skip


def run_job(job: dict[str, Any], config_map: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """The Job's container command, as the kubelet would run it; returns the pod it leaves."""
    (tmp / "config.json").write_text(config_map["data"][contract.CONFIG_FILE])
    container = job["spec"]["template"]["spec"]["containers"][0]
    argv = [sys.executable if part == "python" else part for part in container["command"]]
    env = {**os.environ, contract.ENV_CONFIG: str(tmp / "config.json"),
           contract.ENV_TERMINATION_LOG: str(tmp / "termination-log"), "FLYWHEEL_CACHE_DIR": str(tmp / "cache"),
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    message = (tmp / "termination-log").read_text()
    assert len(message.encode()) <= 4096  # what the kubelet keeps of a termination message
    return {"metadata": {"labels": {"job-name": job["metadata"]["name"]}},
            "status": {"containerStatuses": [{"name": "drift", "state": {"terminated": {"message": message}}}]}}  # fmt: skip


def test_the_check_job_finds_drift_and_the_evaluation_job_promotes(
    exports: conftest.Exports, tmp_path: Path
) -> None:
    sink = flow._log_traffic(tmp_path / "traffic", examples.period_frame(2, part="traffic", labelled=False))
    monitor = resource(tmp_path / "artifacts")
    deployment = {"apiVersion": "flywheel.dev/v1alpha1", "kind": "Deployment",
                  "metadata": {"name": "svc", "namespace": "default"},
                  "spec": {"champion": {"fromTrainingRun": "champion"}, "logging": {"sink": sink}},
                  "status": {"championUri": exports.champion.as_uri(), "championVersion": "champion-v"}}  # fmt: skip
    observed = plans.Observed({"Deployment/svc": deployment, "TrainingRun/": {"items": []}})
    first = dm.plan(monitor, observed, flow.NOW)
    config_map, job = first.apply
    monitor["status"] = first.status
    pod = run_job(job, config_map, tmp_path)
    done = {
        "kind": "Job",
        "metadata": job["metadata"],
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    observed.objects[f"Job/{job['metadata']['name']}"] = done
    observed.objects[f"Pod/{job['metadata']['name']}"] = {"items": [pod]}
    second = dm.plan(monitor, observed, flow.NOW)
    assert second.status["drifted"] is True and second.status["rowsChecked"] == 1000
    report = Path(second.status["reportUri"].removeprefix("file://"))
    assert (report / "report.html").is_file()
    (challenger,) = [m for m in second.apply if m["kind"] == "TrainingRun"]
    assert challenger["metadata"]["name"] == "shuttle-1"

    # The challenger trained (the test's exports stand in for its TrainingRun): evaluate it.
    monitor["status"] = {**monitor["status"], **second.status}
    run = {**challenger, "status": {"phase": "Succeeded", "data": {"commit": "c" * 40},
           "model": {"version": "challenger-v", "cardUri": f"{exports.challenger.as_uri()}/{contract.MODEL_CARD}"}}}  # fmt: skip
    observed.objects["TrainingRun/"] = {"items": [run]}
    third = dm.plan(monitor, observed, flow.NOW)
    config_map, job = [m for m in third.apply if m["kind"] in ("ConfigMap", "Job")]
    assert job["metadata"]["name"] == "shuttle-eval-1"
    assert json.loads(config_map["data"][contract.CONFIG_FILE])["check"] is False
    monitor["status"] = {**monitor["status"], **third.status}
    pod = run_job(job, config_map, tmp_path)
    observed.objects[f"Job/{job['metadata']['name']}"] = {**done, "metadata": job["metadata"]}
    observed.objects[f"Pod/{job['metadata']['name']}"] = {"items": [pod]}
    fourth = dm.plan(monitor, observed, flow.NOW)
    decision = fourth.status["lastDecision"]
    assert decision["challenger"] == "shuttle-1" and decision["decision"] == "promoted", decision
    assert decision["challengerValue"] > decision["championValue"]  # period-2 data: the new model knows it
    (promotion,) = [p for p in fourth.patch_resources if p["kind"] == "Deployment"]
    assert promotion["spec"]["champion"] == {"fromTrainingRun": "shuttle-1", "uri": None}
