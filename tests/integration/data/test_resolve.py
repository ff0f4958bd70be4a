"""resolve() against a real git + DVC repository with a local DVC remote (examples.make_repo)."""

from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from flywheel import errors
from flywheel.api import trainingrun
from flywheel.data import examples, resolve

pytestmark = pytest.mark.slow  # builds a real DVC repository (~5-10 s once per session)


def _data(example: examples.ExampleRepo, **kw: str) -> trainingrun.Data:
    return trainingrun.Data(
        **{"repo": str(example.root), "rev": "period-1", "path": examples.DATA_PATH, **kw}
    )


def test_tags_resolve_to_their_commit_hash_and_bytes(example_repo: examples.ExampleRepo, cache: Path) -> None:
    for period in (1, 2):
        tag = f"period-{period}"
        got = resolve.resolve(_data(example_repo, rev=tag), cache)
        lin = got.lineage
        assert (lin.rev, lin.commit, lin.hash) == (tag, example_repo.commits[tag], example_repo.hashes[tag])
        assert hashlib.md5(got.local_path.read_bytes()).hexdigest() == lin.hash
        assert got.local_path.parent == cache / lin.hash
        assert lin.size == got.local_path.stat().st_size
        assert lin.rows == len(pd.read_csv(got.local_path)) == examples.ROWS_PER_PERIOD
    main = resolve.resolve(_data(example_repo, rev="main"), cache)
    assert main.lineage.commit == example_repo.commits["period-2"]


def test_second_resolve_of_same_hash_does_not_fetch(
    example_repo: examples.ExampleRepo, cache: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"  # a fresh clone has no DVC cache: the first resolve must use the remote
    subprocess.run(["git", "clone", "-q", str(example_repo.root), str(clone)], check=True)
    first = resolve.resolve(_data(example_repo, repo=str(clone)), cache)
    stamp = first.local_path.stat().st_mtime_ns
    hidden = example_repo.remote_dir.with_name("hidden-remote")
    example_repo.remote_dir.rename(hidden)  # no remote at all now: a fetch would fail
    try:
        second = resolve.resolve(_data(example_repo, repo=str(clone)), cache)
        with pytest.raises(errors.UserError, match=r"^spec\.data\.remote: cannot fetch 'data/shuttle.csv'"):
            resolve.resolve(_data(example_repo, repo=str(clone)), tmp_path / "other-cache")
    finally:
        hidden.rename(example_repo.remote_dir)
    assert second.local_path.stat().st_mtime_ns == stamp
    assert second.lineage == first.lineage


def test_git_url_is_cloned(example_repo: examples.ExampleRepo, cache: Path) -> None:
    got = resolve.resolve(_data(example_repo, repo=f"file://{example_repo.root}", rev="period-2"), cache)
    assert got.lineage.commit == example_repo.commits["period-2"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rev": "period-9"}, r"^spec\.data\.rev: 'period-9' is not a branch, tag or commit"),
        (
            {"path": "data/nope.csv"},
            r"^spec\.data\.path: 'data/nope.csv' does not exist .*tracked: data/shuttle.csv",
        ),
        ({"path": ".dvcignore"}, r"^spec\.data\.path: '.dvcignore' .* is not tracked by DVC"),
        ({"path": "data"}, r"^spec\.data\.path: 'data' .* is a directory"),
        ({"remote": "s3prod"}, r"^spec\.data\.remote: .* has no DVC remote 's3prod'; use one of \['local'\]"),
        ({"repo": "/nonexistent/repo"}, r"^spec\.data\.repo: cannot open '/nonexistent/repo'"),
    ],
)
def test_user_mistakes_name_the_field(
    example_repo: examples.ExampleRepo, cache: Path, change: dict[str, str], message: str
) -> None:
    with pytest.raises(errors.UserError, match=message) as info:
        resolve.resolve(_data(example_repo, **change), cache)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained traceback


def test_not_a_git_repository(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(errors.UserError, match=r"^spec\.data\.repo: .* is not a git repository"):
        resolve.resolve(trainingrun.Data(repo=str(tmp_path), path="x.csv"), cache)


def test_credentials_never_appear_in_errors_logs_or_output(
    example_repo: examples.ExampleRepo,
    cache: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    secret = "tok-9f8e7d6c5b4a"
    env = {"GIT_PASSWORD": secret, "AWS_SECRET_ACCESS_KEY": secret + "-aws"}
    caplog.set_level(logging.DEBUG)
    # The token goes into the clone URL, and git/dulwich echo that URL in their errors.
    with pytest.raises(errors.UserError) as info:
        resolve.resolve(
            trainingrun.Data(repo="https://127.0.0.1:9/org/data.git", path="d.csv"), cache, env=env
        )
    assert str(info.value).startswith("spec.data.repo: cannot open 'https://127.0.0.1:9/org/data.git'")
    # A working resolve with credentials present logs nothing secret either (S3 keys are not
    # handed to a local remote).
    resolve.resolve(_data(example_repo), cache, env=env)
    # A remote option the local remote rejects: DVC's config error must not carry the value.
    with pytest.raises(errors.UserError, match=r"^spec\.data\.remote: cannot fetch") as fetch:
        resolve.resolve(_data(example_repo), tmp_path / "c2", env={"DVC_REMOTE_PASSWORD": secret})
    out, err = capfd.readouterr()
    for text in (str(info.value), str(fetch.value), repr(info.value.args), caplog.text, out, err):
        assert secret not in text
