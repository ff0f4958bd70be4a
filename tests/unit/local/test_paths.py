"""The home and what a relative path in a manifest means (against the home, never the cwd)."""

from __future__ import annotations

from flywheel.local import paths


def test_home_is_the_flag_else_the_environment_else_dot_flywheel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path / "env"))
    assert paths.home(str(tmp_path / "flag")) == tmp_path / "flag"
    assert paths.home(None) == tmp_path / "env"
    monkeypatch.delenv("FLYWHEEL_HOME")
    assert paths.home(None) == tmp_path / ".flywheel"
    assert paths.home("rel").is_absolute() and paths.home("rel") == tmp_path / "rel"


def test_relative_paths_resolve_against_the_home_urls_and_absolute_paths_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # the working directory must not matter
    home = tmp_path / "home"
    assert paths.resolve(home, "datasets/example") == str(home / "datasets" / "example")
    assert paths.resolve(home, "./datasets/../datasets/example") == str(home / "datasets" / "example")
    assert paths.resolve(home, "/srv/data") == "/srv/data"
    for remote in ("https://github.com/o/r.git", "ssh://git@host/r", "git@github.com:o/r.git"):
        assert paths.resolve(home, remote) == remote and paths.is_remote(remote)
    assert not paths.is_remote("datasets/example")
