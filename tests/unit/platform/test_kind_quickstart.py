"""The kind quick-start as written: platform/kind-up.sh run for real with kind, kubectl, helm and
docker replaced by stubs that record their arguments (no cluster or Docker engine here; the
opt-in tests/e2e run is the real one), and the examples/ kustomization built offline."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from flywheel.api import loading

ROOT = Path(__file__).resolve().parents[3]
PLATFORM = ROOT / "platform"
STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
"""


def versions() -> dict[str, str]:
    lines = (PLATFORM / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def app_version() -> str:
    return str(yaml.safe_load((ROOT / "helm/flywheel/Chart.yaml").read_text())["appVersion"])


def kind_up(tmp_path: Path, *args: str) -> list[str]:
    """Run kind-up.sh with stub tools; the commands it ran, one line each."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("kind", "kubectl", "helm", "docker"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls.log"
    calls.write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls)}
    proc = subprocess.run(["bash", str(PLATFORM / "kind-up.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return calls.read_text().splitlines()


def test_kind_up_builds_and_loads_the_slim_images_with_the_pinned_node(tmp_path: Path) -> None:
    calls = kind_up(tmp_path)
    tag = app_version()
    create = next(c for c in calls if c.startswith("kind create cluster"))
    assert f"--image {versions()['KIND_NODE_IMAGE']}" in create and "kind-config.yaml" in create
    builds = {
        m.group(1): m.group(2)
        for c in calls
        if (m := re.search(r"docker build -t (\S+) -f \S*/images/([\w-]+)/Dockerfile", c))
    }
    assert builds == {
        f"ghcr.io/flywheel-dev/operator:{tag}": "operator",
        f"ghcr.io/flywheel-dev/drift:{tag}": "drift",  # the DriftMonitor's check Job
        f"ghcr.io/flywheel-dev/serving:{tag}": "serving",
        f"ghcr.io/flywheel-dev/trainer:{tag}": "trainer-cpu",  # CPU torch, not the CUDA image
    }
    loads = [c.split()[3] for c in calls if c.startswith("kind load docker-image")]
    assert sorted(loads) == sorted(builds)
    # Images are loaded before anything that runs them is installed.
    first_helm_install = next(
        i for i, c in enumerate(calls) if c.startswith("helm upgrade --install flywheel")
    )
    assert max(i for i, c in enumerate(calls) if c.startswith("kind load")) < first_helm_install
    install = calls[first_helm_install]
    assert "artifacts.uri=s3://flywheel-artifacts" in install and f"image.tag={tag}" in install
    assert f"--version {versions()['MINIO_CHART_VERSION']}" in next(c for c in calls if "minio/minio" in c)
    assert any(f"ref={versions()['TRAINING_OPERATOR_REF']}" in c for c in calls)


def test_the_cuda_trainer_and_selfplay_only_on_request(tmp_path: Path) -> None:
    calls = kind_up(tmp_path, "--cuda-trainer", "--with-selfplay")
    dirs = {m.group(1) for c in calls if (m := re.search(r"/images/([\w-]+)/Dockerfile", c))}
    assert dirs == {"operator", "serving", "drift", "trainer", "selfplay"}


def test_kind_up_names_a_missing_tool(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kind", "kubectl", "helm"):  # no docker
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(tmp_path / "c")}
    if shutil.which("docker", path="/usr/bin:/bin"):
        pytest.skip("this machine has docker in /usr/bin: the stub PATH cannot hide it")
    proc = subprocess.run(
        ["bash", str(PLATFORM / "kind-up.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1 and "needs docker on PATH" in proc.stderr


def test_every_image_the_cluster_pulls_is_one_kind_up_builds(tmp_path: Path) -> None:
    """The chart's defaults and the example-data publisher name images; kind-up.sh must build each
    (under that exact name), or the pods would try ghcr.io, where nothing is published."""
    calls = kind_up(tmp_path)
    built = {c.split()[3] for c in calls if c.startswith("docker build")}
    values = yaml.safe_load((ROOT / "helm/flywheel/values.yaml").read_text())
    wanted = {f"{values['image']['repository']}:{app_version()}", values["workloadImages"]["trainer"],
              values["workloadImages"]["serving"]}  # fmt: skip
    for doc in yaml.safe_load_all((PLATFORM / "example-data.yaml").read_text()):
        text = yaml.safe_dump(doc)
        wanted |= set(re.findall(r"image: (ghcr\.io/\S+)", text))
    assert wanted <= built, wanted - built


def test_kind_config_pins_the_node_image_of_versions_env() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert {node.get("image", versions()["KIND_NODE_IMAGE"]) for node in config["nodes"]} == {
        versions()["KIND_NODE_IMAGE"]
    }


def test_the_examples_kustomization_builds_offline_into_the_loop() -> None:
    """`kubectl kustomize examples/` (what `kubectl apply -k examples/` sends): the four resources
    of the loop, each a valid Flywheel resource, all in one namespace the loop can share."""
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is needed (the client only; it is installed on these machines)")
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "examples")], capture_output=True, text=True,
                         check=True, timeout=60).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("Deployment", "shuttle"),
        ("DriftMonitor", "shuttle"),
        ("TrainingRun", "shuttle-candidate"),
        ("TrainingRun", "shuttle-minimal"),
    ]
    for doc in docs:
        resource = loading.parse(doc, f"kustomize: {loading.describe(doc)}")
        assert resource.namespace == "default"
        artifacts = doc["spec"].get("artifacts", {}).get("uri", "")
        assert artifacts.startswith("s3://flywheel-artifacts"), doc["metadata"]["name"]
