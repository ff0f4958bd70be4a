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


def job_status(ctx: runners.Context, name: str) -> dict:
    got = ctx.store.get("Job", name)
    assert got is not None
    return got


def test_a_batch_job_is_realised_under_its_own_name_beside_its_owners_loop(tmp_path: Path) -> None:
    """A DriftMonitor's check Job: its process is keyed by the Job (the monitor's own loop holds the
    monitor's key), its log is logs/job/<job>.log, and its end is a Pod labelled job-name whose
    container carries the termination message, and the Job Complete; a failing one is Failed with
    the exit code and where the log is."""
    ctx = runners.Context.create(tmp_path / "home", console=rich_console.Console(file=io.StringIO()))
    data = {contract.CONFIG_FILE: json.dumps({"root": "x"})}
    ctx.store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": data})
    loop = ctx.supervisor.start("DriftMonitor", "watch", ["python", "-c", "import time; time.sleep(30)"])
    try:
        ok = ctx.store.put({**child(), "spec": {"template": template()}})
        broken_template = template()
        broken_template["spec"]["containers"][0]["command"] = ["python", "-c", "raise SystemExit(3)"]
        broken = ctx.store.put({**child(), "metadata": {**child()["metadata"], "name": "watch-broken"},
                                "spec": {"template": broken_template}})  # fmt: skip
        for job in (ok, broken):
            name = job["metadata"]["name"]
            assert realize.sync_batch_job(ctx, job) == "started"
            assert job_status(ctx, name)["status"]["active"] == 1
            ctx.supervisor.wait(ctx.supervisor.find("Job", name))  # type: ignore[arg-type]
            assert realize.sync_batch_job(ctx, job_status(ctx, name)) == "finished"
            assert realize.sync_batch_job(ctx, job_status(ctx, name)) == "terminal"
        assert ctx.supervisor.alive(loop)  # the owner's loop was never touched
    finally:
        ctx.supervisor.stop("DriftMonitor", "watch", grace=1)
    done = job_status(ctx, "watch-check")["status"]
    assert [(c["type"], c["status"]) for c in done["conditions"]] == [("Complete", "True")]
    (pod,) = [p for p in ctx.store.list("Pod") if p["metadata"]["labels"].get("job-name") == "watch-check"]
    message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert json.loads(message)["phase"] == "Succeeded"
    failed = job_status(ctx, "watch-broken")["status"]["conditions"][0]
    assert (failed["type"], failed["status"]) == ("Failed", "True")
    assert "exit code 3" in failed["message"] and "logs/job/watch-broken.log" in failed["message"]
    assert (ctx.home / "logs" / "job" / "watch-check.log").exists()
