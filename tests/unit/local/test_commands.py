"""`flywheel get`, `flywheel logs` and the input checks of `flywheel run`, through the real CLI entry."""

from __future__ import annotations

import datetime
import json
import textwrap

import pytest
import yaml

from flywheel import cli, errors
from flywheel.local import commands, store
from flywheel.local import supervisor as supervisor_mod

TR = {
    "apiVersion": "flywheel.dev/v1alpha1",
    "kind": "TrainingRun",
    "metadata": {"name": "iris"},
    "spec": {"data": {"repo": "r", "path": "p.csv"}, "model": {"task": "classification", "target": "y"}},
}
DM = {
    "apiVersion": "flywheel.dev/v1alpha1",
    "kind": "DriftMonitor",
    "metadata": {"name": "watch"},
    "spec": {"deploymentRef": "serve"},
}


@pytest.fixture
def home(tmp_path):
    s = store.Store(tmp_path / "home")
    s.put(TR)
    s.patch_status(
        "TrainingRun",
        "iris",
        {
            "phase": "Succeeded",
            "model": {"version": "iris-0a1b2c3d"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": ""}],
        },
    )
    s.put({**TR, "metadata": {"name": "pending"}})
    s.put(DM)
    s.patch_status("DriftMonitor", "watch", {"phase": "Running", "datasetDriftShare": 0.3333})
    return tmp_path / "home"


def _main(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_get_table_of_one_kind_by_short_name(home, capsys):
    code, out, _ = _main(capsys, "get", "tr", "--home", str(home))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "READY", "PHASE", "MODEL", "AGE"]
    assert lines[1].split()[:4] == ["iris", "True", "Succeeded", "iris-0a1b2c3d"]
    assert lines[2].split()[:4] == ["pending", "-", "-", "-"]
    assert lines[1].split()[4].endswith("s")


@pytest.mark.parametrize("kind", ["TrainingRun", "trainingruns", "TRAININGRUN", "trainingruns.flywheel.dev"])
def test_get_kind_names_are_case_insensitive_plural_or_singular(home, capsys, kind):
    code, out, _ = _main(capsys, "get", kind, "iris", "--home", str(home))
    assert code == 0 and "iris-0a1b2c3d" in out and "pending" not in out


def test_get_all_kinds_prefixes_names_and_shows_each_kinds_key_field(home, capsys):
    code, out, _ = _main(capsys, "get", "--home", str(home))
    assert code == 0
    assert "trainingrun.flywheel.dev/iris" in out
    row = next(line for line in out.splitlines() if "driftmonitor.flywheel.dev/watch" in line)
    assert row.split()[1:4] == ["-", "Running", "0.333"]
    assert "DRIFT" in out and "MODEL" in out


def test_get_json_and_yaml_return_the_stored_objects(home, capsys):
    code, out, _ = _main(capsys, "get", "tr", "iris", "-o", "json", "--home", str(home))
    doc = json.loads(out)
    assert code == 0 and doc["metadata"]["generation"] == 1 and doc["status"]["phase"] == "Succeeded"
    code, out, _ = _main(capsys, "get", "dm", "-o", "yaml", "--home", str(home))
    doc = yaml.safe_load(out)
    assert doc["kind"] == "List" and [i["metadata"]["name"] for i in doc["items"]] == ["watch"]


def test_get_unknown_kind_and_missing_name_are_one_line_errors(home, capsys):
    code, _, err = _main(capsys, "get", "pods", "--home", str(home))
    assert code == 1 and err.startswith("error: 'pods' is not a Flywheel kind") and "Traceback" not in err
    code, _, err = _main(capsys, "get", "tr", "nope", "--home", str(home))
    assert code == 1 and "trainingrun/nope not found" in err


def test_get_on_an_empty_home_says_so(tmp_path, capsys):
    code, out, _ = _main(capsys, "get", "--home", str(tmp_path / "none"))
    assert code == 0 and out.startswith("No resources found")
    assert not (tmp_path / "none").exists()  # reading never creates state


def test_age_like_kubectl():
    now = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    assert commands.age("2026-01-01T23:59:15.000Z", now) == "45s"
    assert commands.age("2026-01-01T23:48:00Z", now) == "12m"
    assert commands.age("2026-01-01T21:00:00Z", now) == "3h"
    assert commands.age("2025-12-30T00:00:00Z", now) == "3d"
    assert commands.age(None, now) == "-"


def test_logs_prints_the_workload_log(home, capsys):
    sup = supervisor_mod.Supervisor(home)
    info = sup.start("TrainingRun", "iris", ["sh", "-c", "echo line-one; echo line-two >&2"])
    sup.wait(info)
    code, out, _ = _main(capsys, "logs", "trainingrun/iris", "--home", str(home))
    assert code == 0 and "line-one" in out and "line-two" in out
    code, _, err = _main(capsys, "logs", "tr/nope", "--home", str(home))
    assert code == 1 and "no logs for trainingrun/nope" in err
    code, _, err = _main(capsys, "logs", "iris", "--home", str(home))
    assert code == 1 and "give KIND/NAME" in err


def test_logs_of_a_check_job_by_its_kubectl_name(home, capsys):
    """A DriftMonitor's check Job is realised under its own name: `flywheel logs job/NAME`."""
    sup = supervisor_mod.Supervisor(home)
    sup.wait(sup.start("Job", "watch-check-1", ["sh", "-c", "echo checked"]))
    code, out, _ = _main(capsys, "logs", "job/watch-check-1", "--home", str(home))
    assert code == 0 and "checked" in out


def test_run_rejects_invalid_manifests_with_one_line_per_problem(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent(
            """
            apiVersion: flywheel.dev/v1alpha1
            kind: TrainingRun
            metadata: {name: bad}
            spec:
              data: {repo: r, path: p.csv}
              model: {task: clustering, target: y}
              training: {epochs: 0, bogus: 1}
            """
        )
    )
    code, _, err = _main(capsys, "run", "-f", str(bad), "--home", str(tmp_path / "h"))
    lines = err.splitlines()
    assert code == 1 and "Traceback" not in err
    assert any("spec.model.task" in line for line in lines)
    assert any("spec.training.epochs" in line for line in lines)
    assert any("spec.training.bogus" in line and "unknown field" in line for line in lines)
    assert not (tmp_path / "h" / "state.db").exists()  # nothing stored from a bad file


def test_run_refuses_kinds_without_a_local_runner_before_starting_anything(tmp_path, monkeypatch):
    monkeypatch.setattr("flywheel.local.runners.RUNNERS", {})
    f = tmp_path / "tr.yaml"
    f.write_text(yaml.safe_dump(TR))
    with pytest.raises(errors.UserError, match="cannot run TrainingRun yet"):
        commands.run(_args(filename=[str(f)], home=str(tmp_path / "h"), detach=False))


def test_run_refuses_the_same_resource_twice(tmp_path):
    f = tmp_path / "tr.yaml"
    f.write_text(yaml.safe_dump_all([TR, TR]))
    with pytest.raises(errors.UserError, match="appears twice"):
        commands.run(_args(filename=[str(f)], home=str(tmp_path / "h"), detach=False))


def _args(**kw):
    import argparse

    return argparse.Namespace(**kw)
