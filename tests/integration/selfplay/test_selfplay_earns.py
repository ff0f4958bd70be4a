"""The tiny example earns rewards: a short run of examples/selfplayrun-tiny.yaml, warm-started,
as a real trainer process with the real sandbox. Before the warm-start (and the prompt fitting
and maxNewTokens check) every reward of this run was -1 and the executor ran nothing.

The warm-start is cached where every run caches it (FLYWHEEL_CACHE_DIR, else the temp dir), so only
the first run on a machine pays for it (minutes of CPU); the assertions are about what the run
earned, not how long it took."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel import artifact_cache
from flywheel.api import contract

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "selfplayrun-tiny.yaml"


def test_a_short_warm_started_run_has_executor_calls_valid_proposals_and_mixed_rewards(
    tmp_path: Path,
) -> None:
    spec: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())["spec"]
    assert spec["policy"].get("warmStart") is not None  # the example itself is warm-started
    config = {
        "name": "azr-tiny",
        "namespace": "default",
        "spec": spec,
        "artifactsUri": f"file://{tmp_path}/run",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {
        **os.environ,
        contract.ENV_CONFIG: str(tmp_path / "config.json"),
        contract.ENV_TERMINATION_LOG: str(tmp_path / "termination-log"),
        "FLYWHEEL_CACHE_DIR": str(artifact_cache.ROOT),
        "OMP_NUM_THREADS": "2",
    }
    env.pop(contract.ENV_RESULT_PATH, None)
    done = subprocess.run(
        [sys.executable, "-m", contract.SELFPLAY_MODULE], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == spec["selfPlay"]["steps"]
    assert sum(e["executor"]["programs"] for e in steps) > 0
    assert any(rate > 0 for e in steps for rate in e["validProposalRate"].values())
    ranges = [r for e in steps for r in e["solverRewardRange"].values()]
    assert any(low < high for low, high in ranges)  # mixed rewards in a batch: whitening has signal
    assert any(high > -1 for _, high in ranges)  # some well-formed solver answers
    held = [e for e in events if e["event"] == "heldOut"]
    assert held and held[0]["step"] == 0 and held[-1]["step"] == spec["selfPlay"]["steps"]
    assert (tmp_path / "run" / "heldout.png").read_bytes().startswith(b"\x89PNG")
    # The event line is the step's held-out result plus its name and when it was written.
    assert {**steps[-1]["heldOut"], "event": "heldOut"} == {k: v for k, v in held[-1].items() if k != "time"}
