"""End to end on a real kind cluster (opt-in: `make test-e2e`, i.e. pytest --with-e2e -m e2e).

Needs kind, kubectl, helm and a running docker engine; a missing one fails the session at once,
naming it. It brings the platform up with platform/kind-up.sh (which builds the slim CPU images and
loads them into kind), applies the whole examples/ loop with `kubectl apply -k examples/` (both
TrainingRuns, the Deployment, the DriftMonitor), waits for the runs to succeed and the Deployment
to serve, sends it the later period's traffic through the API server's service proxy, and waits
for the DriftMonitor to check it. Never run here: these machines have no cluster and no Docker
engine, so it is deselected unless --with-e2e is given, and never reported as passing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e
NS = "default"
TOOLS = ("kind", "kubectl", "helm", "docker")


def kubectl(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["kubectl", *args], check=False, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


@pytest.fixture(scope="session")
def platform() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"e2e needs {', '.join(missing)} on PATH (kind, kubectl, helm, docker; see docs/kind.md)")
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.fail("e2e needs a running docker engine: `docker info` fails")
    subprocess.run([str(ROOT / "platform" / "kind-up.sh")], check=True)


def get(plural: str, name: str) -> dict[str, Any]:
    return dict(json.loads(kubectl("get", f"{plural}.flywheel.dev", name, "-n", NS, "-o", "json")))


def wait_for(plural: str, name: str, done: Any, what: str, timeout: float = 1800) -> dict[str, Any]:
    """Poll until done(obj); a Ready=False for the current generation fails at once with its message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = get(plural, name)
        status = obj.get("status") or {}
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        current = status.get("observedGeneration") == obj["metadata"]["generation"]
        if current and ready.get("status") == "False":
            raise AssertionError(f"{plural}/{name}: {ready.get('reason')}: {ready.get('message')}")
        if done(obj):
            return obj
        time.sleep(10)
    raise AssertionError(f"{plural}/{name}: {what} not within {timeout} s")


def is_ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
    return ready.get("status") == "True" and status.get("observedGeneration") == obj["metadata"]["generation"]


def test_server_side_dry_run_accepts_every_resource_example(platform: None) -> None:
    """Every example the API server can take (kustomization.yaml is kustomize's, not the server's);
    the GPU examples live in ml-training, created here as their README asks."""
    kubectl("create", "namespace", "ml-training", check=False)  # already there is fine
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            kubectl("apply", "--dry-run=server", "-f", str(path))


def test_the_whole_loop_serves_and_checks_for_drift(platform: None, tmp_path: Path) -> None:
    from flywheel.data import examples

    kubectl("apply", "-k", str(ROOT / "examples"))
    minimal = wait_for("trainingruns", "shuttle-minimal", is_ready, "Succeeded")
    assert minimal["status"]["data"]["hash"] == examples.make_repo(tmp_path / "shuttle").hashes["period-1"]
    wait_for("trainingruns", "shuttle-candidate", is_ready, "Succeeded")
    served = wait_for("deployments", "shuttle", is_ready, "serving")
    assert served["status"]["championVersion"] == minimal["status"]["model"]["version"]

    # Traffic through the API server's service proxy: no port-forward, no NodePort needed.
    proxy = f"/api/v1/namespaces/{NS}/services/shuttle-serving:http/proxy/predict"
    rows = examples.period_frame(2, part="traffic", labelled=False, rows=600).to_dict("records")
    for start in range(0, len(rows), 100):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as body:
            json.dump({"records": rows[start : start + 100]}, body)
        answer = json.loads(kubectl("create", "--raw", proxy, "-f", body.name))
        assert answer["model"]["version"] == served["status"]["championVersion"]
        assert len(answer["predictions"]) == len(rows[start : start + 100])

    checked = wait_for("driftmonitors", "shuttle", lambda o: (o.get("status") or {}).get("lastCheckTime"),
                       "a drift check", timeout=900)  # fmt: skip
    assert checked["status"]["rowsChecked"] >= 500
