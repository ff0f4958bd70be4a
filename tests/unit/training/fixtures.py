"""Tiny real datasets (scikit-learn) written to CSV, and trainer configs around them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn import datasets

from flywheel.training import config


def breast_cancer_csv(path: Path, rows: int = 300) -> Path:
    """Binary classification, 30 numeric features."""
    frame = datasets.load_breast_cancer(as_frame=True).frame.sample(rows, random_state=0)
    frame.to_csv(path, index=False)
    return path


def wine_csv(path: Path) -> Path:
    """3-class classification (178 rows) plus a categorical column derived from a feature."""
    frame = datasets.load_wine(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    frame["hue_band"] = frame["hue"].map(lambda v: "low" if v < 0.8 else ("mid" if v < 1.1 else "high"))
    frame.to_csv(path, index=False)
    return path


def diabetes_csv(path: Path) -> Path:
    """Regression, 10 numeric features, 442 rows."""
    datasets.load_diabetes(as_frame=True).frame.to_csv(path, index=False)
    return path


def spec(task: str = "classification", target: str = "target", **training: Any) -> dict[str, Any]:
    return {
        "data": {"repo": "/unused", "path": "data.csv"},
        "model": {"task": task, "target": target, "architecture": {"hiddenLayers": [32, 16]}},
        "training": {"epochs": 2, "batchSize": 32, "checkpointEvery": 5, **training},
    }


def dvc_data(data: Path) -> dict[str, Any]:
    """The spec.data of a real local git + DVC repository holding the CSV `data` (made once per
    file, beside it): the trainer resolves it with DVC as in a pod. The gate is off, as these
    fixtures study training."""
    from flywheel.data import examples  # DVC is heavy: only for the tests that train

    root = data.with_name(f"{data.stem}-dvc")
    if not root.exists():
        examples.file_repo(root, pd.read_csv(data))
    return {"repo": str(root), "rev": "v1", "path": "data/train.csv", "validation": {"enabled": False}}


def write_config(tmp: Path, data: Path | None, spec_dict: dict[str, Any], name: str = "tiny") -> Path:
    """A trainer config; with `data` (a CSV), its spec.data is a DVC repository holding it."""
    if data is not None:
        spec_dict = {**spec_dict, "data": dvc_data(data)}
    raw: dict[str, Any] = {
        "name": name,
        "namespace": "default",
        "spec": spec_dict,
        "artifactsUri": (tmp / "artifacts" / "default" / "trainingruns" / name).as_uri(),
    }
    path = tmp / f"{name}-config.json"
    path.write_text(json.dumps(raw))
    config.load(path)  # the fixture itself must be a valid config
    return path


def run_root(tmp: Path, name: str = "tiny") -> Path:
    return tmp / "artifacts" / "default" / "trainingruns" / name
