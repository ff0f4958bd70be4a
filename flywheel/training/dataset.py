"""Where the rows come from (DVC + the gate, here in the trainer) and how they split."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import model_selection

from flywheel import errors
from flywheel.api import contract, trainingrun
from flywheel.training import config as config_mod


@dataclasses.dataclass(frozen=True)
class Source:
    path: str
    lineage: trainingrun.DataLineage
    passed: bool = True
    validation: dict[str, Any] | None = None


def cache_dir() -> Path:
    """FLYWHEEL_DATA_CACHE, else <work dir>/data-cache in a pod, else a per-user temp dir."""
    configured = os.environ.get("FLYWHEEL_DATA_CACHE")
    if configured:
        return Path(configured)
    work = Path(contract.WORK_DIR)
    if work.is_dir() and os.access(work, os.W_OK):
        return work / "data-cache"
    return Path(tempfile.gettempdir()) / f"flywheel-data-cache-{os.getuid()}"


def locate(cfg: config_mod.Config) -> Source:
    """The data file and its lineage: resolved with DVC and gated with Great Expectations here, on
    both backends (call on local rank 0)."""
    from flywheel.data import gate, resolve  # lazy: DVC and GX are heavy and only needed here

    resolved = resolve.resolve(cfg.spec.data, cache_dir())
    path = resolved.local_path
    lineage = resolved.lineage
    if not cfg.spec.data.validation.enabled:
        return Source(str(path), _complete(lineage, path))
    result = gate.validate(path, cfg.spec, resolved.expectations)
    return Source(str(path), _complete(lineage, path), result.success, result.to_status())


def _complete(lineage: trainingrun.DataLineage, path: Path) -> trainingrun.DataLineage:
    """Fill hash (md5 of the file, DVC's content hash) and size when the caller did not."""
    update: dict[str, Any] = {}
    if lineage.hash is None:
        update["hash"] = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    if lineage.size is None:
        update["size"] = path.stat().st_size
    return lineage.model_copy(update=update)


def read(path: str) -> pd.DataFrame:
    lower = path.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except FileNotFoundError as exc:
        raise errors.UserError(f"data file {path}: no such file") from exc


def split(frame: pd.DataFrame, spec: trainingrun.TrainingRunSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded train/holdout split, stratified for classification when every class has 2+ rows."""
    target = spec.model.target
    if target not in frame.columns:
        raise errors.UserError(
            f"model.target {target!r} is not a column of the data ({list(frame.columns)[:8]})"
        )
    stratify = None
    if spec.model.task == trainingrun.Task.CLASSIFICATION:
        counts = frame[target].astype(str).value_counts()
        n_hold = int(np.ceil(len(frame) * spec.training.holdout_fraction))
        if counts.min() >= 2 and n_hold >= len(counts):
            stratify = frame[target].astype(str)
    train, holdout = model_selection.train_test_split(
        frame, test_size=spec.training.holdout_fraction, random_state=spec.training.seed, stratify=stratify
    )
    return train.reset_index(drop=True), holdout.reset_index(drop=True)
