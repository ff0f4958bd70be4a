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


CONCEPT_TAG = "concept-1"
"""Period 1's training rows relabelled by examples.concept_shift (the concept-drift scenario)."""


def tagged(root: Path, period: int | str) -> str | None:
    """The commit tagged period-N (or the tag given by name), or None."""
    if not (root / ".git").exists():
        return None
    name = period if isinstance(period, str) else tag(period)
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", f"refs/tags/{name}^{{commit}}"],
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


def commit_concept(root: Path) -> tuple[str, bool]:
    """Commit period 1's training rows with the new labelling rule (examples.concept_shift) and tag
    them CONCEPT_TAG: what a team commits once the new failure mode is understood. Idempotent."""
    existing = tagged(root, CONCEPT_TAG)
    if existing:
        return existing, False
    init(root)
    rows = examples.concept_shift(examples.period_frame(1))
    message = "Data: shuttle period 1, relabelled with the new failure mode (f9 at or above its q85)"
    return examples.commit_rows(root, rows, CONCEPT_TAG, message)[0], True
