"""flywheel.local.realize.run_template: a pod template run as a real local process, its contract
paths remapped (ConfigMap volume, termination log, the in-cluster artifact root) and its end read
back as the kubelet would. The program is a short `python -c`, so this runs in a blink; the
torchrun path is tests/integration/local/test_trainingrun_local.py."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from rich import console as rich_console

from flywheel.api import common, contract
from flywheel.local import realize, runners

SCRIPT = """
import json, os
config = json.load(open(os.environ["FLYWHEEL_CONFIG"]))
said = {"phase": "Succeeded", "config": config, "artifacts": os.environ["FLYWHEEL_ARTIFACTS_URI"]}
open(os.environ["FLYWHEEL_TERMINATION_LOG"], "w").write(json.dumps(said))
"""


def child(uid: str = "u-1") -> dict:
    labels = {contract.LABEL_OWNER_KIND: "DriftMonitor", contract.LABEL_OWNER_NAME: "watch"}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "watch-check", "namespace": "default", "uid": uid, "labels": labels}}  # fmt: skip


def template() -> dict:
    env = [
        {"name": contract.ENV_CONFIG, "value": contract.CONFIG_PATH},
        {"name": contract.ENV_TERMINATION_LOG, "value": contract.TERMINATION_LOG},
        {"name": contract.ENV_ARTIFACTS_URI, "value": common.Artifacts().uri + "/default/x"},
        {"name": "HOME", "value": contract.WORK_DIR},
    ]
    container = {"name": "check", "command": ["python", "-c", SCRIPT], "env": env,
                 "volumeMounts": [{"name": "config", "mountPath": contract.CONFIG_MOUNT}]}  # fmt: skip
    return {"spec": {"containers": [container], "volumes": [{"name": "config", "configMap": {"name": "cm"}}]}}


def test_a_pod_template_runs_here_with_its_contract_paths_made_local(tmp_path: Path) -> None:
    ctx = runners.Context.create(tmp_path / "home", console=rich_console.Console(file=io.StringIO()))
    assert realize.run_template(ctx, child(), template()) == "waiting: waiting for ConfigMap cm"
    data = {contract.CONFIG_FILE: json.dumps({"root": common.Artifacts().uri})}
    ctx.store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": data})
    assert realize.run_template(ctx, child(), template()) == "started"
    deadline = time.monotonic() + 30
    while (step := realize.run_template(ctx, child(), template())) == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert isinstance(step, realize.PodEnd) and step.exit_code == 0 and step.succeeded
    said = json.loads(step.message or "")
    local_root = f"file://{ctx.home / 'artifacts'}"
    assert said["config"] == {"root": local_root}  # the ConfigMap's data, remapped, at the mount path
    assert said["artifacts"] == local_root + "/default/x"
    # Another child of the same owner (a new uid) does not inherit this one's end.
    assert realize.run_template(ctx, child("u-2"), template(), start=False) == "idle"
    pod, status = realize.pod_manifest("watch-check-0", "default", child(), "check", step, ctx.now())
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert status["containerStatuses"][0]["state"]["terminated"]["message"] == step.message
