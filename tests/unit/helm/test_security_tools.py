"""checkov on the rendered chart and hadolint on every Dockerfile, from the tools venv (`make tools`:
their pins clash with ours). Every skipped checkov check carries a written reason in the chart."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.helm.test_chart import MATRIX, render

ROOT = Path(__file__).resolve().parents[3]
TOOLS = ROOT / ".tools-venv" / "bin"
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))


def _tool(name: str) -> str:
    path = TOOLS / name
    assert path.exists(), f"{path} is missing: run `make tools` (make test does it)"
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["defaults", "ha", "servicemonitor", "rdma"])
def test_checkov_passes_on_the_rendered_chart(case, tmp_path):
    docs = [d for d in render(MATRIX[case]) if d["kind"] != "CustomResourceDefinition"]
    target = tmp_path / "chart.yaml"
    target.write_text(yaml.safe_dump_all(docs))
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    proc = subprocess.run(  # noqa: PLW1510 (the return code is asserted below, with the output)
        [_tool("checkov"), "-f", str(target), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    report = json.loads(proc.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    assert report["summary"]["passed"] > 50
    for skipped in report["results"]["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20, f"{skipped['check_id']} skipped without a reason"


def test_there_is_a_dockerfile_per_image():
    assert {p.parent.name for p in DOCKERFILES} == {
        "operator",
        "trainer",
        "trainer-cpu",
        "selfplay",
        "serving",
        "drift",
    }


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_hadolint_is_clean(dockerfile):
    proc = subprocess.run(
        [_tool("hadolint"), str(dockerfile)], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_images_are_multistage_and_non_root(dockerfile):
    text = dockerfile.read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2, "multi-stage build expected"
    last_stage = text.rsplit("\nFROM ", 1)[1]
    assert "USER 10001:10001" in last_stage
    assert "build-essential" not in last_stage and "gcc" not in last_stage
