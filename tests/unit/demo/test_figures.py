"""The report's figures: epochs parsed from a real trainer log format, PNGs that decode as images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from flywheel.demo import figures


def _epoch(n: int, loss: float, holdout: float) -> str:
    return json.dumps(
        {
            "event": "epoch",
            "epoch": n,
            "epochs": 3,
            "step": 10 * n,
            "loss": loss,
            "metric": "accuracy",
            "train": holdout - 0.01,
            "holdout": holdout,
        }
    )


def test_epochs_from_log_keeps_one_record_per_epoch_from_the_latest_attempt(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text(
        "\n".join(
            [
                "=== attempt 1 started 2026-01-01 argv torchrun",
                _epoch(1, 0.9, 0.80),
                _epoch(2, 0.7, 0.85),
                "W1121 some torchrun warning {not json",
                '{"event": "step", "step": 3, "loss": 0.5}',
                "=== attempt 2 (resumed)",
                _epoch(2, 0.6, 0.86),
                _epoch(3, 0.5, 0.90),
            ]
        )
        + "\n"
    )
    epochs = figures.epochs_from_log(log)
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert epochs[1]["loss"] == 0.6  # the resumed attempt's record wins
    assert figures.epochs_from_log(tmp_path / "missing.log") == []


def test_training_curves_png_is_a_valid_image(tmp_path: Path) -> None:
    runs = {
        "champion (period-1)": [json.loads(_epoch(i, 1.0 / i, 0.8 + i / 100)) for i in (1, 2, 3)],
        "challenger (period-2)": [json.loads(_epoch(i, 0.8 / i, 0.9 + i / 100)) for i in (1, 2, 3)],
    }
    path = figures.training_curves(runs, tmp_path / "curves.png")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1000, 400)
    assert not list(tmp_path.glob(".*"))  # written atomically, no temp file left


def test_training_curves_refuses_empty_history(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no per-epoch metrics"):
        figures.training_curves({"champion": []}, tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


def test_comparison_png_is_a_valid_image(tmp_path: Path) -> None:
    values = {"accuracy": (0.86, 0.99), "f1": (0.55, 0.97), "roc_auc": (0.71, 0.99)}
    path = figures.comparison(values, tmp_path / "cmp.png", rows=800, decision="promoted", primary="accuracy")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (700, 400)
    with pytest.raises(ValueError):
        figures.comparison({}, tmp_path / "none.png", rows=0, decision="-", primary="accuracy")
