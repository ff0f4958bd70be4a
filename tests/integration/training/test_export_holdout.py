"""The export carries the holdout rows (contract.HOLDOUT_FILE): exactly the rows the trainer held out,
as read (categorical values and labels untouched), features and target only, listed in the card."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from flywheel.api import contract
from flywheel.training import __main__ as entry
from tests.unit.training import fixtures

pytestmark = pytest.mark.slow  # a real (tiny) training with ONNX export


def test_holdout_rows_are_exported_with_features_and_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = fixtures.wine_csv(tmp_path / "wine.csv")
    frame = pd.read_csv(data)
    frame["note"] = "not a feature"  # a column of the data the model does not declare
    frame.to_csv(data, index=False)
    spec = fixtures.spec(epochs=1)
    spec["model"]["features"] = [
        {"name": "alcohol"},
        {"name": "hue"},
        {"name": "hue_band", "type": "categorical"},
    ]
    monkeypatch.setenv(contract.ENV_CONFIG, str(fixtures.write_config(tmp_path, data, spec)))
    monkeypatch.setenv(contract.ENV_TERMINATION_LOG, str(tmp_path / "termination-log"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert entry.main() == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    held = next(e for e in events if e["event"] == "evaluate")["rows"]

    model_dir = fixtures.run_root(tmp_path) / contract.MODEL_DIR
    card = json.loads((model_dir / contract.MODEL_CARD).read_text())
    assert card["files"]["holdout"] == contract.HOLDOUT_FILE
    holdout = pd.read_parquet(model_dir / contract.HOLDOUT_FILE)
    assert list(holdout.columns) == ["alcohol", "hue", "hue_band", "target"]
    assert len(holdout) == held == math.ceil(len(frame) * 0.2)
    assert set(holdout["target"]) <= {"barolo", "grignolino", "barbera"}
    assert set(holdout["hue_band"]) <= {"low", "mid", "high"}
    # every exported row is a row of the data, unchanged
    merged = holdout.merge(frame, on=["alcohol", "hue", "hue_band", "target"], how="left", indicator=True)
    assert (merged["_merge"] == "both").all()
    # the card stays the last file written: nothing in the directory is newer than it
    card_time = (model_dir / contract.MODEL_CARD).stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= card_time for p in model_dir.iterdir())
