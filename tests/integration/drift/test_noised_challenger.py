"""A worse challenger is never promoted: end to end with real in-process training and real exports.

Champion and challenger train on the same period-2 rows with the same spec and seed; the challenger's
copy has 40% of its labels flipped, as when a labelling pipeline breaks. The trainer's split is seeded,
but it stratifies by the (noised) labels, so the two holdouts differ, and the challenger's carries its
noised labels: scoring on it would measure agreement with the noise. Both are scored instead on clean,
labelled period-2 traffic rows that neither model trained on (part="traffic", disjoint from the
training rows), with the default Promotion, as served (quantized exports).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flywheel import distributed as dist
from flywheel.api import contract, driftmonitor, trainingrun
from flywheel.data import examples
from flywheel.drift import decide, evaluate
from flywheel.training import config, trainer

pytestmark = pytest.mark.slow  # trains two tiny models

NOISE = 0.4


def flip_labels(frame: pd.DataFrame, share: float, seed: int = 0) -> pd.DataFrame:
    """`share` of the rows, drawn at random, get the other class of the binary target."""
    rng = np.random.default_rng(seed)
    flipped = rng.random(len(frame)) < share
    out = frame.copy()
    out.loc[flipped, examples.TARGET] = 1 - out.loc[flipped, examples.TARGET]
    return out


def train(root: Path, name: str, frame: pd.DataFrame) -> Path:
    """Train on `frame` in-process, committed to a DVC repository of its own that the trainer
    resolves (the gate off: these rows are noised on purpose); returns the model directory."""
    spec = trainingrun.TrainingRunSpec(
        data=examples.file_repo(root / f"{name}-dvc", frame),
        model=examples.model_spec().model_copy(
            update={"architecture": trainingrun.Architecture(hidden_layers=[16])}
        ),
        training=trainingrun.Training(
            epochs=3, batch_size=128, learning_rate=0.01, class_weighting="balanced"
        ),
    )
    run_root = root / "artifacts" / name
    cfg = config.Config(name=name, spec=spec, artifacts_uri=run_root.as_uri())
    with contextlib.redirect_stdout(io.StringIO()):  # the trainer's JSON progress lines
        trainer.run(cfg, dist.init({}))
    return run_root / contract.MODEL_DIR


def test_challenger_trained_on_label_noised_rows_is_rejected(tmp_path: Path) -> None:
    clean = examples.period_frame(2, part="train")
    noised = flip_labels(clean, NOISE)
    assert 0.35 < (noised[examples.TARGET] != clean[examples.TARGET]).mean() < 0.45
    champion = train(tmp_path, "champion", clean)
    challenger = train(tmp_path, "challenger", noised)

    # The challenger's own holdout carries the noise (about 43% "anomalies" against period 2's 15%):
    # scoring on it would reward agreement with the noise, so both are scored on clean rows instead.
    assert evaluate.holdout(challenger)[examples.TARGET].mean() > 0.3
    rows = examples.period_frame(2, part="traffic")  # labelled, disjoint from the training rows
    assert 0.05 < rows[examples.TARGET].mean() < 0.3

    promotion = driftmonitor.Promotion()  # the defaults: accuracy, minImprovement 0.01, autoPromote
    comparison = evaluate.compare(champion, challenger, rows, examples.TARGET, promotion.metric)
    assert comparison.rows == len(rows) == examples.TRAFFIC_ROWS
    assert comparison.challenger_value < comparison.champion_value
    assert comparison.champion_value > 0.9  # the clean model is good, so the gap is the noise's doing
    verdict = decide.decide(promotion, comparison, None)
    assert verdict.decision == "rejected" and not verdict.promote
    for figure in (comparison.challenger_value, comparison.champion_value, comparison.improvement):
        assert f"{figure:+.4f}" in verdict.reason or f"{figure:.4f}" in verdict.reason
    assert "minImprovement 0.01" in verdict.reason and f"on {len(rows)} rows" in verdict.reason
