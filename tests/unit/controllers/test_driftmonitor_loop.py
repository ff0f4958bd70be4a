"""flywheel.drift.loop.step over an in-memory Backend: what it asks for, and when.

The check runs only when the schedule says so, the data commit is resolved only when a retrain
starts (an unresolvable one is reported, not raised), only Succeeded undecided challengers are
evaluated, and the writes happen in the fixed order (children, patches, status, events). Also the
operator's `git ls-remote` resolution against a real local git repository.
"""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path
from typing import Any

import pytest

from flywheel import errors
from flywheel.api import trainingrun as tr_api
from flywheel.controllers import driftmonitor as dm
from flywheel.controllers import plans
from flywheel.drift import decide, loop
from flywheel.local import store as store_mod
from operators import driftmonitor as operator

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
COMMIT = "b" * 40


class MemoryBackend:
    """loop.Backend on dicts; logs every write in order."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[str] = []
        self.resolved = 0
        self.fail_resolve = False

    def put(self, obj: dict[str, Any]) -> None:
        obj.setdefault("metadata", {}).setdefault("namespace", "default")
        self.objects[(obj["kind"], obj["metadata"]["name"])] = obj

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        return self.objects.get((kind, name))

    def list(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        return [o for (k, _), o in self.objects.items() if k == kind]

    def create(self, manifest: dict[str, Any]) -> None:
        self.writes.append(f"create {manifest['metadata']['name']}")
        self.objects.setdefault((manifest["kind"], manifest["metadata"]["name"]), manifest)

    def patch(self, patch: dict[str, Any]) -> None:
        key = (patch["kind"], patch["metadata"]["name"])
        self.writes.append(f"patch {patch['kind']}")
        self.objects[key] = store_mod.merge_patch(self.objects[key], patch)

    def patch_status(self, resource: dict[str, Any], status: dict[str, Any]) -> None:
        self.writes.append("status")
        key = (resource["kind"], resource["metadata"]["name"])
        self.objects[key]["status"] = store_mod.merge_patch(self.objects[key].get("status") or {}, status)

    def event(self, resource: dict[str, Any], event: plans.Event) -> None:
        self.writes.append(f"event {event.reason}")

    def resolve_commit(self, data: tr_api.Data) -> str:
        self.resolved += 1
        if self.fail_resolve:
            raise errors.UserError(f"data.rev {data.rev!r} is not in {data.repo}")
        return COMMIT

    def model_dir(self, uri: str) -> Path:
        return Path(uri.removeprefix("file://"))

    def traffic_sink(self, deployment: dict[str, Any]) -> str:
        return "file:///traffic"

    def cache_dir(self) -> Path:
        return Path("/cache")

    def artifacts_uri(self, uri: str) -> str:
        return uri


class Answers:
    def __init__(self) -> None:
        self.checked: list[tuple[Path, str]] = []
        self.evaluated: list[Path] = []

    def check(self, monitor: Any, champion_dir: Path, sink: str, now: datetime.datetime) -> loop.CheckOutcome:
        self.checked.append((champion_dir, sink))
        return loop.CheckOutcome({"lastCheckTime": plans.now_rfc3339(now), "rowsChecked": 900,
                                  "drifted": True, "datasetDriftShare": 0.9, "driftedColumns": []})  # fmt: skip

    def evaluate(self, monitor: Any, champion_dir: Path, challenger_dir: Path, target: str, sink: str,
                 now: datetime.datetime) -> loop.EvaluationOutcome:  # fmt: skip
        self.evaluated.append(challenger_dir)
        comparison = decide.Comparison.of("rmse", 2.0, 1.0, 100)  # lower is better: the challenger wins
        return loop.EvaluationOutcome(comparison, decide.decide(monitor.spec.promotion, comparison, None))


def world() -> MemoryBackend:
    backend = MemoryBackend()
    model = {"version": "v1", "cardUri": "file:///art/champ/model/model_card.json"}
    backend.put({"apiVersion": "flywheel.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "champ"},
                 "spec": {}, "status": {"phase": "Succeeded", "model": model}})  # fmt: skip
    backend.put({"apiVersion": "flywheel.dev/v1alpha1", "kind": "Deployment", "metadata": {"name": "svc"},
                 "spec": {"champion": {"fromTrainingRun": "champ"}}})  # fmt: skip
    template = {
        "data": {"repo": "r", "rev": "main", "path": "d.csv"},
        "model": {"task": "regression", "target": "y"},
    }
    backend.put({"apiVersion": "flywheel.dev/v1alpha1", "kind": "DriftMonitor",
                 "metadata": {"name": "mon", "uid": "u1", "generation": 1},
                 "spec": {"deploymentRef": "svc", "schedule": {"intervalSeconds": 60},
                          "retrain": {"template": template}, "promotion": {"metric": "rmse"}}})  # fmt: skip
    return backend


def monitor(backend: MemoryBackend) -> dict[str, Any]:
    return backend.objects[("DriftMonitor", "mon")]


def test_a_step_checks_resolves_creates_then_writes_status_and_events_in_order() -> None:
    backend, answers = world(), Answers()
    result = loop.step(backend, monitor(backend), NOW, answers)
    assert answers.checked == [(Path("/art/champ/model"), "file:///traffic")]
    assert backend.resolved == 1 and result.started == ["mon-1"]
    assert backend.writes[:2] == ["create mon-1", "status"] and backend.writes[2].startswith("event ")
    assert backend.objects[("TrainingRun", "mon-1")]["spec"]["data"]["rev"] == COMMIT


def test_nothing_is_checked_or_resolved_before_the_schedule_is_due() -> None:
    backend, answers = world(), Answers()
    loop.step(backend, monitor(backend), NOW, answers)
    loop.step(backend, monitor(backend), NOW + datetime.timedelta(seconds=59), answers)
    assert len(answers.checked) == 1 and backend.resolved == 1
    loop.step(backend, monitor(backend), NOW + datetime.timedelta(seconds=60), answers)
    assert len(answers.checked) == 2 and backend.resolved == 1  # due, but a challenger is still undecided


def test_only_a_succeeded_challenger_is_evaluated_and_the_win_is_promoted() -> None:
    backend, answers = world(), Answers()
    loop.step(backend, monitor(backend), NOW, answers)
    loop.step(backend, monitor(backend), NOW + datetime.timedelta(seconds=1), answers)
    assert answers.evaluated == []  # still running
    challenger = backend.objects[("TrainingRun", "mon-1")]
    challenger["status"] = {
        "phase": "Succeeded",
        "model": {"version": "v2", "cardUri": "file:///art/c/model/model_card.json"},
    }
    backend.writes.clear()
    result = loop.step(backend, monitor(backend), NOW + datetime.timedelta(seconds=2), answers)
    assert answers.evaluated == [Path("/art/c/model")]
    assert backend.writes[:3] == ["patch Deployment", "patch TrainingRun", "status"]
    assert result.decisions[0]["decision"] == "promoted" and result.decisions[0]["metric"] == "rmse"
    assert backend.objects[("Deployment", "svc")]["spec"]["champion"] == {"fromTrainingRun": "mon-1"}
    loop.step(backend, monitor(backend), NOW + datetime.timedelta(seconds=3), answers)
    assert len(answers.evaluated) == 1


def test_an_unresolvable_rev_is_reported_and_retried_on_the_next_check() -> None:
    backend, answers = world(), Answers()
    backend.fail_resolve = True
    result = loop.step(backend, monitor(backend), NOW, answers)
    assert result.started == []
    retraining = plans.get_condition(monitor(backend)["status"]["conditions"], "Retraining") or {}
    assert retraining["reason"] == dm.R_DATA_UNAVAILABLE and "'main'" in retraining["message"]
    backend.fail_resolve = False
    assert loop.step(backend, monitor(backend), NOW + datetime.timedelta(seconds=60), answers).started == [
        "mon-1"
    ]


class Broken(Answers):
    """A check and an evaluation that cannot run (no reference data, no holdout rows)."""

    def check(self, monitor: Any, champion_dir: Path, sink: str, now: datetime.datetime) -> loop.CheckOutcome:
        raise errors.UserError("the champion's model card has no data lineage; set spec.reference")

    def evaluate(self, *args: Any) -> loop.EvaluationOutcome:
        raise errors.UserError("holdout.parquet is missing in the challenger's model directory")


def test_a_check_or_evaluation_that_cannot_run_is_reported_not_raised() -> None:
    backend = world()
    loop.step(backend, monitor(backend), NOW, Broken())
    status = monitor(backend)["status"]
    drift = plans.get_condition(status["conditions"], "DriftDetected") or {}
    assert drift["reason"] == dm.R_CHECK_FAILED and "no data lineage" in drift["message"]
    assert status["lastCheckTime"] == plans.now_rfc3339(NOW)  # tried again at the next interval
    loop.step(backend, monitor(backend), NOW + datetime.timedelta(seconds=60), Answers())  # a working check
    backend.objects[("TrainingRun", "mon-1")]["status"] = {
        "phase": "Succeeded", "model": {"cardUri": "file:///art/c/model/model_card.json"}
    }  # fmt: skip
    result = loop.step(backend, monitor(backend), NOW + datetime.timedelta(seconds=61), Broken())
    assert (
        result.decisions[0]["decision"] == "rejected" and "holdout.parquet" in result.decisions[0]["reason"]
    )
    assert backend.objects[("Deployment", "svc")]["spec"]["champion"] == {"fromTrainingRun": "champ"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("repo")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    for args in (
        ["init", "-q", "-b", "main"],
        ["commit", "-q", "--allow-empty", "-m", "x"],
        ["tag", "-a", "v1", "-m", "v1"],
    ):
        subprocess.run(["git", "-C", str(root), *args], check=True, env=env)
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], check=True, env=env, capture_output=True, text=True
    )
    return str(root), head.stdout.strip()


def test_operator_resolves_branches_and_annotated_tags_to_commits(repo: tuple[str, str]) -> None:
    path, head = repo
    for rev in ("main", "v1", head):
        assert operator.git_commit(tr_api.Data(repo=path, rev=rev, path="d.csv")) == head
    with pytest.raises(errors.UserError, match=r"retrain\.template\.data\.rev 'nope'"):
        operator.git_commit(tr_api.Data(repo=path, rev="nope", path="d.csv"))
    with pytest.raises(errors.UserError, match="git ls-remote failed"):
        operator.git_commit(tr_api.Data(repo=f"{path}-missing", rev="main", path="d.csv"))
