"""Where the local backend's files are: the home, and what relative paths in a manifest mean.

The home is `--home DIR`, else $FLYWHEEL_HOME, else ./.flywheel. Every command finds the same
home the same way, so `export FLYWHEEL_HOME=~/fw` once is enough.

A relative local path in a manifest (data.repo of a TrainingRun, retrain.template.data.repo of a
DriftMonitor) is resolved against the home, never the working directory: the same manifest run
from any folder uses the same data, and two homes never share a dataset by accident. So
`data.repo: datasets/example` is <home>/datasets/example. URLs (https://, ssh://, git@host:) and
absolute paths are used as written.
"""

from __future__ import annotations

import os
from pathlib import Path

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
