"""Real torchrun, 2 CPU workers over gloo: kill -9 the whole job midway, restart it, and check that it
resumed from its last checkpoint (not from step 0) and ended where an uninterrupted run ends."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from flywheel import artifacts
from flywheel.api import contract
from flywheel.training import result
from tests.unit.training import fixtures

pytestmark = pytest.mark.slow

# 400 rows, 20% holdout, 2 workers x batch 16 -> 10 steps per epoch, 6 epochs = 60 steps;
# checkpoints every 7 steps land mid-epoch, so resume must restore the position inside an epoch.
SPEC = fixtures.spec(epochs=6, batchSize=16, checkpointEvery=7, learningRate=0.005)
TOTAL_STEPS = 60


def _torchrun(config_path, tmp_path, throttle: float) -> subprocess.Popen:
    env = {
        **os.environ,
        contract.ENV_CONFIG: str(config_path),
        contract.ENV_TERMINATION_LOG: str(tmp_path / f"{config_path.stem}.termination-log"),
        "OMP_NUM_THREADS": "1",
        "FLYWHEEL_TRAIN_THROTTLE_S": str(throttle),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "flywheel.training",
    ]
    return subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_tree(pid: int) -> None:
    """SIGKILL torchrun and its workers together, like a lost node. torchrun starts each worker in a
    session of its own, so killing torchrun's process group alone would leave the workers running."""
    parent = psutil.Process(pid)
    procs = [parent, *parent.children(recursive=True)]
    assert len(procs) >= 3  # torchrun + 2 workers
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    _, alive = psutil.wait_procs(procs[1:], timeout=10)
    assert not alive


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _finish(proc: subprocess.Popen) -> list[dict]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    return _events(out)


def test_killed_job_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(tmp_path):
    data = fixtures.breast_cancer_csv(tmp_path / "bc.csv", rows=400)
    straight_cfg = fixtures.write_config(tmp_path, data, SPEC, name="straight")
    killed_cfg = fixtures.write_config(tmp_path, data, SPEC, name="killed")

    victim = _torchrun(killed_cfg, tmp_path, throttle=0.1)
    straight = _torchrun(straight_cfg, tmp_path, throttle=0.0)  # runs alongside: one test, two jobs
    killed_at = None
    for line in victim.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "checkpoint" and event["step"] >= 21:
            killed_at = event["step"]
            _kill_tree(victim.pid)
            break
    victim.wait(timeout=30)
    assert killed_at is not None and victim.returncode == -signal.SIGKILL
    killed_root = fixtures.run_root(tmp_path, "killed")
    assert (
        not (killed_root / contract.RESULT_FILE).exists() and not (killed_root / contract.MODEL_DIR).exists()
    )

    resumed_events = _finish(_torchrun(killed_cfg, tmp_path, throttle=0.0))
    resume = next(e for e in resumed_events if e["event"] == "resume")
    assert resume["step"] >= killed_at > 0  # from its checkpoint, not from zero
    steps_run = [e["step"] for e in resumed_events if e["event"] == "checkpoint"]
    assert min(steps_run) > resume["step"] and max(steps_run) == TOTAL_STEPS
    straight_events = _finish(straight)
    assert not any(e["event"] == "resume" for e in straight_events)

    a = result.read(artifacts.Store(fixtures.run_root(tmp_path, "straight").as_uri()))
    b = result.read(artifacts.Store(killed_root.as_uri()))
    assert a.phase == b.phase == "Succeeded" and a.checkpoint.step == b.checkpoint.step == TOTAL_STEPS
    assert a.metrics.keys() == b.metrics.keys() == {"accuracy", "f1", "roc_auc"}
    for name, value in a.metrics.items():  # tolerance 1e-6: the resume is exact (same RNG, same order)
        assert b.metrics[name] == pytest.approx(value, abs=1e-6), name
    card = json.loads((killed_root / contract.MODEL_DIR / contract.MODEL_CARD).read_text())
    assert card["training"]["worldSize"] == 2 and card["training"]["backend"] == "gloo"
