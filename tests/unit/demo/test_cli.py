"""A failing `flywheel demo` names the stage and the fix, in one line, with exit code 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel import cli


def test_a_blocked_data_stage_names_itself_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    squatter = home / "datasets" / "shuttle"
    squatter.mkdir(parents=True)
    (squatter / "notes.txt").write_text("not a DVC repository")
    assert cli.main(["demo", "--home", str(home)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: stage 1 (Commit period-1 data to a local DVC repository) failed:")
    assert f"Fix: remove {squatter} or give another --home" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (home / "report").exists()  # nothing half-written
