"""What examples' comments quote is what the code does: repository paths exist, `flywheel.x.Y`
names resolve, and a local path under .flywheel/artifacts follows the artifact layout of
flywheel.api.contract (a traffic log at artifacts/traffic/<Deployment>, run artifacts at
artifacts/<namespace>/<plural>/<name>/...). The same for the traffic-log path the local Deployment
runner's docstring states. A comment that drifts from the code fails here, not in a user's hands."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

from flywheel import api
from flywheel.api import contract
from flywheel.local.runners import deployment as local_deployment

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted([*(ROOT / "examples").glob("*.yaml"), *(ROOT / "examples").glob("*/*.yaml")])
REPO_PATH = re.compile(
    r"\b((?:examples|platform|docs|images|helm|tests|bench)/[A-Za-z0-9_./-]*[A-Za-z0-9_/-])"
)
PYTHON_NAME = re.compile(r"\bflywheel(?:\.[A-Za-z_]\w*)+")
LOCAL_ARTIFACT = re.compile(r"\.flywheel/artifacts/([A-Za-z0-9_./<>-]+)")


def comments(path: Path) -> str:
    return "\n".join(line.split("#", 1)[1] for line in path.read_text().splitlines() if "#" in line)


def resources() -> list[dict]:
    return [
        d for p in EXAMPLES for d in yaml.safe_load_all(p.read_text()) if d and d.get("kind") in api.KINDS
    ]


@pytest.mark.parametrize("example", EXAMPLES, ids=[str(p.relative_to(ROOT / "examples")) for p in EXAMPLES])
def test_repository_paths_in_comments_exist(example: Path) -> None:
    for quoted in REPO_PATH.findall(comments(example)):
        assert (ROOT / quoted).exists(), f"{example.name} quotes {quoted}, which does not exist"


@pytest.mark.parametrize("example", EXAMPLES, ids=[str(p.relative_to(ROOT / "examples")) for p in EXAMPLES])
def test_python_names_in_comments_resolve(example: Path) -> None:
    for name in PYTHON_NAME.findall(comments(example)):
        if name == "flywheel.dev":  # the API group, not a module
            continue
        module, _, attr = name.rpartition(".")
        try:
            assert hasattr(importlib.import_module(module), attr), f"{example.name}: {name} does not exist"
        except ModuleNotFoundError:  # the whole name is a module
            importlib.import_module(name)


def layout_paths() -> set[str]:
    """Every artifact path the examples' resources have under the local home's artifacts/."""
    out = set()
    for doc in resources():
        name, ns = doc["metadata"]["name"], doc["metadata"].get("namespace", "default")
        if doc["kind"] == "Deployment":
            out.add(contract.traffic_sink("", name).lstrip("/"))
        run = f"{ns}/{api.KINDS[doc['kind']].PLURAL}/{name}"
        out |= {
            run,
            *(
                f"{run}/{part}"
                for part in (contract.MODEL_DIR, contract.CHECKPOINTS_DIR, contract.RESULT_FILE)
            ),
        }
    return out


def test_local_artifact_paths_in_comments_follow_the_layout() -> None:
    quoted = {(p.name, q.rstrip("./")) for p in EXAMPLES for q in LOCAL_ARTIFACT.findall(comments(p))}
    assert quoted, "no example quotes a local artifact path any more: keep this test honest"
    known = layout_paths()
    assert [(f, q) for f, q in quoted if q not in known] == []


def test_the_runner_docstring_states_the_traffic_path_the_code_uses() -> None:
    stated = contract.traffic_sink("<artifacts>", "<name>")
    assert stated in (local_deployment.__doc__ or "")
