"""The demo's DVC repository, grown one period at a time as a team would.

flywheel.data.examples.make_repo commits every period at once (what `flywheel run -f
examples/trainingrun-local.yaml` needs). The demo tells the story in order instead: period 1 is
committed before the champion is trained; period 2's labelled rows are committed, as a new DVC rev
on `main`, only after drift is detected. Each period is tagged `period-N` and pushed to a local DVC
remote beside the repository; committing a period that is already tagged is a no-op, so a re-run
reuses what is there.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from flywheel.data import dvcenv, examples

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Flywheel Demo",
    "GIT_AUTHOR_EMAIL": "demo@flywheel.dev",
    "GIT_COMMITTER_NAME": "Flywheel Demo",
    "GIT_COMMITTER_EMAIL": "demo@flywheel.dev",
    "GIT_CONFIG_NOSYSTEM": "1",
}
PERIODS = 2


def tag(period: int) -> str:
    return f"period-{period}"


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=root, env={**os.environ, **GIT_ENV}, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def tagged(root: Path, period: int) -> str | None:
    """The commit tagged period-N, or None."""
    if not (root / ".git").exists():
        return None
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", f"refs/tags/{tag(period)}^{{commit}}"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,  # exit 1 means "no such tag"
    )
    return done.stdout.strip() or None


def init(root: Path) -> None:
    """git + DVC repository with a local remote (<root>.dvc-remote); nothing committed but DVC's files."""
    import dvc.repo

    dvcenv.ensure_offline()
    if (root / ".dvc").exists():
        return
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not a DVC repository")
    root.mkdir(parents=True, exist_ok=True)
    remote = root.with_name(root.name + ".dvc-remote")
    remote.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    with dvcenv.quiet():
        repo = dvc.repo.Repo.init(str(root))
        try:
            with repo.config.edit() as conf:
                conf["core"]["analytics"] = False
                conf["core"]["remote"] = "local"
                conf["remote"]["local"] = {"url": str(remote)}
        finally:
            repo.close()
    git(root, "add", ".dvc", ".dvcignore")
    git(root, "commit", "-q", "-m", "Initialise DVC with a local remote")


def commit_period(root: Path, period: int) -> tuple[str, bool]:
    """Commit period N's labelled training rows on main, tag and push them: (commit, created).

    Idempotent: a period already tagged returns its commit and created=False."""
    import dvc.repo

    existing = tagged(root, period)
    if existing:
        return existing, False
    init(root)
    with dvcenv.quiet():
        examples.write_period(root / examples.DATA_PATH, period, periods=PERIODS)
        repo = dvc.repo.Repo(str(root))
        try:
            repo.add(str(root / examples.DATA_PATH))
            git(root, "add", f"{examples.DATA_PATH}.dvc", str(Path(examples.DATA_PATH).parent / ".gitignore"))
            if _staged(root):  # else a crashed earlier run committed it but did not tag it
                git(root, "commit", "-q", "-m", f"Data: shuttle period {period} of {PERIODS}, labelled")
            git(root, "tag", tag(period))
            repo.push()
        finally:
            repo.close()
    return git(root, "rev-parse", "HEAD"), True


def _staged(root: Path) -> bool:
    return subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=root, check=False).returncode == 1
