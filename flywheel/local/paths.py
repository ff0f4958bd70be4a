"""Where the local backend's files are: the home, and what relative paths in a manifest mean.

The home is `--home DIR`, else $FLYWHEEL_HOME, else ./.flywheel. Every command finds the same
home the same way, so `export FLYWHEEL_HOME=~/fw` once is enough.

A relative local path in a manifest (data.repo of a TrainingRun, retrain.template.data.repo of a
DriftMonitor) is resolved against the home, never the working directory: the same manifest run
from any folder uses the same data, and two homes never share a dataset by accident. So
`data.repo: datasets/example` is <home>/datasets/example. URLs (https://, ssh://, git@host:) and
absolute paths are used as written.

Code is the exception: spec.trainer.path (a TrainingRun's, or a DriftMonitor's retrain template's)
is resolved against the manifest's folder, when `flywheel run` reads the file, because the code
ships beside the manifest (examples/custom-tabular/), not in the home.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ENV_HOME = "FLYWHEEL_HOME"
DEFAULT_HOME = ".flywheel"


def home(flag: str | None = None) -> Path:
    """The home: the flag, else $FLYWHEEL_HOME, else ./.flywheel (absolute)."""
    return Path(flag or os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser().resolve()


def is_remote(location: str) -> bool:
    """A URL or scp-like git address rather than a local path."""
    return "://" in location or location.startswith("git@")


def resolve(home_dir: Path, location: str) -> str:
    """A manifest's local path made absolute against the home; URLs and absolute paths unchanged."""
    if is_remote(location):
        return location
    return str((home_dir / Path(location).expanduser()).resolve())


def code_paths(resource: Any, folder: Path) -> Any:
    """`resource` with every relative spec.trainer.path made absolute against `folder` (the
    manifest's); anything else unchanged."""
    spec = getattr(resource, "spec", None)
    retrain = getattr(spec, "retrain", None)
    for owner in (spec, getattr(retrain, "template", None)):
        trainer = getattr(owner, "trainer", None)
        if trainer is not None and trainer.path and not Path(trainer.path).expanduser().is_absolute():
            trainer.path = str((folder / trainer.path).resolve())
    return resource
