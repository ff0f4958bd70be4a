"""An example DVC repository built from a real dataset, with a real shift between two periods.

The closed-loop demo needs data that (a) changes the way production data changes, so Evidently
reports drift, and (b) changes what a model must learn, so a model retrained on new data beats the
old one. Synthetic noise does neither honestly. The NASA Statlog (Shuttle) data shipped with `river`
does both when split by its first attribute, f1, which is the mission time: later in the mission the
sensor readings move (Evidently flags 7 of 9 columns) and the anomaly rate rises from 0.4% to 15%,
so a model trained on period 1 has seen too few anomalies to catch them. Figures and the comparison
with other candidates are in examples/data/README.md.

`make_repo` writes each period to the same DVC-tracked path, commits it, tags it `period-N` and
pushes it to a local DVC remote (a directory), exactly as a team versions a growing dataset.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from flywheel import artifacts
from flywheel.api import trainingrun
from flywheel.data import dvcenv

TARGET = "anomaly"
TIME_COLUMN = "f1"  # UCI: "the first attribute is time"
DATA_PATH = "data/shuttle.csv"
ROWS_PER_PERIOD = 4000  # committed (training) rows per period
TRAFFIC_ROWS = 2000  # further rows per period, disjoint from the committed ones, for serving traffic
SEED = 0
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Flywheel Example",
    "GIT_AUTHOR_EMAIL": "example@flywheel.dev",
    "GIT_COMMITTER_NAME": "Flywheel Example",
    "GIT_COMMITTER_EMAIL": "example@flywheel.dev",
    "GIT_CONFIG_NOSYSTEM": "1",
    # Fixed dates make the commits (and tags) a function of the data alone: a rebuilt example repo,
    # e.g. after the in-cluster publisher restarts, has the commits that earlier lineage recorded.
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+00:00",
}


@dataclasses.dataclass(frozen=True)
class ExampleRepo:
    """What make_repo created: where, and what each period tag points at."""

    root: Path
    remote_dir: Path
    data_path: str
    commits: dict[str, str]
    """tag (period-N) -> git commit."""
    hashes: dict[str, str]
    """tag (period-N) -> DVC md5 of the data file."""

    def data_spec(self, period: int = 1) -> trainingrun.Data:
        """The TrainingRun `spec.data` that trains on one period."""
        return data_spec(str(self.root), f"period-{period}")

    def model_spec(self) -> trainingrun.ModelSpec:
        return model_spec()


def source_csv() -> Path:
    """The Shuttle CSV inside the installed river package (no download)."""
    import river.datasets

    return Path(river.datasets.__file__).parent / "shuttle.csv.gz"


@functools.cache
def _full() -> pd.DataFrame:
    return pd.read_csv(source_csv())


def _period_bins(periods: int) -> list[pd.DataFrame]:
    """Split by mission time into `periods` equal-count slices, earliest first."""
    frame = _full()
    ranks = frame[TIME_COLUMN].rank(method="first")
    slot = ((ranks - 1) * periods // len(frame)).astype(int)
    return [frame[slot == i] for i in range(periods)]


def period_frame(
    n: int, *, periods: int = 2, part: str = "train", labelled: bool = True, rows: int | None = None
) -> pd.DataFrame:
    """Rows of period `n` (1-based). part="train" is what the repo commits; part="traffic" is a
    disjoint sample of the same period (for serving traffic or a holdout). labelled=False drops
    the target, which is what a model server sees."""
    if not 1 <= n <= periods:
        raise ValueError(f"period {n} is outside 1..{periods}")
    if part not in ("train", "traffic"):
        raise ValueError("part must be 'train' or 'traffic'")
    sample = _period_bins(periods)[n - 1].sample(frac=1.0, random_state=SEED + n)
    start, default = (0, ROWS_PER_PERIOD) if part == "train" else (ROWS_PER_PERIOD, TRAFFIC_ROWS)
    out = sample.iloc[start : start + (rows if rows is not None else default)]
    out = out.reset_index(drop=True)
    return out if labelled else out.drop(columns=[TARGET])


CONCEPT_COLUMN = "f9"
CONCEPT_QUANTILE = 0.85


def concept_shift(frame: pd.DataFrame) -> pd.DataFrame:
    """Concept drift built from real rows: the same features, a new rule for the label.

    A new failure mode: a reading of CONCEPT_COLUMN at or above its CONCEPT_QUANTILE over period 1
    of the mission (a fixed threshold, so every slice is relabelled alike) now also counts as an
    anomaly. The inputs are untouched, so a feature-drift check sees nothing; only ground truth
    (feedback) shows that a period-1 model now misses about one row in seven."""
    threshold = float(_period_bins(2)[0][CONCEPT_COLUMN].quantile(CONCEPT_QUANTILE))
    out = frame.copy()
    out[TARGET] = ((out[TARGET] == 1) | (out[CONCEPT_COLUMN] >= threshold)).astype(out[TARGET].dtype)
    return out


def write_period(path: Path, n: int, **kwargs: object) -> Path:
    """Write period_frame(n, **kwargs) to `path` (CSV, or Parquet for *.parquet), atomically."""
    frame = period_frame(n, **kwargs)  # type: ignore[arg-type]
    if path.suffix == ".parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        artifacts.atomic_write_bytes(path, buf.getvalue())
    else:
        artifacts.atomic_write_text(path, frame.to_csv(index=False))
    return path


def model_spec() -> trainingrun.ModelSpec:
    """Target and typed features with validity ranges taken from the whole mission."""
    frame = _full()
    features = [
        trainingrun.Feature(
            name=col, type="numeric", min=float(frame[col].min()), max=float(frame[col].max())
        )
        for col in frame.columns
        if col != TARGET
    ]
    return trainingrun.ModelSpec(task=trainingrun.Task.CLASSIFICATION, target=TARGET, features=features)


def data_spec(repo: str, rev: str = "period-1") -> trainingrun.Data:
    return trainingrun.Data(repo=repo, rev=rev, path=DATA_PATH)


def git(root: Path, *args: str) -> str:
    """Run git in `root` as the example's author; its stdout, stripped."""
    env = {**os.environ, **_GIT_ENV}
    done = subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def make_repo(root: Path, *, periods: int = 2, remote: dict[str, str] | None = None) -> ExampleRepo:
    """Create a git + DVC repository at `root` (empty or absent) with one tag per period.

    The DVC remote is the directory `<root>.dvc-remote` beside it, so cloning the repository
    elsewhere still finds it by absolute path; `remote` (DVC remote options: url, endpointurl, ...)
    replaces it, e.g. an s3 bucket a cluster reaches (see publish.py). Its credentials stay out of
    the repository: DVC reads them from the environment when it pushes."""
    dvcenv.ensure_offline()
    root = root.resolve()
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    remote_dir = init_repo(root, remote)
    commits, hashes = {}, {}
    for n in range(1, periods + 1):
        tag = f"period-{n}"
        commits[tag], hashes[tag] = commit_period(
            root, n, periods, f"Data: shuttle period {n} of {periods} (by mission time)"
        )
    return ExampleRepo(root, remote_dir, DATA_PATH, commits, hashes)


