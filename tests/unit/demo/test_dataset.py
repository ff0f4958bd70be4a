"""The demo's DVC repository grows one period at a time (real git and DVC, local remote)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flywheel.data import examples
from flywheel.demo import dataset


@pytest.mark.slow  # real git + DVC: about 5 s
def test_periods_are_committed_in_order_tagged_pushed_and_reused(tmp_path: Path) -> None:
    root = tmp_path / "shuttle"
    first, created = dataset.commit_period(root, 1)
    assert created and dataset.tagged(root, 1) == first and dataset.tagged(root, 2) is None
    assert dataset.commit_period(root, 1) == (first, False)  # a re-run reuses it

    second, created = dataset.commit_period(root, 2)
    assert created and second != first
    assert examples.git(root, "rev-parse", "main") == second
    assert examples.git(root, "rev-list", "--count", "main") == "3"  # DVC init, period 1, period 2
    remote = tmp_path / "shuttle.dvc-remote"
    assert len([p for p in remote.rglob("*") if p.is_file()]) == 2  # both versions pushed
    data = pd.read_csv(root / examples.DATA_PATH)
    expected = examples.period_frame(2)
    pd.testing.assert_frame_equal(data, expected, check_dtype=False)
    # period 2 is the shifted one: far more anomalies than period 1
    assert expected[examples.TARGET].mean() > 10 * examples.period_frame(1)[examples.TARGET].mean()
