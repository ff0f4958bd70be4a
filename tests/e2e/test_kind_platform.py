"""End to end on a real kind cluster (opt-in: `make test-e2e`, i.e. pytest --with-e2e -m e2e).

Needs kind, kubectl, helm and docker on PATH. It brings the platform up with platform/kind-up.sh
(--images-from-local-build), applies every example that this cluster can run, and waits for each
resource to report Ready=True for its current generation. Never run in CI here: these machines have
no cluster and no Docker engine, so it is deselected unless --with-e2e is given.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e

# Examples a kind cluster can run (no GPUs, no RDMA fabric).
CPU_EXAMPLES = ["trainingrun-minimal.yaml"]


def kubectl(*args: str) -> str:
    return subprocess.run(["kubectl", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def platform() -> None:
    for tool in ("kind", "kubectl", "helm", "docker"):
        assert shutil.which(tool), f"{tool} is needed for e2e"
    subprocess.run([str(ROOT / "platform" / "kind-up.sh"), "--images-from-local-build"], check=True)


def wait_ready(kind: str, name: str, timeout: float = 1800) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = json.loads(kubectl("get", f"{kind}.flywheel.dev", name, "-o", "json"))
        status = obj.get("status") or {}
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
        if ready and status.get("observedGeneration") == obj["metadata"]["generation"]:
            if ready["status"] == "True":
                return obj
            assert ready["status"] != "False", f"{kind}/{name} failed: {ready['message']}"
        time.sleep(10)
    raise AssertionError(f"{kind}/{name} not Ready within {timeout} s")


@pytest.mark.parametrize("example", CPU_EXAMPLES)
def test_example_becomes_ready(platform, example):
    kubectl("apply", "-f", str(ROOT / "examples" / example))
    doc = (ROOT / "examples" / example).read_text()
    name = next(
        line.split(":", 1)[1].strip() for line in doc.splitlines() if line.strip().startswith("name:")
    )
    obj = wait_ready("trainingruns", name)
    assert obj["status"]["model"]["quantizedUri"]


def test_minimal_run_trained_on_period_1_of_the_published_dataset(platform, tmp_path):
    """platform/example-data.yaml builds the same example repository as this local copy; the
    cluster's TrainingRun must have pulled period-1's bytes from MinIO through it."""
    from flywheel.data import examples

    expected = examples.make_repo(tmp_path / "shuttle").hashes["period-1"]
    kubectl("apply", "-f", str(ROOT / "examples" / "trainingrun-minimal.yaml"))
    data = wait_ready("trainingruns", "shuttle-minimal")["status"]["data"]
    assert data["rev"] == "period-1" and data["hash"] == expected


def test_server_side_dry_run_accepts_every_example(platform):
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        kubectl("apply", "--dry-run=server", "-f", str(path))
