"""The DriftMonitor local runner: the controller's plan over the local store. A drifted check starts
a challenger whose trainer pins the real DVC commit, the TrainingRun runner trains it for real
(torchrun), and a winning verdict promotes it through the Deployment runner, once; a rollback then
holds across the cooldown.

What is real: the SQLite store, the controller's plans, the example DVC repository and its commit
resolution, the trainer (torchrun, 2 processes), the model it exports, the Deployment runner's
promote, `flywheel approve` and `flywheel rollback`. What is injected: the check Job's outcome
(runner.run_check_job is replaced by Injected, which answers what `python -m flywheel.drift` would,
with precomputed figures and the real promotion verdict); the real check Job runs in the
test_check_job test below and in the demo. The champion TrainingRun is seeded as Succeeded.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel import artifacts
from flywheel.api import conditions, contract
from flywheel.api import driftmonitor as dm_api
from flywheel.controllers import driftmonitor as dm
from flywheel.controllers import plans
from flywheel.data import examples
from flywheel.drift import decide
from flywheel.local import runners
from flywheel.local.runners import driftmonitor as runner

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "driftmonitor-local.yaml").read_text())
NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)


class Injected:
    """runner.run_check_job with precomputed answers; records what it was asked."""

    def __init__(self, drifted: bool, win: bool) -> None:
        self.drifted, self.win = drifted, win
        self.checks: list[str] = []
        self.evaluated: list[Path] = []

    def __call__(self, ctx: runners.Context, job: dict[str, Any], config_map: dict[str, Any] | None) -> None:
        assert config_map is not None
        config = json.loads(config_map["data"][contract.CONFIG_FILE])
        spec = dm_api.DriftMonitorSpec.model_validate(config["spec"])
        result: dict[str, Any] = {"check": None, "note": None, "reason": None, "evaluations": []}
        if config["check"]:
            self.checks.append(config["championUri"])
            result["check"] = {
                "lastCheckTime": plans.now_rfc3339(ctx.now()), "rowsChecked": 2000, "drifted": self.drifted,
                "datasetDriftShare": 0.78 if self.drifted else 0.1, "reportUri": "file:///reports/x",
                "driftedColumns": [{"column": "f2", "score": 0.0, "method": "ks"}] if self.drifted else [],
            }  # fmt: skip
        for item in config["challengers"]:
            self.evaluated.append(artifacts.Store(item["modelUri"]).local_path())
            comparison = decide.Comparison.of("f1", 0.40, 0.90 if self.win else 0.20, 800)
            verdict = decide.decide(spec.promotion, comparison, None)
            decision = (
                "pending" if verdict.decision == "promoted" and not verdict.promote else verdict.decision
            )
            result["evaluations"].append({
                "challenger": item["name"], "decision": decision, "reason": verdict.reason, "metric": "f1",
                "championValue": 0.40, "challengerValue": comparison.challenger_value,
                "championVersion": config["championVersion"], "challengerVersion": item["version"],
                "dataRev": item["dataRev"],
            })  # fmt: skip
        runner.record_outcome(ctx, job, 0, json.dumps(result))


@pytest.fixture
def injected(monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(drifted: bool, win: bool) -> Injected:
        fake = Injected(drifted, win)
        monkeypatch.setattr(runner, "run_check_job", fake)
        return fake

    return make


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, examples.ExampleRepo]:
    cwd = tmp_path_factory.mktemp("cwd")
    return cwd, examples.make_repo(cwd / "datasets" / "example")


def context(cwd: Path, name: str, clock: list[datetime.datetime]) -> runners.Context:
    """A home whose datasets/ is the shared example repository's folder: the example's relative
    data.repo (datasets/example) resolves against the home, so every home finds the one repository."""
    ctx = runners.Context.create(cwd / name)
    (ctx.home / "datasets").symlink_to(cwd / "datasets", target_is_directory=True)
    ctx.now = lambda: clock[0]
    return ctx


def seed(ctx: runners.Context) -> dict[str, Any]:
    """The champion TrainingRun (seeded Succeeded), its Deployment (not serving), the monitor."""
    champion_dir = ctx.home / "artifacts" / "champion"
    ctx.store.put({"apiVersion": "flywheel.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "shuttle"},
                   "spec": {"data": {"repo": "r", "path": "p"}, "model": {"task": "classification", "target": "anomaly"}}})  # fmt: skip
    model = {"version": "shuttle-v1", "cardUri": f"file://{champion_dir}/{contract.MODEL_CARD}"}
    ctx.store.patch_status("TrainingRun", "shuttle", {"phase": "Succeeded", "model": model})
    ctx.store.put({"apiVersion": "flywheel.dev/v1alpha1", "kind": "Deployment", "metadata": {"name": "shuttle"},
                   "spec": {"champion": {"fromTrainingRun": "shuttle"}}})  # fmt: skip
    # what the Deployment runner records once it resolved its champion (the check Job's input)
    ctx.store.patch_status("Deployment", "shuttle", {"championUri": f"file://{champion_dir}",
                                                     "championVersion": "shuttle-v1"})  # fmt: skip
    monitor = copy.deepcopy(EXAMPLE)
    template = monitor["spec"]["retrain"]["template"]
    template["training"] = {"epochs": 1, "batchSize": 256}  # fast: the loop is under test, not the model
    template["model"]["architecture"] = {"hiddenLayers": [16]}
    template["data"]["validation"] = {"enabled": False}
    return ctx.store.put(monitor)


def stored(ctx: runners.Context, kind: str, name: str) -> dict[str, Any]:
    obj = ctx.store.get(kind, name)
    assert obj is not None
    return obj


@pytest.mark.slow
def test_drift_trains_a_pinned_challenger_and_promotes_it_once(workdir: Any, injected: Any) -> None:
    cwd, repo = workdir
    clock = [NOW]
    ctx = context(cwd, "home-win", clock)
    monitor = seed(ctx)
    analysis = injected(drifted=True, win=True)
    result = runner.run_once(ctx, monitor)
    assert result.started == ["shuttle-1"]
    challenger = stored(ctx, "TrainingRun", "shuttle-1")
    assert challenger["spec"]["data"]["rev"] == "period-2"  # the template's tag; its trainer pins it
    assert challenger["metadata"]["labels"][contract.LABEL_OWNER_NAME] == "shuttle"
    # Created owned by the monitor (test_driftmonitor_plan); promoted in the same round, so released:
    # the Deployment serves it now, and deleting the monitor must not take it along.
    assert "ownerReferences" not in challenger["metadata"]
    assert challenger["status"]["phase"] == "Succeeded"  # trained for real by the TrainingRun runner
    assert challenger["status"]["data"]["commit"] == repo.commits["period-2"]
    (evaluated,) = analysis.evaluated
    assert (evaluated / contract.MODEL_CARD).is_file()
    deployment = stored(ctx, "Deployment", "shuttle")
    assert deployment["spec"]["champion"] == {"fromTrainingRun": "shuttle-1"}
    assert dm.ANNOTATION_PROMOTION in deployment["metadata"]["annotations"]
    status = stored(ctx, "DriftMonitor", "shuttle")["status"]
    assert (
        status["lastDecision"]["decision"] == "promoted"
        and status["lastDecision"]["challenger"] == "shuttle-1"
    )
    assert status["lastDecision"]["dataRev"] == repo.commits["period-2"]
    assert status["rollbackTarget"] == f"file://{ctx.home / 'artifacts' / 'champion'}"  # what it served
    assert status["retrain"] == {**status["retrain"], "active": [], "count": 1}
    reasons = [e["reason"] for e in ctx.store.events("DriftMonitor", "shuttle")]
    assert reasons.count(conditions.R_PROMOTED) == 1 and reasons.count(conditions.R_RETRAIN_STARTED) == 1
    # Another round at the same moment: no check is due, nothing is started or promoted again.
    generation = deployment["metadata"]["generation"]
    again = runner.run_once(ctx, stored(ctx, "DriftMonitor", "shuttle"))
    assert again.check is None and again.started == [] and len(analysis.checks) == 1
    assert stored(ctx, "Deployment", "shuttle")["metadata"]["generation"] == generation
    # Later the traffic still drifts, but the cooldown (600 s) holds.
    clock[0] = NOW + datetime.timedelta(seconds=120)
    later = runner.run_once(ctx, stored(ctx, "DriftMonitor", "shuttle"))
    assert later.check is not None and later.started == []


@pytest.mark.slow
def test_no_drift_no_retrain_and_detached_loop_records_a_missing_deployment(
    workdir: Any, monkeypatch: pytest.MonkeyPatch, injected: Any
) -> None:
    cwd, _ = workdir
    clock = [NOW]
    ctx = context(cwd, "home-calm", clock)
    monitor = seed(ctx)
    injected(drifted=False, win=True)
    result = runner.run_once(ctx, monitor)
    assert result.started == [] and ctx.store.list("TrainingRun") == [stored(ctx, "TrainingRun", "shuttle")]
    ready = plans.get_condition(stored(ctx, "DriftMonitor", "shuttle")["status"]["conditions"], "Ready")
    assert ready is not None and ready["status"] == "True"
    # --detach: a supervised background process steps the stored monitor (here: its Deployment is gone).
    ctx.store.delete("Deployment", "shuttle")
    detached = runners.Context.create(cwd / "home-calm", detach=True)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        assert runner.run(detached, stored(ctx, "DriftMonitor", "shuttle"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = stored(ctx, "DriftMonitor", "shuttle")["status"]
            if (plans.get_condition(status["conditions"], "Ready") or {}).get(
                "reason"
            ) == conditions.R_NO_DEPLOYMENT:
                break
            time.sleep(0.2)
        else:
            log = detached.supervisor.log_path("DriftMonitor", "shuttle").read_text()
            raise AssertionError(f"the detached loop wrote no status; its log:\n{log}")
        info = detached.supervisor.find("DriftMonitor", "shuttle")
        assert info is not None and detached.supervisor.alive(info)
    finally:
        detached.supervisor.stop("DriftMonitor", "shuttle")
    assert not detached.supervisor.alive(info)


@pytest.mark.slow
def test_a_pending_win_is_promoted_by_approve_and_a_rollback_holds_across_the_cooldown(
    workdir: Any, injected: Any
) -> None:
    """`flywheel approve` and `flywheel rollback` through the CLI on a real challenger (trained by
    torchrun); then, past the cooldown, the traffic still drifts and a second challenger on the
    same data wins: it is held (pending), not promoted over the person's rollback, until approved."""
    from flywheel import cli

    cwd, _ = workdir
    clock = [NOW]
    ctx = context(cwd, "home-approve", clock)
    monitor = seed(ctx)
    monitor["spec"]["promotion"]["autoPromote"] = False
    monitor = ctx.store.put(monitor)
    injected(drifted=True, win=True)
    runner.run_once(ctx, monitor)
    status = stored(ctx, "DriftMonitor", "shuttle")["status"]
    assert status["lastDecision"]["decision"] == "pending"
    assert stored(ctx, "Deployment", "shuttle")["spec"]["champion"] == {"fromTrainingRun": "shuttle"}
    home = ["--home", str(ctx.home)]
    assert cli.main(["rollback", "deployment/shuttle", *home]) == 1  # nothing promoted yet: a clear no
    assert cli.main(["approve", "dm/shuttle", "shuttle-9", *home]) == 1  # not one of its challengers

    assert cli.main(["approve", "driftmonitor/shuttle", *home]) == 0  # the pending one by default
    assert stored(ctx, "Deployment", "shuttle")["spec"]["champion"] == {"fromTrainingRun": "shuttle-1"}
    decision = stored(ctx, "DriftMonitor", "shuttle")["status"]["lastDecision"]
    assert decision["decision"] == "promoted" and decision["challenger"] == "shuttle-1"
    assert decision["reason"].endswith(f"approved ({dm.ANNOTATION_APPROVE})")
    reasons = [e["reason"] for e in ctx.store.events("DriftMonitor", "shuttle")]
    assert reasons.count(conditions.R_PROMOTED) == 1 and reasons.count(conditions.R_AWAITING_APPROVAL) == 1

    assert cli.main(["rollback", "shuttle", *home]) == 0
    rolled_back = {"uri": f"file://{ctx.home / 'artifacts' / 'champion'}"}  # status.rollbackTarget
    assert stored(ctx, "Deployment", "shuttle")["spec"]["champion"] == rolled_back
    # the monitor does not fight the person: it records the rollback, nothing is re-promoted
    clock[0] = datetime.datetime.now(datetime.UTC)  # the CLI's clock is the real one: go on from it
    injected(drifted=False, win=True)
    again = runner.run_once(ctx, stored(ctx, "DriftMonitor", "shuttle"))
    assert again.plan.patch_resources == []
    hold = stored(ctx, "DriftMonitor", "shuttle")["status"]["rollbackHold"]
    assert hold["challenger"] == "shuttle-1" and hold["dataRev"] == decision["dataRev"]
    promoted = plans.get_condition(stored(ctx, "DriftMonitor", "shuttle")["status"]["conditions"], "Promoted")
    assert promoted is not None and "shuttle-1 was rolled back" in promoted["message"]
    # Past the cooldown (600 s) the traffic still drifts: shuttle-2 trains on the same data and
    # wins, and is held for a person instead of undoing the rollback.
    monitor = stored(ctx, "DriftMonitor", "shuttle")
    monitor["spec"]["promotion"]["autoPromote"] = True
    ctx.store.put(monitor)
    clock[0] += datetime.timedelta(seconds=900)
    injected(drifted=True, win=True)
    later = runner.run_once(ctx, stored(ctx, "DriftMonitor", "shuttle"))
    assert later.started == ["shuttle-2"]
    last = stored(ctx, "DriftMonitor", "shuttle")["status"]["lastDecision"]
    assert last["challenger"] == "shuttle-2" and last["decision"] == "pending"
    assert "held: the same data rev as shuttle-1 was rolled back" in last["reason"]
    assert stored(ctx, "Deployment", "shuttle")["spec"]["champion"] == rolled_back
    # a person approves it: promoted, and the hold ends with that promotion
    assert cli.main(["approve", "driftmonitor/shuttle", "shuttle-2", *home]) == 0
    assert stored(ctx, "Deployment", "shuttle")["spec"]["champion"] == {"fromTrainingRun": "shuttle-2"}


