"""`flywheel demo --scenario concept-drift` end to end with the real CLI in a fresh home: real DVC
commits, torchrun, a BentoML server answering /predict and /feedback over HTTP, the DriftMonitor's
check Job as a process. Concept drift (examples.concept_shift) leaves the features alone, so only
the labels sent back find it: the trigger is performanceDrop, not featureDrift; the challenger is
fine-tuned from the champion and promoted by the paired test's lower bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from flywheel import api
from flywheel.controllers import driftmonitor as controller
from flywheel.local import store as store_mod

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_concept_drift_is_found_through_feedback_and_a_fine_tuned_challenger_wins_the_test(
    tmp_path: Path,
) -> None:
    home, report = tmp_path / "home", tmp_path / "report"
    env = {**os.environ, "COLUMNS": "160", "BENTOML_DO_NOT_TRACK": "true", "GX_ANALYTICS_ENABLED": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "flywheel", "demo", "--scenario", "concept-drift", "--home", str(home),
         "--report", str(report)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads((report / "concept-summary.json").read_text())
    assert out["featureDrift"]["drifted"] is False and out["triggers"] == ["performanceDrop"]
    assert out["trigger"] == "performanceDrop" and out["performance"]["dropped"]
    (live,) = out["performance"]["versions"]
    assert live["version"] == out["champion"] and live["rows"] == 400 and out["performance"]["labels"] == 400
    assert live["high"] < out["performance"]["baseline"]["low"]  # the drop the intervals show
    assert out["retrainMode"] == "fineTune" and out["initFrom"].endswith("/trainingruns/shuttle/model")
    decision = out["decision"]
    assert decision["decision"] == "promoted" and decision["rule"] == "lowerBound"
    assert decision["test"] == "paired bootstrap" and decision["interval"][0] >= 0.01
    store = store_mod.Store(home)
    run = store.get(api.TrainingRun.KIND, decision["challenger"])
    assert run is not None
    assert run["metadata"]["annotations"][controller.ANNOTATION_TRIGGER] == "performanceDrop"
    card = json.loads((Path(run["status"]["model"]["cardUri"].removeprefix("file://"))).read_text())
    assert card["training"]["initFrom"]["version"] == out["champion"]  # lineage: fine-tuned from it
    with Image.open(report / out["figure"]) as image:  # the live metric over time, drop and promotion marked
        image.verify()
    deployment = store.get(api.Deployment.KIND, "shuttle")
    assert deployment is not None and deployment["status"]["championVersion"] == out["challenger"]
