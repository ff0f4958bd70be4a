"""`flywheel run` of a SelfPlayRun on the local backend with real processes: the CLI, a real
torchrun (`python -m torch.distributed.run`), the tiny policy, the sandboxed executor, per-step
status in the SQLite store, the CLI killed with SIGKILL midway, and a rerun that resumes from the
last checkpoint. Nothing is mocked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel.local import progress, store, supervisor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "selfplayrun-tiny.yaml"
STEPS = 3


def write_manifest(tmp_path: Path, steps: int = STEPS) -> Path:
    """The example, made smaller still (one prompt a batch, 96 new tokens, no warm-start, a
    two-task held-out set): the test is about the runner, not about self-play (that is
    tests/integration/selfplay/test_selfplay_earns.py), and the machine is shared."""
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["spec"]["policy"].pop("warmStart", None)
    manifest["spec"]["heldOut"] = {"every": steps, "tasks": 2, "samples": 0}
    manifest["spec"]["selfPlay"].update(
        steps=steps, batchSize=1, solveRateRollouts=1, maxNewTokens=96, inductionInputs=4, references=1
    )
    manifest["spec"]["executor"]["workers"] = 1
    path = tmp_path / "spr.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def cli(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}  # no torchrun on PATH
    return subprocess.Popen(
        [sys.executable, "-m", "flywheel", *args, "--home", str(tmp_path / "home")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stored(tmp_path: Path) -> dict[str, Any]:
    got = store.Store(tmp_path / "home").get("SelfPlayRun", "azr-tiny")
    assert got is not None
    return got


def step_events(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "home" / "logs" / "selfplayrun" / "azr-tiny.log"
    events = [progress.parse_event(line) for line in log.read_text().splitlines()]
    return [e for e in events if e is not None]


def wait_for_step(tmp_path: Path, proc: subprocess.Popen[str], step: int, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = store.Store(tmp_path / "home").get("SelfPlayRun", "azr-tiny")
        if got and (got.get("status") or {}).get("step", 0) >= step:
            return
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no step {step} in status after {timeout}s")


def wait_until_gone(tmp_path: Path, timeout: float = 30) -> None:
    """The trainer follows its CLI (parent-death signal): wait until it and its workers are gone."""
    sup = supervisor.Supervisor(tmp_path / "home")
    info = sup.find("SelfPlayRun", "azr-tiny")
    assert info is not None
    deadline = time.monotonic() + timeout
    while sup.alive(info) or supervisor.tagged(info.tag):
        assert time.monotonic() < deadline, "the trainer outlived its CLI"
        time.sleep(0.1)


def test_run_records_each_step_survives_sigkill_and_resumes(tmp_path: Path) -> None:
    path = write_manifest(tmp_path)
    first = cli(tmp_path, "run", "-f", str(path))
    try:
        wait_for_step(tmp_path, first, 1)
        # The per-step status, written while the trainer still runs.
        running = stored(tmp_path)["status"]
        assert running["phase"] == "Running" and running["step"] >= 1
        assert set(running["solveRate"]) == {"abduction", "deduction", "induction"}
        assert running["buffers"]["deduction"] >= 1 and running["checkpoint"].endswith(".pt")
        assert "step" in running["message"] and "solve rate" in running["message"]  # the controller's words
        os.killpg(first.pid, signal.SIGKILL)  # the CLI and nothing else: the trainer dies with it
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    wait_until_gone(tmp_path)
    ckpts = tmp_path / "home" / "artifacts" / "default" / "selfplayruns" / "azr-tiny" / "checkpoints"
    done_before = max(int(p.stem.removeprefix("step-")) for p in ckpts.glob("step-*.pt"))
    assert 1 <= done_before < STEPS  # killed midway

    # `flywheel get` notices the trainer is gone: Suspended, with the last step recorded.
    get = cli(tmp_path, "get", "spr", "azr-tiny", "-o", "json")
    out, _ = get.communicate(timeout=60)
    status = json.loads(out)["status"]
    assert status["phase"] == "Suspended" and status["step"] >= 1

    again = cli(tmp_path, "run", "-f", str(path))
    out, _ = again.communicate(timeout=200)
    assert again.returncode == 0, out[-3000:]
    assert f"resuming after step {done_before}" in out
    assert f"signal     steps {done_before + 1}..{STEPS}: solve rate" in out  # first vs last step seen
    assert "rewards    valid proposals in " in out and "held-out   greedy solve rate" in out
    events = step_events(tmp_path)
    start = [e for e in events if e["event"] == "start"][-1]
    assert start["resumed"].endswith(f"step-{done_before:06d}.pt")
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps[-(STEPS - done_before) :] == list(range(done_before + 1, STEPS + 1))  # none redone
    final = stored(tmp_path)["status"]
    assert final["phase"] == "Succeeded" and final["step"] == STEPS
    assert final["observedGeneration"] == 1
    ready = next(c for c in final["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    checkpoint = Path(final["checkpoint"].removeprefix("file://"))
    assert checkpoint.is_file() and checkpoint.name == f"step-{STEPS:06d}.pt"
    result = json.loads((tmp_path / "home" / "runs" / "selfplayrun" / "azr-tiny" / "result.json").read_text())
    assert result["step"] == STEPS and result["solveRate"] == final["solveRate"]

    # Done for this generation: a third run does nothing.
    third = cli(tmp_path, "run", "-f", str(path))
    out, _ = third.communicate(timeout=60)
    assert third.returncode == 0 and "already succeeded" in out


def test_a_trainer_that_fails_ends_the_run_failed_with_its_own_words(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, steps=1)
    manifest = yaml.safe_load(path.read_text())
    manifest["spec"]["policy"]["model"] = str(tmp_path / "no-model-here")  # valid spec, no model there
    path.write_text(yaml.safe_dump(manifest))
    proc = cli(tmp_path, "run", "-f", str(path))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out[-3000:]
    status = stored(tmp_path)["status"]
    assert status["phase"] == "Failed" and "config.json missing" in status["message"]
    assert "flywheel logs selfplayrun/azr-tiny" in out
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Failed")
    assert "Traceback" not in out  # a user mistake in the spec is one line, not a trace
