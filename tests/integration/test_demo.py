"""`flywheel demo` end to end, as a newcomer runs it: the real CLI in a fresh home, every piece real
(DVC repository, torchrun training, BentoML server on localhost with HTTP traffic, Evidently,
DriftMonitor step, hot swap). Asserts on the outcome the demo records in summary.json and on the
local store. (Re-running in the same home reuses the data commits and trained models; that is
measured by hand, not here, to keep this test to one demo: about 2 minutes on 2 cores.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from flywheel import api
from flywheel.local import store as store_mod
from flywheel.local import supervisor as supervisor_mod

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _demo(home: Path, report: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "COLUMNS": "160", "BENTOML_DO_NOT_TRACK": "true", "GX_ANALYTICS_ENABLED": "false"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flywheel", "demo", "--home", str(home), "--report", str(report)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    return done, time.monotonic() - started


def _valid_png(path: Path) -> None:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= 300


def test_demo_closes_the_loop(tmp_path: Path) -> None:
    home, report = tmp_path / "home", tmp_path / "report"
    done, seconds = _demo(home, report)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary: dict[str, Any] = json.loads((report / "summary.json").read_text())

    # drift on the shifted period, found by the DriftMonitor's Evidently check
    drift = summary["drift"]
    assert drift["detected"] is True and drift["share"] >= 0.5 and drift["rowsChecked"] >= 200
    assert len(drift["driftedColumns"]) >= 2
    # the challenger trained on the new DVC rev, pinned in its spec, and won on the same rows
    data, ev, decision = summary["data"], summary["evaluation"], summary["decision"]
    assert (
        data["champion"]["rev"] == "period-1" and data["challenger"]["commit"] != data["champion"]["commit"]
    )
    assert decision["dataRev"] == data["challenger"]["commit"]
    assert ev["challenger"] > ev["champion"] and ev["improvement"] > 0 and ev["rows"] > 0
    assert decision["decision"] == "promoted" == summary["outcome"]["decision"]
    # real traffic, no failed request, the swap happened under it
    traffic = summary["traffic"]
    assert (
        traffic["requests"] > 300 and traffic["failed"] == 0 and summary["promotion"]["failedRequests"] == 0
    )
    models = summary["models"]
    assert traffic["versions"].get(models["champion"], 0) > 0
    assert traffic["versions"].get(models["challenger"], 0) > 0
    # the store says the same: the Deployment's champion is the challenger, the old one is kept
    store = store_mod.Store(home)
    deployment = store.get(api.Deployment.KIND, "shuttle")
    assert deployment is not None
    assert deployment["spec"]["champion"]["fromTrainingRun"] == summary["runs"]["challenger"]
    # the demo stops its server as `flywheel stop` does: Suspended, not Failed as a crash would be
    assert deployment["status"]["phase"] == "Suspended", deployment["status"]
    monitor = store.get(api.DriftMonitor.KIND, "shuttle")
    assert monitor is not None and monitor["status"]["lastDecision"]["decision"] == "promoted"
    # the report folder
    html = (report / "drift_report.html").read_text()
    assert "Drifted Columns" in html and len(html) > 10_000  # Evidently's data drift preset
    assert all(f'"{c["column"]}"' in html for c in drift["driftedColumns"])
    _valid_png(report / "training_curves.png")
    _valid_png(report / "comparison.png")
    assert [t["key"] for t in summary["timings"]] == [
        "data", "champion", "serve", "replay", "drift", "commit", "retrain", "challenger", "promote", "report",
    ]  # fmt: skip
    # nothing left running
    info = supervisor_mod.Supervisor(home).find(api.Deployment.KIND, "shuttle")
    assert info is None or not supervisor_mod.Supervisor(home).alive(info)
    print(f"demo wall time {seconds:.1f} s; stages {[(t['key'], t['seconds']) for t in summary['timings']]}")
