"""Readable log lines and a bounded follower that survives log rotation, with a real writer process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from flywheel.local import logview, logwriter


def test_render_event_lines_and_pass_other_lines_through():
    line = json.dumps(
        {"event": "epoch", "time": "2026-12-07T20:01:18.123Z", "epoch": 2, "loss": 0.123456, "note": "a b"}
    )
    assert logview.render(line) == '2026-12-07T20:01:18.123Z INFO epoch epoch=2 loss=0.1235 note="a b"'
    failed = json.dumps({"event": "failed", "time": "T", "message": "out of memory", "metrics": {"f1": 0.5}})
    assert logview.render(failed) == 'T ERROR failed: out of memory metrics={"f1":0.5}'
    assert logview.render('[default0]:{"event": "step", "step": 3}') == "- INFO step step=3"
    for raw in ("--- 2026-12-07T20:01:18+00:00 started: torchrun ...", "{not json", '{"no": "event"}', ""):
        assert logview.render(raw) == raw


def test_tail_follows_a_writing_process_to_its_end(tmp_path):
    log = tmp_path / "w.log"
    writer = subprocess.Popen(
        [sys.executable, "-c", "import time\nfor i in range(30):\n print(i, flush=True); time.sleep(0.01)"],
        stdout=log.open("wb"),
    )
    lines = list(logview.tail(log, 0, lambda: writer.poll() is None, poll=0.02))
    assert lines == [str(i) for i in range(30)]


def test_tail_waits_for_a_missing_file_and_goes_on_after_rotation(tmp_path):
    log = tmp_path / "server.log"
    done = threading.Event()
    lines = logview.tail(log, 0, lambda: not done.is_set(), poll=0.02)
    threading.Timer(0.2, lambda: log.write_text("one\ntwo\n")).start()  # the file comes later
    assert [next(lines), next(lines)] == ["one", "two"]
    logwriter.rotate(log, 2)  # what flywheel.local.logwriter does at its size limit
    with log.open("a") as fh:
        fh.write("three\n")
    assert next(lines) == "three"
    done.set()
    assert list(lines) == []
    assert (tmp_path / "server.log.1").read_text() == "one\ntwo\n"


def test_tail_cuts_a_line_longer_than_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(logview, "MAX_LINE", 1000)
    monkeypatch.setattr(logview, "CHUNK", 256)
    log = tmp_path / "long.log"
    log.write_bytes(b"x" * 2500 + b"\nend\n")
    pieces = list(logview.tail(log, 0, lambda: False))
    assert [len(p) for p in pieces] == [1000, 1000, 500, 3]


def test_logs_cli_renders_keeps_raw_with_o_json_and_follows_a_running_workload(tmp_path):
    """`flywheel logs -f` in a real process, following a supervised workload until it exits."""
    from flywheel.local import supervisor as supervisor_mod

    home = tmp_path / "home"
    script = textwrap.dedent(
        """
        import json, time
        for step in range(5):
            print(json.dumps({"event": "step", "time": "T", "step": step}), flush=True)
            time.sleep(0.3)
        print("plain line", flush=True)
        """
    )
    (tmp_path / "work.py").write_text(script)
    sup = supervisor_mod.Supervisor(home)
    info = sup.start("TrainingRun", "iris", [sys.executable, str(tmp_path / "work.py")], tie_to_parent=False)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    follow = subprocess.run(
        [sys.executable, "-m", "flywheel", "logs", "tr/iris", "-f", "--home", str(home)],
        check=False, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert not sup.alive(info)  # it returned because the workload ended
    lines = follow.stdout.splitlines()
    assert follow.returncode == 0 and lines[0].startswith("--- ") and "started:" in lines[0]
    assert lines[1:] == [f"T INFO step step={i}" for i in range(5)] + ["plain line"]
    raw = subprocess.run(
        [sys.executable, "-m", "flywheel", "logs", "trainingrun", "iris", "-o", "json", "--home", str(home)],
        check=False, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert raw.returncode == 0 and json.loads(raw.stdout.splitlines()[1]) == {
        "event": "step",
        "time": "T",
        "step": 0,
    }
