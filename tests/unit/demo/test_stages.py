"""Stages: timed, announced, and a failure names the stage and the fix."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from rich.console import Console

from flywheel import errors
from flywheel.demo import stages


def _stages(tmp_path: Path) -> stages.Stages:
    ticks = itertools.count(0, 1.5)
    console = Console(record=True, width=120, file=open("/dev/null", "w"))  # noqa: SIM115
    return stages.Stages(console, total=3, log_path=tmp_path / "demo.log", clock=lambda: next(ticks))


def test_stages_are_timed_and_announced(tmp_path: Path) -> None:
    s = _stages(tmp_path)
    assert s.run("a", "First", "n/a", lambda: 7) == 7

    def reuse() -> None:
        s.reused("already there")

    s.run("b", "Second", "n/a", reuse)
    assert [(t.key, t.seconds, t.reused) for t in s.timings] == [("a", 1.5, False), ("b", 1.5, True)]
    text = s.console.export_text()
    assert "[1/3] First" in text and "[2/3] Second" in text and "reusing: already there" in text


def test_stage_error_names_the_stage_and_its_own_fix(tmp_path: Path) -> None:
    s = _stages(tmp_path)

    def fail() -> None:
        raise stages.StageError("no drift found", "replay more rows")

    with pytest.raises(errors.UserError) as info:
        s.run("drift", "Drift check", "generic advice", fail)
    assert str(info.value) == "stage 1 (Drift check) failed: no drift found. Fix: replay more rows"
    assert s.timings == []


def test_a_bug_keeps_its_traceback_in_the_log(tmp_path: Path) -> None:
    s = _stages(tmp_path)
    with pytest.raises(errors.UserError) as info:
        s.run("serve", "Serve", "see the deployment log", lambda: {}["missing"])
    message = str(info.value)
    assert message.startswith("stage 1 (Serve) failed: KeyError: 'missing'. Fix: see the deployment log")
    assert str(tmp_path / "demo.log") in message
    assert "Traceback" in (tmp_path / "demo.log").read_text()


def test_user_errors_keep_their_message_with_the_stage(tmp_path: Path) -> None:
    s = _stages(tmp_path)

    def fail() -> None:
        raise errors.UserError("data.repo: not found; create it", ["detail"])

    with pytest.raises(errors.UserError) as info:
        s.run("data", "Data", "n/a", fail)
    assert str(info.value) == "stage 1 (Data) failed: data.repo: not found; create it"
    assert info.value.problems == ["detail"]
