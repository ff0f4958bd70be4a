"""The demo's DVC repository, grown one period at a time as a team would.

flywheel.data.examples.make_repo commits every period at once (what `flywheel run -f
examples/trainingrun-local.yaml` needs). The demo tells the story in order instead: period 1 is
committed before the champion is trained; period 2's labelled rows are committed, as a new DVC rev
on `main`, only after drift is detected. Each period is tagged `period-N` and pushed to a local DVC
remote beside the repository; committing a period that is already tagged is a no-op, so a re-run
reuses what is there.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from flywheel.data import dvcenv, examples

PERIODS = 2


def tag(period: int) -> str:
    return f"period-{period}"


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
    dvcenv.ensure_offline()
    if (root / ".dvc").exists():
        return
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not a DVC repository")
    examples.init_repo(root)


def commit_period(root: Path, period: int) -> tuple[str, bool]:
    """Commit period N's labelled training rows on main, tag and push them: (commit, created).

    Idempotent: a period already tagged returns its commit and created=False."""
    existing = tagged(root, period)
    if existing:
        return existing, False
    init(root)
    message = f"Data: shuttle period {period} of {PERIODS}, labelled"
    return examples.commit_period(root, period, PERIODS, message)[0], True
