"""`flywheel run` on the local backend with real processes: the TrainingRun controller plans, the
realiser runs its PyTorchJob as a 2-worker torchrun, the trainer resolves the example DVC
repository and runs the Great Expectations gate itself (as in the pod), checkpoints, resume after
the CLI is killed with SIGKILL.

The tests share one working directory (module scope), so the example repository is made once: the
first test makes it through the CLI (the relative path of examples/trainingrun-local.yaml, which
resolves against the home, run from another working directory), the others reuse it by its
absolute path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flywheel.local import progress, store, supervisor
from flywheel.local.runners import trainingrun as tr_runner

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def manifest(name: str, **spec_overrides) -> dict:
    spec = {
        "data": {"repo": tr_runner.EXAMPLE_REPO, "rev": "period-1", "path": "data/shuttle.csv"},
        "model": {"task": "classification", "target": "anomaly", "architecture": {"hiddenLayers": [32]}},
        "training": {"epochs": 2, "checkpointEvery": 10},
        "resources": {"procsPerReplica": 2},
    }
    spec.update(spec_overrides)
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cwd")


@pytest.fixture(scope="module")
def repo(workdir) -> str:
    """The example repository of the first test's home (made here when that test did not run)."""
    from flywheel.data import examples

    path = workdir / "home-e2e" / tr_runner.EXAMPLE_REPO
    if not path.exists():
        examples.make_repo(path)
    return str(path)


