"""The digits example repository (flywheel.data.digits): a real git + DVC repository with the
`original` and `shifted` revisions, traffic held apart, and a shift that costs an old model
accuracy (what the custom-digits example's drift loop rests on)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from flywheel.api import trainingrun
from flywheel.data import digits, examples, resolve


def test_revisions_are_tagged_commits_of_one_dvc_path(tmp_path: Path) -> None:
    made = digits.make_repo(tmp_path / "digits")
    assert list(made.commits) == list(digits.REVISIONS) and made.data_path == digits.DATA_PATH
    assert examples.git(made.root, "rev-parse", "original") == made.commits["original"]
    assert made.hashes["original"] != made.hashes["shifted"]
    for rev in digits.REVISIONS:  # what a TrainingRun resolves: the bytes of that revision
        data = trainingrun.Data(repo=str(made.root), rev=rev, path=digits.DATA_PATH)
        frame = pd.read_csv(resolve.resolve(data, tmp_path / "cache").local_path)
        assert list(frame.columns) == [*digits.PIXELS, digits.TARGET]
        assert frame.equals(digits.frame(rev))


def test_traffic_is_held_apart_and_the_shift_moves_pixels_and_costs_accuracy() -> None:
    train, traffic = digits.frame("original"), digits.frame("original", part="traffic", labelled=False)
    assert len(train) == digits.TRAIN_ROWS and len(train) + len(traffic) == 1797
    assert digits.TARGET not in traffic.columns
    shifted = digits.frame("shifted")
    assert shifted[digits.TARGET].equals(train[digits.TARGET])  # the same digits, rescanned
    pixels = shifted[digits.PIXELS].to_numpy()
    assert pixels.min() >= 0 and pixels.max() <= 16 and pixels.dtype == np.int64
    # Each pixel is its left neighbour's plus noise: closer to it than to the pixel it replaced.
    grid, before_grid = pixels.reshape(-1, 8, 8), train[digits.PIXELS].to_numpy().reshape(-1, 8, 8)
    moved_by_one = np.abs(grid[:, :, 1:] - before_grid[:, :, :-1]).mean()
    assert moved_by_one < 2.0 < np.abs(grid - before_grid).mean(), moved_by_one
    model = LogisticRegression(max_iter=3000).fit(train[digits.PIXELS], train[digits.TARGET])
    held = digits.frame("original", part="traffic")
    moved = digits.frame("shifted", part="traffic")
    before = model.score(held[digits.PIXELS], held[digits.TARGET])
    after = model.score(moved[digits.PIXELS], moved[digits.TARGET])
    # Measured: 0.97 on the original traffic images, 0.43 on their shifted copies.
    assert before > 0.9 and after < before - 0.2, (before, after)