def test_a_second_monitor_on_the_same_deployment_waits_and_takes_over(workdir: Any, injected: Any) -> None:
    """Two monitors in one local home name one Deployment: the later one does nothing (no check, no
    training of a challenger it left unfinished) and says who owns it; deleting the owner from the
    store hands the Deployment over at the next round. Nothing is trained (no drift is injected)."""
    cwd, _ = workdir
    clock = [NOW]
    ctx = context(cwd, "home-twins", clock)
    seed(ctx)
    twin = copy.deepcopy(stored(ctx, "DriftMonitor", "shuttle"))
    twin["metadata"] = {"name": "twin"}
    twin = ctx.store.put(twin)
    leftover = dm.challenger_manifest(twin, dm.validate(twin), 1, "drift", NOW)
    ctx.store.put(leftover)  # unfinished: a round that owned the Deployment would train it now
    analysis = injected(drifted=False, win=False)
    for _ in range(2):
        result = runner.run_once(ctx, stored(ctx, "DriftMonitor", "twin"))
        assert result.claimed_by == "shuttle" and result.check is None and analysis.checks == []
    assert (stored(ctx, "TrainingRun", "twin-1").get("status") or {}).get("phase") is None  # not trained
    ready = plans.get_condition(stored(ctx, "DriftMonitor", "twin")["status"]["conditions"], "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", conditions.R_CLAIMED)
    assert "driftmonitor/shuttle" in ready["message"]
    reasons = [e["reason"] for e in ctx.store.events("DriftMonitor", "twin")]
    assert reasons == [conditions.R_CLAIMED]  # once, not once per round
    # `flywheel approve` on the waiting monitor says so and writes no approval that would lie in wait.
    from flywheel import cli

    assert cli.main(["approve", "dm/twin", "twin-1", "--home", str(ctx.home)]) == 1
    assert dm.ANNOTATION_APPROVE not in (
        stored(ctx, "DriftMonitor", "twin")["metadata"].get("annotations") or {}
    )
    ctx.store.delete("TrainingRun", "twin-1")  # so the takeover round trains nothing here
    ctx.store.delete("DriftMonitor", "shuttle")
    result = runner.run_once(ctx, stored(ctx, "DriftMonitor", "twin"))
    assert result.claimed_by is None and len(analysis.checks) == 1
    ready = plans.get_condition(stored(ctx, "DriftMonitor", "twin")["status"]["conditions"], "Ready")
    assert ready is not None and ready["status"] == "True"
