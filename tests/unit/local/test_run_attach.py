"""`flywheel run` of a resource that another process drives: it attaches instead of starting it.

The driver here is a small real process holding the resource's lock, writing its log and status
the way a runner does (a real torchrun driver takes minutes; the TrainingRun integration test has
two real `flywheel run`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from flywheel import cli
from flywheel.local import store

ROOT = Path(__file__).resolve().parents[3]
TR = {
    "apiVersion": "flywheel.dev/v1alpha1",
    "kind": "TrainingRun",
    "metadata": {"name": "iris"},
    "spec": {"data": {"repo": "r", "path": "p.csv"}, "model": {"task": "classification", "target": "y"}},
}


def _driver(home: Path, phase: str, seconds: float) -> subprocess.Popen[str]:
    """Holds the lock of trainingrun/iris, logs two event lines, then ends with `phase`."""
    code = textwrap.dedent(
        f"""
        import json, time
        from flywheel.local import lock, store, supervisor
        home = {str(home)!r}
        held = lock.ResourceLock(home, "TrainingRun", "iris")
        assert held.acquire()
        log = supervisor.Supervisor(home).log_path("TrainingRun", "iris")
        log.parent.mkdir(parents=True, exist_ok=True)
        print("driving", flush=True)
        time.sleep(0.5)  # the attaching run starts following here
        with log.open("a") as fh:
            for step in (1, 2):
                fh.write(json.dumps({{"event": "step", "time": "T", "step": step}}) + "\\n")
                fh.flush()
                time.sleep(0.2)
        ready = {{"type": "Ready", "status": "False", "reason": "Failed", "message": "boom"}}
        store.Store(home).patch_status("TrainingRun", "iris", {{"phase": {phase!r}, "message": "boom",
                                        "conditions": [ready]}})
        time.sleep({seconds})
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "driving"
    return proc


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    home = tmp_path / "home"
    store.Store(home).put(TR)
    manifest = tmp_path / "tr.yaml"
    manifest.write_text(yaml.safe_dump(TR))
    return home, manifest


def test_a_second_run_follows_the_driver_and_exits_with_its_result(setup, capsys):
    home, manifest = setup
    driver = _driver(home, "Failed", 0.5)
    try:
        code = cli.main(["run", "-f", str(manifest), "--home", str(home)])
        err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
        assert driver.wait(10) == 0  # the driver ran to its own end: nothing stopped it
    finally:
        driver.kill()
    assert code == 1  # the driver's result, Failed
    assert f"already being run by `flywheel run` (pid {driver.pid})" in err
    assert "T INFO step step=1" in err and "T INFO step step=2" in err
    assert "trainingrun/iris: Failed: boom" in err
    assert store.Store(home).get("TrainingRun", "iris")["metadata"]["generation"] == 1  # not re-applied


def test_a_second_run_with_another_spec_is_refused_and_detach_does_not_restart(setup, tmp_path, capsys):
    home, manifest = setup
    changed = json.loads(json.dumps(TR))
    changed["spec"]["training"] = {"epochs": 3}
    other = tmp_path / "changed.yaml"
    other.write_text(yaml.safe_dump(changed))
    driver = _driver(home, "Running", 30)
    try:
        code = cli.main(["run", "-f", str(other), "--home", str(home)])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and "with a different spec" in err
        assert "flywheel stop trainingrun/iris" in err
        code = cli.main(["run", "-f", str(manifest), "--detach", "--home", str(home)])
        err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
        assert code == 0 and "not starting it again" in err
        assert driver.poll() is None
    finally:
        driver.kill()
        driver.wait()
    assert store.Store(home).get("TrainingRun", "iris")["spec"] == TR["spec"]  # the refused spec not stored
