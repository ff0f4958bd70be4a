"""The demo's manifests are the examples, changed only where the demo must (and still valid)."""

from __future__ import annotations

import socket
from pathlib import Path

from flywheel.api import loading
from flywheel.demo import resources


def test_trainingrun_reads_the_demo_repository(tmp_path: Path) -> None:
    example = loading.read_documents(resources.TRAININGRUN)[0]
    manifest = resources.trainingrun(tmp_path / "repo")
    assert manifest["spec"]["data"]["repo"] == str(tmp_path / "repo")
    assert manifest["spec"]["data"]["rev"] == example["spec"]["data"]["rev"] == "period-1"
    assert manifest["spec"]["model"]["target"] == example["spec"]["model"]["target"]


def test_deployment_gets_a_free_port_and_a_latency_budget_for_shared_cores() -> None:
    manifest = resources.deployment()
    port = manifest["spec"]["port"]
    with socket.socket() as sock:  # nothing listens there: binding it succeeds
        sock.bind(("127.0.0.1", port))
    assert manifest["spec"]["batching"]["maxLatencyMs"] == resources.LATENCY_BUDGET_MS
    assert resources.deployment(4321)["spec"]["port"] == 4321
    assert manifest["spec"]["champion"] == {"fromTrainingRun": "shuttle", "quantized": True}


def test_driftmonitor_retrains_only_when_told_and_on_the_demo_repository(tmp_path: Path) -> None:
    off = resources.driftmonitor(tmp_path / "repo", retrain=False)
    on = resources.driftmonitor(tmp_path / "repo", retrain=True)
    assert off["spec"]["retrain"]["enabled"] is False and on["spec"]["retrain"]["enabled"] is True
    assert on["spec"]["retrain"]["template"]["data"]["repo"] == str(tmp_path / "repo")
    assert on["spec"]["retrain"]["template"]["data"]["rev"] == "period-2"
    assert {k: v for k, v in off["spec"].items() if k != "retrain"} == {
        k: v for k, v in on["spec"].items() if k != "retrain"
    }