def init_repo(root: Path, remote: dict[str, str] | None = None) -> Path:
    """git init + DVC init with a local remote `<root>.dvc-remote` (or `remote`, named "storage"),
    DVC's files committed; the local remote directory (created even when unused)."""
    import dvc.repo

    root.mkdir(parents=True, exist_ok=True)
    remote_dir = root.with_name(root.name + ".dvc-remote")
    remote_dir.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    with dvcenv.quiet():  # DVC logs git hints meant for a terminal at INFO
        repo = dvc.repo.Repo.init(str(root))
        try:
            with repo.config.edit() as conf:
                conf["core"]["analytics"] = False
                name = "storage" if remote else "local"
                conf["core"]["remote"] = name
                conf["remote"][name] = dict(remote) if remote else {"url": str(remote_dir)}
        finally:
            repo.close()
    git(root, "add", ".dvc", ".dvcignore")
    git(root, "commit", "-q", "-m", "Initialise DVC with its remote")
    return remote_dir


def commit_period(root: Path, n: int, periods: int, message: str) -> tuple[str, str]:
    """Write period n's rows, track them with DVC, commit on main, tag `period-n`, push to the DVC
    remote: (commit, DVC content hash). A period committed by a crashed earlier call but not tagged
    is tagged, not committed twice."""
    return commit_rows(root, period_frame(n, periods=periods), f"period-{n}", message)


def commit_rows(
    root: Path, frame: pd.DataFrame, tag: str, message: str, path: str = DATA_PATH
) -> tuple[str, str]:
    """Write `frame` to the tracked `path`, commit it on main, tag it `tag`, push it to the DVC
    remote: (commit, DVC content hash). Rows committed by a crashed earlier call are tagged, not
    committed twice."""
    import dvc.repo

    with dvcenv.quiet():
        artifacts.atomic_write_text(root / path, frame.to_csv(index=False))
        repo = dvc.repo.Repo(str(root))
        try:
            (stage,) = repo.add(str(root / path))
            git(root, "add", f"{path}.dvc", str(Path(path).parent / ".gitignore"))
            if _staged(root):
                git(root, "commit", "-q", "-m", message)
            git(root, "tag", tag)
            repo.push()
        finally:
            repo.close()
    return git(root, "rev-parse", "HEAD"), str(stage.outs[0].hash_info.value)


def file_repo(
    root: Path, frame: pd.DataFrame, *, tag: str = "v1", path: str = "data/train.csv", gate: bool = False
) -> trainingrun.Data:
    """A git + DVC repository at `root` (empty or absent) holding `frame` at `path`, tagged `tag`;
    the TrainingRun `spec.data` that trains on it. How a test or a benchmark trains on rows of its
    own: the trainer resolves them from DVC as in a pod (it has no plain-file input). The gate is
    off unless `gate`: the callers study training, and the gate has tests of its own."""
    dvcenv.ensure_offline()
    root = root.resolve()
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    init_repo(root)
    commit_rows(root, frame, tag, f"Data: {path}", path)
    return trainingrun.Data(
        repo=str(root), rev=tag, path=path, validation=trainingrun.Validation(enabled=gate)
    )


def _staged(root: Path) -> bool:
    return subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=root, check=False).returncode == 1


def main(argv: list[str]) -> int:
    return run_cli(argv, "flywheel.data.examples", make_repo)


def run_cli(argv: list[str], module: str, make: Callable[[Path], ExampleRepo]) -> int:
    """`python -m <module> ROOT`: make an example repository there and print its revisions."""
    if len(argv) != 1:
        print(f"usage: python -m {module} ROOT", file=sys.stderr)
        return 2
    try:
        made = make(Path(argv[0]))
    except FileExistsError as exc:
        print(f"error: {exc}: choose a new directory", file=sys.stderr)
        return 1
    print(f"created {made.root} (DVC remote {made.remote_dir})")
    for tag, commit in made.commits.items():
        print(f"  {tag}: commit {commit[:12]}  {made.data_path} md5 {made.hashes[tag]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
