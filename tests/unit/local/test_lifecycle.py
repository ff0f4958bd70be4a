"""`flywheel stop` and `flywheel delete` through the real CLI entry, on real processes: a supervised
workload (a sleeping Python process, standing in for torchrun or bentoml serve, which need minutes),
and a driver that holds the resource's lock and handles SIGINT the way `flywheel run` does.
The TrainingRun integration tests stop a real `flywheel run`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from flywheel import cli
from flywheel.local import lock as lock_mod
from flywheel.local import store, supervisor

ROOT = Path(__file__).resolve().parents[3]
SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


def _tr(name: str) -> dict:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": {"data": {"repo": "r", "path": "p.csv"}, "model": {"task": "classification", "target": "y"}},
    }


@pytest.fixture
def home(tmp_path: Path) -> Path:
    s = store.Store(tmp_path / "home")
    for name in ("iris", "done"):
        s.put(_tr(name))
        s.add_event("TrainingRun", name, "JobCreated", "started")
    s.patch_status("TrainingRun", "iris", {"phase": "Running", "observedGeneration": 1})
    s.patch_status("TrainingRun", "done", {"phase": "Succeeded"})
    s.put({"apiVersion": "flywheel.dev/v1alpha1", "kind": "Deployment", "metadata": {"name": "serve"},
           "spec": {"champion": {"fromTrainingRun": "iris"}}})  # fmt: skip
    s.patch_status("Deployment", "serve", {"phase": "Running", "readyReplicas": 1})
    return tmp_path / "home"


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _gone(tag: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while supervisor.tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not supervisor.tagged(tag)


def test_stop_a_detached_workload_suspends_it_and_leaves_finished_ones_alone(home, capsys):
    sup = supervisor.Supervisor(home)
    info = sup.start("Deployment", "serve", SLEEP, tie_to_parent=False)
    code, out, _ = _main(capsys, "stop", "--home", str(home))  # nothing named: the whole home
    assert code == 0
    assert "deployment/serve stopped" in out and "trainingrun/done not running" in out
    assert not sup.alive(info) and _gone(sup.tag("Deployment", "serve"))
    s = store.Store(home)
    status = s.get("Deployment", "serve")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert status["phase"] == "Suspended" and status["readyReplicas"] == 0
    assert (ready["status"], ready["reason"]) == ("False", "JobSuspended") and "flywheel run" in ready[
        "message"
    ]
    assert [e["reason"] for e in s.events("Deployment", "serve")] == ["JobSuspended"]
    assert s.get("TrainingRun", "done")["status"] == {"phase": "Succeeded"}
    assert sup.find("Deployment", "serve") is None  # `flywheel get` will not call it a crash


def test_stop_interrupts_the_driver_holding_the_lock_like_ctrl_c(home, capsys):
    """The driver: takes the lock, starts a workload, and on SIGINT stops it and records Suspended
    (what the runners do on KeyboardInterrupt), then exits 130."""
    driver_code = textwrap.dedent(
        f"""
        import sys, time
        from flywheel.local import lock, store, supervisor
        home = {str(home)!r}
        held = lock.ResourceLock(home, "TrainingRun", "iris")
        assert held.acquire()
        sup = supervisor.Supervisor(home)
        sup.start("TrainingRun", "iris", {SLEEP!r})
        print("driving", flush=True)
        try:
            time.sleep(120)
        except KeyboardInterrupt:
            sup.stop("TrainingRun", "iris")
            store.Store(home).patch_status("TrainingRun", "iris", {{"phase": "Suspended", "message": "interrupted"}})
            sys.exit(130)
        """
    )
    driver = subprocess.Popen(
        [sys.executable, "-c", driver_code], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert driver.stdout is not None and driver.stdout.readline().strip() == "driving"
        assert lock_mod.ResourceLock(home, "TrainingRun", "iris").holder() == driver.pid
        code, out, _ = _main(capsys, "stop", "trainingrun/iris", "--home", str(home))
        assert code == 0 and out.strip() == "trainingrun/iris stopped"
        assert driver.wait(5) == 130  # it was interrupted, not killed
    finally:
        driver.kill()
    assert _gone(supervisor.Supervisor(home).tag("TrainingRun", "iris"))
    status = store.Store(home).get("TrainingRun", "iris")["status"]
    assert status["phase"] == "Suspended" and status["message"] == "interrupted"  # the driver's own word


def test_delete_removes_state_keeps_artifacts_unless_purged(home, capsys):
    s = store.Store(home)
    sup = supervisor.Supervisor(home)
    info = sup.start("TrainingRun", "iris", SLEEP, tie_to_parent=False)
    log = sup.log_path("TrainingRun", "iris")
    log.with_name("iris.log.1").write_text("older\n")
    model = home / "artifacts" / "default" / "trainingruns" / "iris" / "model" / "model.onnx"
    model.parent.mkdir(parents=True)
    model.write_text("weights")
    code, out, _ = _main(capsys, "delete", "trainingrun/iris", "--home", str(home))
    assert code == 0 and out.strip() == "trainingrun/iris deleted"
    assert not sup.alive(info) and _gone(sup.tag("TrainingRun", "iris"))
    assert s.get("TrainingRun", "iris") is None and s.events("TrainingRun", "iris") == []
    assert not sup.run_dir("TrainingRun", "iris").exists()
    assert not log.exists() and not log.with_name("iris.log.1").exists()
    assert not lock_mod.lock_path(home, "TrainingRun", "iris").exists()
    assert model.read_text() == "weights"  # artifacts stay by default
    assert s.get("TrainingRun", "done") is not None and s.events("TrainingRun", "done")  # others untouched

    s.put(_tr("iris"))
    code, out, _ = _main(capsys, "delete", "tr", "iris", "--purge-artifacts", "--home", str(home))
    assert code == 0 and f"removed {model.parents[1]}" in out and not model.parents[1].exists()


def test_delete_by_file_kind_all_and_not_found_like_kubectl(home, tmp_path, capsys):
    manifest = tmp_path / "tr.yaml"
    manifest.write_text(yaml.safe_dump(_tr("done")))
    code, out, _ = _main(capsys, "delete", "-f", str(manifest), "--home", str(home))
    assert code == 0 and out.strip() == "trainingrun/done deleted"

    # One missing name: an error line for it, the others still deleted, exit 1.
    code, out, err = _main(capsys, "delete", "mdep/nope", "mdep/serve", "--home", str(home))
    assert code == 1 and out.strip() == "deployment/serve deleted"
    assert err.strip() == f"error: deployment/nope not found in {home.resolve()} (see `flywheel get`)"

    code, _, err = _main(capsys, "delete", "--home", str(home))
    assert code == 1 and "name what to delete" in err and "Traceback" not in err
    code, _, err = _main(capsys, "delete", "trainingrun", "--home", str(home))
    assert code == 1 and "--all" in err
    code, _, err = _main(capsys, "delete", "pods/x", "--home", str(home))
    assert code == 1 and "'pods' is not a Flywheel kind" in err
    code, out, _ = _main(capsys, "delete", "trainingrun", "--all", "--home", str(home))
    assert code == 0 and out.strip() == "trainingrun/iris deleted"
    assert store.Store(home).list() == []


def test_home_from_flag_before_or_after_the_subcommand_else_the_environment(
    home, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLYWHEEL_HOME", raising=False)
    for argv in (["--home", str(home), "get", "tr"], ["get", "tr", "--home", str(home)]):
        code, out, _ = _main(capsys, *argv)
        assert code == 0 and "iris" in out, argv
    monkeypatch.setenv("FLYWHEEL_HOME", str(home))
    code, out, _ = _main(capsys, "get", "tr")
    assert code == 0 and "iris" in out
    code, out, _ = _main(capsys, "get", "tr", "--home", str(tmp_path / "other"))  # the flag wins
    assert code == 0 and out.startswith("No resources found")
    monkeypatch.delenv("FLYWHEEL_HOME")
    code, out, _ = _main(capsys, "get")  # default: ./.flywheel of the working directory
    assert code == 0 and out.strip() == f"No resources found in {tmp_path / '.flywheel'}."