def cli(workdir: Path, *args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "flywheel", *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def run_cli(workdir: Path, *args: str, timeout: float = 240, **kw) -> tuple[int, str]:
    proc = cli(workdir, *args, **kw)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def write(workdir: Path, doc: dict) -> str:
    path = workdir / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path.name


def test_two_worker_run_end_to_end_then_idempotent(workdir):
    home = workdir / "home-e2e"
    repo = home / tr_runner.EXAMPLE_REPO  # the relative data.repo resolves against the home
    existed = repo.exists()
    elsewhere = workdir / "elsewhere"  # not the home's parent: the working directory must not matter
    elsewhere.mkdir(exist_ok=True)
    manifest_file = workdir / write(workdir, manifest("e2e"))
    code, out = run_cli(elsewhere, "run", "-f", str(manifest_file), "--home", str(home))
    assert code == 0, out
    assert ("creating the example DVC repository" in out) is not existed
    assert (repo / "data" / "shuttle.csv.dvc").exists()
    assert (
        not (elsewhere / tr_runner.EXAMPLE_REPO).exists() and not (workdir / tr_runner.EXAMPLE_REPO).exists()
    )

    obj = store.Store(home).get("TrainingRun", "e2e")
    status = obj["status"]
    assert status["phase"] == "Succeeded" and status["observedGeneration"] == 1
    conds = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    for type_ in ("Ready", "DataResolved", "DataValidated", "Trained", "Exported"):
        assert conds[type_] == ("True", "Succeeded"), (type_, conds)
    commit = subprocess.run(
        ["git", "rev-parse", "period-1^{commit}"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert status["data"]["commit"] == commit.stdout.strip()
    assert status["data"]["rows"] == 4000 and len(status["data"]["hash"]) == 32
    assert status["validation"]["success"] is True and status["validation"]["evaluated"] > 0
    assert 0.5 < status["metrics"]["accuracy"] <= 1.0
    artifacts_root = home.resolve() / "artifacts" / "default" / "trainingruns" / "e2e"
    for key in ("fp32Uri", "quantizedUri", "cardUri"):
        uri = status["model"][key]
        assert uri.startswith(f"file://{artifacts_root}/model/") and Path(uri[len("file://") :]).is_file()
    card = json.loads((artifacts_root / "model" / "model_card.json").read_text())
    assert card["data"]["commit"] == status["data"]["commit"] and card["training"]["worldSize"] == 2
    assert status["checkpoint"]["step"] > 0 and Path(status["checkpoint"]["uri"][len("file://") :]).is_file()

    log = home / "logs" / "trainingrun" / "e2e.log"
    text = log.read_text()
    assert "--standalone --nproc-per-node=2 -m flywheel.training" in text
    assert [progress.parse_event(line)["event"] for line in text.splitlines() if progress.parse_event(line)][
        -1
    ] == "done"
    events = [e["reason"] for e in store.Store(home).events("TrainingRun", "e2e")]
    assert events == ["CreatingJob", "JobRunning", "Succeeded"]  # the operator's events
    job = store.Store(home).get("PyTorchJob", "e2e")  # the child, as the Training Operator leaves it
    assert [c["type"] for c in job["status"]["conditions"] if c["status"] == "True"] == [
        "Created",
        "Succeeded",
    ]

    # The same generation again: nothing runs, nothing changes.
    code, out = run_cli(workdir, "run", "-f", "e2e.yaml", "--home", str(home))
    assert code == 0 and "already succeeded" in out
    assert log.read_text() == text
    assert store.Store(home).get("TrainingRun", "e2e")["status"] == status

    code, out = run_cli(workdir, "get", "tr", "--home", str(home))
    assert code == 0 and out.splitlines()[1].split()[:4] == [
        "e2e",
        "True",
        "Succeeded",
        status["model"]["version"],
    ]
    code, out = run_cli(workdir, "logs", "trainingrun/e2e", "--home", str(home), "-o", "json")
    assert code == 0 and '"event": "done"' in out
    code, out = run_cli(workdir, "logs", "trainingrun/e2e", "--home", str(home))  # readable lines
    (done,) = [line for line in out.splitlines() if "phase=Succeeded" in line]
    stamp, level, message = done.split()[:3]
    assert stamp.endswith("Z") and level == "INFO" and message.startswith("done"), done
    assert '"accuracy":' in done and "{" not in done.split(" phase=")[0], done  # no raw JSON line


def test_failed_gate_ends_the_run_failed_with_nothing_trained(workdir, repo):
    home = workdir / "home-gate"
    impossible = {"type": "expect_column_values_to_be_between", "kwargs": {"column": "f1", "min_value": 1e6}}
    doc = manifest("gated")
    doc["spec"]["data"]["repo"] = repo
    doc["spec"]["data"]["validation"] = {"expectations": [impossible]}
    code, out = run_cli(workdir, "run", "-f", write(workdir, doc), "--home", str(home))
    assert code == 1, out
    status = store.Store(home).get("TrainingRun", "gated")["status"]
    conds = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert status["phase"] == "Failed"
    assert conds["DataValidated"] == ("False", "ValidationFailed")
    assert conds["Ready"] == ("False", "ValidationFailed")
    assert "data validation failed" in status["message"] and status["validation"]["success"] is False
    assert "f1" in json.dumps(status["validation"])  # the failed expectation names its column
    # The gate ran inside the trainer (as in the pod), which stopped before training anything.
    assert not (home / "artifacts" / "default" / "trainingruns" / "gated" / "model").exists()
    assert "data validation failed" in (home / "logs" / "trainingrun" / "gated.log").read_text()


def _wait_for_checkpoint(log: Path, proc: subprocess.Popen, offset: int, timeout: float = 180) -> dict:
    """The first checkpoint event written to `log` after byte `offset`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        if log.exists():
            with log.open("rb") as fh:
                fh.seek(offset)
                for line in fh.read().decode().splitlines():
                    event = progress.parse_event(line)
                    if event and event["event"] == "checkpoint":
                        return event
        time.sleep(0.05)
    raise AssertionError("no checkpoint event")


def _no_workload_left(home: Path, name: str = "resume") -> list[int]:
    tag = supervisor.Supervisor(home).tag("TrainingRun", name)
    deadline = time.monotonic() + 30
    while supervisor.tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    return supervisor.tagged(tag)


def _resumes(log: Path) -> list[dict]:
    """The trainer's resume events, per attempt (the supervisor heads each attempt with 'started:')."""
    attempts = log.read_text().split("started:")[1:]
    return [
        next((e for e in map(progress.parse_event, a.splitlines()) if e and e["event"] == "resume"), None)
        for a in attempts
    ]


def test_interrupt_then_sigkill_the_cli_midway_then_rerun_resumes(workdir, repo):
    home = workdir / "home-kill"
    doc = manifest("resume", training={"epochs": 2, "checkpointEvery": 5})
    doc["spec"]["data"]["repo"] = repo
    doc["spec"]["data"]["validation"] = {"enabled": False}  # the gate has its own tests; keep this one short
    name = write(workdir, doc)
    log = home / "logs" / "trainingrun" / "resume.log"
    s = store.Store(home)
    # The throttle slows each step so the run is still midway when the test stops it.
    slow = {"FLYWHEEL_TRAIN_THROTTLE_S": "0.05"}

    # 1. Ctrl-C (SIGINT to the CLI's process group, as a terminal sends it): a clean stop.
    first = cli(workdir, "run", "-f", name, "--home", str(home), env=slow, start_new_session=True)
    try:
        _wait_for_checkpoint(log, first, 0)
        os.killpg(first.pid, signal.SIGINT)
        out, _ = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 130 and "interrupted" in out
    assert _no_workload_left(home) == []
    status = s.get("TrainingRun", "resume")["status"]
    assert status["phase"] == "Suspended" and status["conditions"][0]["reason"] == "JobSuspended"

    # 2. SIGKILL (nothing can be caught): the workload still goes, the store is left as it was.
    offset = log.stat().st_size
    second = cli(workdir, "run", "-f", name, "--home", str(home), env=slow, start_new_session=True)
    try:
        _wait_for_checkpoint(log, second, offset)
    finally:
        os.killpg(second.pid, signal.SIGKILL)
        second.wait(10)
    assert _no_workload_left(home) == []  # torchrun got the parent-death signal and took its workers
    before = s.get("TrainingRun", "resume")
    assert before["status"]["phase"] == "Running"  # the killed CLI could not write anything more
    code, out = run_cli(workdir, "get", "tr", "resume", "-o", "json", "--home", str(home))
    assert code == 0 and json.loads(out)["status"]["phase"] == "Suspended"  # get notices the process is gone

    # 3. Run again: torchrun resumes from the last checkpoint and finishes.
    code, out = run_cli(workdir, "run", "-f", name, "--home", str(home))
    assert code == 0, out
    assert "resuming from the checkpoint at step" in out
    resumes = _resumes(log)
    assert resumes[0] is None and resumes[1]["step"] > 0 and resumes[2]["step"] >= resumes[1]["step"]
    after = s.get("TrainingRun", "resume")
    assert after["status"]["phase"] == "Succeeded"
    assert after["metadata"]["uid"] == before["metadata"]["uid"] and after["metadata"]["generation"] == 1
    assert after["status"]["startTime"] == before["status"]["startTime"]
    reasons = [e["reason"] for e in s.events("TrainingRun", "resume")]
    assert reasons == [
        "CreatingJob", "JobRunning", "JobSuspended", "JobRunning", "JobSuspended", "JobRunning", "Succeeded"
    ]  # fmt: skip


def test_second_run_attaches_logs_follow_then_stop_and_run_resumes(workdir, repo):
    """Two real `flywheel run` of one TrainingRun: the second follows the first instead of starting
    (and so stopping) the trainer again; `flywheel logs -f` follows; `flywheel stop` suspends both."""
    home = workdir / "home-twice"
    doc = manifest("twice", training={"epochs": 2, "checkpointEvery": 5})
    doc["spec"]["data"]["repo"] = repo
    doc["spec"]["data"]["validation"] = {"enabled": False}
    name = write(workdir, doc)
    log = home / "logs" / "trainingrun" / "twice.log"
    slow = {"FLYWHEEL_TRAIN_THROTTLE_S": "0.05"}
    first = cli(workdir, "run", "-f", name, "--home", str(home), env=slow)
    second = follower = None
    try:
        _wait_for_checkpoint(log, first, 0)
        second = cli(workdir, "run", "-f", name, "--home", str(home))
        follower = cli(workdir, "logs", "trainingrun/twice", "-f", "--home", str(home))
        time.sleep(3)  # both attached and following; the first keeps training
        assert first.poll() is None and second.poll() is None and follower.poll() is None
        code, out = run_cli(workdir, "stop", "trainingrun/twice", "--home", str(home))
        assert code == 0 and out.strip() == "trainingrun/twice stopped", out
        first_out, _ = first.communicate(timeout=60)
        second_out, _ = second.communicate(timeout=60)
        follow_out, _ = follower.communicate(timeout=60)
    finally:
        for proc in (first, second, follower):
            if proc is not None:
                proc.kill()
    assert first.returncode == 130, first_out  # interrupted by the stop, like Ctrl-C
    said = " ".join(second_out.split())  # rich wraps long lines
    assert second.returncode == 1 and f"already being run by `flywheel run` (pid {first.pid})" in said, said
    assert "trainingrun/twice: Suspended" in said, said
    assert follower.returncode == 0
    checkpoints = [line for line in follow_out.splitlines() if " INFO checkpoint " in line]
    assert checkpoints and '{"event"' not in follow_out, follow_out[-2000:]
    assert _no_workload_left(home, "twice") == []
    s = store.Store(home)
    assert s.get("TrainingRun", "twice")["status"]["phase"] == "Suspended"
    assert log.read_text().count("started:") == 1  # the second run started no trainer
    assert [e["reason"] for e in s.events("TrainingRun", "twice")] == [
        "CreatingJob",
        "JobRunning",
        "JobSuspended",
    ]

    code, out = run_cli(workdir, "run", "-f", name, "--home", str(home))
    assert code == 0 and "resuming from the checkpoint at step" in out, out
    assert s.get("TrainingRun", "twice")["status"]["phase"] == "Succeeded"
