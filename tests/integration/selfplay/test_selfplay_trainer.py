"""The self-play trainer as a real process: `python -m flywheel.selfplay` and `torchrun` with two
gloo ranks, the tiny policy on CPU, the real sandboxed executor, checkpoints and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from flywheel.api import contract

pytestmark = pytest.mark.slow


def spec(steps: int) -> dict[str, Any]:
    return {
        "selfPlay": {
            "steps": steps,
            "batchSize": 2,  # the global batch: one prompt per rank and (task, role) with two ranks
            "solveRateRollouts": 1,
            "maxNewTokens": 96,
            "inductionInputs": 4,
            "checkpointEvery": 1,
            "references": 2,
        },
        "executor": {"workers": 1, "timeoutSeconds": 2},
    }


def run(
    tmp_path: Path, steps: int, *launcher: str
) -> tuple[list[dict[str, Any]], subprocess.CompletedProcess[str]]:
    config = {"name": "azr", "namespace": "ml", "spec": spec(steps), "artifactsUri": f"file://{tmp_path}/run"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {
        **os.environ,
        contract.ENV_CONFIG: str(tmp_path / "config.json"),
        contract.ENV_TERMINATION_LOG: str(tmp_path / "termination-log"),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop(contract.ENV_RESULT_PATH, None)
    cmd = [*(launcher or (sys.executable,)), "-m", contract.SELFPLAY_MODULE]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert events[-1]["step"] == steps
    return [e for e in events if e["event"] == "step"], done


def test_torchrun_two_gloo_ranks_checkpoint_report_and_resume(tmp_path: Path) -> None:
    # torchrun as the module behind the script, so the test does not depend on PATH.
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2")
    lines, _ = run(tmp_path, 2, *launcher)
    assert [line["step"] for line in lines] == [1, 2]  # rank 0 alone reports
    first = lines[0]
    assert first["event"] == "step"
    for key in ("buffers", "validProposalRate", "solveRate", "proposerReward"):
        assert set(first[key]) == {"abduction", "deduction", "induction"}
    assert first["buffers"]["deduction"] >= 1 and first["tokens"] > 0
    assert first["steps"] == 2 and set(first["executor"]) == {"programs", "seconds", "programsPerSecond"}
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["step-000001.pt", "step-000002.pt"]
    state = torch.load(tmp_path / "run" / "checkpoints" / "step-000002.pt", weights_only=False)
    assert state["step"] == 2 and {"model", "optimizer", "buffers", "rng"} <= set(state)
    message = json.loads((tmp_path / "termination-log").read_text())
    assert message["phase"] == "Succeeded" and message["step"] == 2
    assert message["checkpoint"].endswith("step-000002.pt")
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["step"] == 2 and result["kind"] == "SelfPlayRun"

    # Same run, one more step, now a single plain process: it continues from the step-2 checkpoint.
    resumed, done = run(tmp_path, 3)
    start = json.loads(done.stdout.splitlines()[0])
    assert start["resumed"].endswith("step-000002.pt") and start["step"] == 2
    assert [line["step"] for line in resumed] == [3]
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["step-000002.pt", "step-000003.pt"]  # the newest two are kept
    after = torch.load(tmp_path / "run" / "checkpoints" / "step-000003.pt", weights_only=False)
    assert any(not torch.equal(after["model"][k], state["model"][k]) for k in state["model"])


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"name": "x", "spec": {"selfPlay": {"steps": 0}}, "artifactsUri": "file:///tmp/x"})
    )
    env = {
        **os.environ,
        contract.ENV_CONFIG: str(tmp_path / "config.json"),
        contract.ENV_TERMINATION_LOG: str(tmp_path / "log"),
    }
    done = subprocess.run(
        [sys.executable, "-m", contract.SELFPLAY_MODULE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "spec.selfPlay.steps" in done.stderr
    assert json.loads((tmp_path / "log").read_text())["phase"] == "Failed"
