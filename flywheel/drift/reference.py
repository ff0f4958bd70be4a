"""The reference data a check compares traffic with: what the champion was trained on, by default.

The champion's model card records its data lineage (repo, the commit its rev resolved to, path and
md5); resolving that commit through flywheel.data.resolve fetches exactly the bytes it trained on (the
resolver checks the md5), cached by content, so repeated checks cost a git lookup and no transfer.
Setting spec.reference.repo and path reads that DVC file (at spec.reference.rev) instead: the explicit
source wins. Only the champion's feature columns are returned; the target is never a feature.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from flywheel import errors
from flywheel.api import contract, driftmonitor, trainingrun
from flywheel.data import frames, resolve


def load(
    spec: driftmonitor.DriftMonitorSpec,
    champion_model_dir: Path,
    cache_dir: Path,
    env: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The reference rows (champion features only). `env` carries remote credentials (see
    flywheel.data.credentials; default os.environ)."""
    card = _card(Path(champion_model_dir))
    data = source(spec.reference, card)
    resolved = resolve.resolve(data, cache_dir, env)
    try:
        frame = frames.read(Path(resolved.local_path))
    except frames.ReadError as exc:
        raise errors.UserError(f"reference data {data.repo}@{data.rev}:{data.path}: {exc}") from None
    names = feature_names(card)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise errors.UserError(
            f"reference data {data.path}@{data.rev} lacks the champion's feature(s) {missing}: "
            "point spec.reference at data with the model's columns"
        )
    return frame[names]


def source(reference: driftmonitor.Reference, card: Mapping[str, Any]) -> trainingrun.Data:
    """Which DVC file to read: spec.reference's when it names one, else the champion's lineage."""
    if reference.repo and reference.path:
        return trainingrun.Data(repo=reference.repo, rev=reference.rev or "HEAD", path=reference.path)
    lineage = card.get("data") or {}
    rev = lineage.get("commit") or lineage.get("rev")
    if not (lineage.get("repo") and lineage.get("path") and rev):
        raise errors.UserError(
            f"the champion {card.get('version')} has no DVC data lineage (it was trained from a plain "
            "file): set spec.reference.repo and spec.reference.path to a DVC reference"
        )
    return trainingrun.Data(repo=lineage["repo"], rev=rev, path=lineage["path"])


def feature_names(card: Mapping[str, Any]) -> list[str]:
    return [str(f["name"]) for f in card.get("features", [])]


def _card(model_dir: Path) -> dict[str, Any]:
    path = model_dir / contract.MODEL_CARD
    if not path.is_file():
        raise errors.UserError(f"{model_dir}: no {contract.MODEL_CARD}, so the champion export is incomplete")
    card: dict[str, Any] = json.loads(path.read_text())
    return card
