"""`flywheel render -f FILE`: the YAML stream a reviewer or a GitOps diff sees, through the real CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from flywheel import cli
from flywheel.controllers import render
from tests.unit.controllers import upstream, upstream_trainjob

REPO = upstream.REPO
EXAMPLES = sorted(p for p in (REPO / "examples").glob("trainingrun-*.yaml") if "trainjob" not in p.name)
"""PyTorchJob examples: the TrainJob one is validated against its own CRD in test_trainjob.py."""

TWO_RUNS = """\
apiVersion: flywheel.dev/v1alpha1
kind: TrainingRun
metadata: {name: iris}
spec:
  data: {repo: https://example.com/d.git, path: iris.csv}
  model: {task: classification, target: species}
---
apiVersion: flywheel.dev/v1alpha1
kind: TrainingRun
metadata: {name: wine, namespace: ml}
spec:
  data: {repo: https://example.com/d.git, path: wine.csv}
  model: {task: regression, target: quality}
  resources: {replicas: 2, gpusPerReplica: 1}
"""


def write(tmp_path: Path, text: str, name: str = "runs.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_renders_every_child_as_one_stream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", "-f", write(tmp_path, TWO_RUNS)]) == 0
    out = capsys.readouterr().out
    docs = list(yaml.safe_load_all(out))
    assert [(d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs] == [
        ("ConfigMap", "default", "iris-config"),
        ("PyTorchJob", "default", "iris"),
        ("ConfigMap", "ml", "wine-config"),
        ("PyTorchJob", "ml", "wine"),
    ]
    for job in docs[1::2]:
        upstream.assert_upstream_valid(job)
        assert job["metadata"]["ownerReferences"][0] == {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "TrainingRun",
            "name": job["metadata"]["name"],
            "uid": "",  # no cluster, no uid: fine for review
            "controller": True,
            "blockOwnerDeletion": True,
        }
    assert "config.json: |" in out  # the config stays readable in review
    assert "&id" not in out  # no YAML anchors between Master and Worker


def test_operator_settings_from_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_TRAINER_IMAGE", "registry.local/trainer:dev")
    assert cli.main(["render", "-f", write(tmp_path, TWO_RUNS)]) == 0
    job = list(yaml.safe_load_all(capsys.readouterr().out))[1]
    assert job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.local/trainer:dev"
    )


def test_invalid_resource_is_one_line_per_problem_and_nothing_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = TWO_RUNS.replace("gpusPerReplica: 1", "gpusPerReplica: -1")
    assert cli.main(["render", "-f", write(tmp_path, bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # the valid first document was not half-printed either
    assert "TrainingRun/wine: spec.resources.gpusPerReplica" in captured.err
    assert "Traceback" not in captured.err


def test_broken_yaml_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render.cli(argparse.Namespace(filename=[write(tmp_path, "kind: [")])) == 1
    assert "invalid YAML" in capsys.readouterr().err
    assert render.cli(argparse.Namespace(filename=[str(tmp_path / "absent.yaml")])) == 1
    assert "no such file" in capsys.readouterr().err


def test_one_bad_file_does_not_hide_the_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The good files are printed whole, the bad ones reported one line each, and the exit code says
    something failed; no traceback, not even for a renderer's own bug."""
    good = write(tmp_path, TWO_RUNS, "good.yaml")
    broken = write(tmp_path, "kind: [", "broken.yaml")
    invalid = write(tmp_path, TWO_RUNS.replace("gpusPerReplica: 1", "gpusPerReplica: -1"), "invalid.yaml")
    assert cli.main(["render", "-f", broken, "-f", good, "-f", invalid]) == 1
    captured = capsys.readouterr()
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(captured.out)]
    assert names == ["iris-config", "iris", "wine-config", "wine"]  # good.yaml only
    assert "broken.yaml: line 1: invalid YAML" in captured.err
    assert "TrainingRun/wine: spec.resources.gpusPerReplica" in captured.err
    assert "2 of 3 file(s) failed to render" in captured.err and "Traceback" not in captured.err


def test_a_renderer_bug_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(render.RENDERERS, "TrainingRun", "json:loads")  # raises TypeError on a dict
    assert cli.main(["render", "-f", write(tmp_path, TWO_RUNS)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "cannot render (TypeError" in captured.err
    assert "Traceback" not in captured.err


def test_every_example_renders(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`flywheel render -f examples/`: every file, each kind; a DriftMonitor says in the stream that
    it has no children until it runs; the kustomization beside them is skipped with a note; the
    local examples (artifacts at the default, a path in the pod) get a note that the operator
    refuses them when no platform store is configured."""
    monkeypatch.delenv("FLYWHEEL_ARTIFACTS_URI", raising=False)
    assert cli.main(["render", "-f", str(REPO / "examples")]) == 0
    captured = capsys.readouterr()
    docs = [d for d in yaml.safe_load_all(captured.out) if d is not None]
    kinds = {d["kind"] for d in docs}
    assert {"PyTorchJob", "ConfigMap", "Deployment", "Service"} <= kinds
    for doc in docs:
        if doc["kind"] == "PyTorchJob":
            upstream.assert_upstream_valid(doc)
        elif doc["kind"] == "TrainJob":
            assert upstream_trainjob.trainjob_errors(doc) == []
        else:
            upstream.validate_core(doc)
    owners = {(d["metadata"]["ownerReferences"][0]["kind"]) for d in docs}
    assert owners == {"TrainingRun", "SelfPlayRun", "Deployment"}
    monitors = [line for line in captured.out.splitlines() if line.startswith("# DriftMonitor")]
    assert len(monitors) == len(list((REPO / "examples").glob("driftmonitor*.yaml")))
    assert all("no children until it runs" in line for line in monitors)
    assert "kustomization.yaml" in captured.err and "error" not in captured.err
    refused = [line for line in captured.err.splitlines() if "the operator refuses this" in line]
    assert {Path(line.split(":")[1].strip()).name for line in refused} == {
        "deployment-local.yaml", "driftmonitor-local.yaml", "selfplayrun-tiny.yaml", "trainingrun-local.yaml",
    }  # fmt: skip


def test_kind_whose_renderer_is_not_there_yet_is_skipped_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        render.RENDERERS, "TrainingRun", "flywheel.controllers.not_written_yet:render_children"
    )
    assert render.cli(argparse.Namespace(filename=[write(tmp_path, TWO_RUNS)])) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("not available yet") == 2


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_render_valid_jobs(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render.cli(argparse.Namespace(filename=[str(example)])) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    jobs = [d for d in docs if d["kind"] == "PyTorchJob"]
    assert jobs
    for job in jobs:
        upstream.assert_upstream_valid(job)
    for config_map in (d for d in docs if d["kind"] == "ConfigMap"):
        upstream.validate_core(config_map)
