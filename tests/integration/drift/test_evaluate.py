"""Champion (period 1) vs challenger (period 2) on the challenger's exported holdout, with the real
quantized exports; the verdict promotes the real winner and rejects the same pair swapped."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from flywheel import errors
from flywheel.api import driftmonitor
from flywheel.data import examples
from flywheel.drift import decide, evaluate
from tests.integration.drift import conftest

pytestmark = pytest.mark.slow  # the session fixture trains two tiny models


@pytest.mark.parametrize("metric", ["accuracy", "f1", "roc_auc"])
def test_the_model_trained_on_the_new_period_wins_on_its_holdout(
    exports: conftest.Exports, metric: str
) -> None:
    rows = evaluate.holdout(exports.challenger)
    assert len(rows) == 800 and set(rows[examples.TARGET]) == {0, 1}  # 20% of 4000, both classes
    comparison = evaluate.compare(exports.champion, exports.challenger, rows, examples.TARGET, metric)
    assert comparison.rows == 800 and comparison.higher_is_better
    assert 0.5 < comparison.champion_value < comparison.challenger_value <= 1.0
    assert comparison.improvement == pytest.approx(comparison.challenger_value - comparison.champion_value)
    if metric == "roc_auc":  # needs every class's probability per row: no paired interval
        assert comparison.interval is None
    else:
        low, high = comparison.interval or (math.nan, math.nan)
        assert low < comparison.improvement < high and comparison.test == "paired bootstrap"


def test_lower_bound_rule_promotes_the_real_winner_and_not_the_same_model(exports: conftest.Exports) -> None:
    """A model against itself gains exactly 0 on every resample, below any positive margin; the
    period-2 model's gain on period-2 rows is clear of it."""
    rows = evaluate.holdout(exports.challenger)
    rule = driftmonitor.Promotion(metric="accuracy", min_improvement=0.001, rule="lowerBound")
    win = evaluate.compare(exports.champion, exports.challenger, rows, examples.TARGET, rule.metric)
    verdict = decide.decide(rule, win, None)
    assert verdict.promote and "lower bound >=" in verdict.reason and "paired bootstrap" in verdict.reason
    same = evaluate.compare(exports.challenger, exports.challenger, rows, examples.TARGET, rule.metric)
    assert same.interval == (0.0, 0.0)
    assert not decide.decide(rule, same, None).promote


def test_verdict_promotes_the_winner_and_rejects_the_pair_swapped(exports: conftest.Exports) -> None:
    rows = evaluate.holdout(exports.challenger)
    promotion = driftmonitor.Promotion(metric=driftmonitor.Metric.F1, min_improvement=0.02)
    win = evaluate.compare(exports.champion, exports.challenger, rows, examples.TARGET, promotion.metric)
    assert decide.decide(promotion, win, None).promote
    worse = evaluate.compare(exports.challenger, exports.champion, rows, examples.TARGET, promotion.metric)
    verdict = decide.decide(promotion, worse, None)
    assert verdict.decision == "rejected" and f"{worse.challenger_value:.4f}" in verdict.reason


def test_models_are_scored_as_served_quantized(exports: conftest.Exports) -> None:
    assert evaluate.load(exports.champion).quantized and evaluate.load(exports.challenger).quantized


def test_roc_auc_on_rows_of_one_class_is_undefined_and_never_promotes(exports: conftest.Exports) -> None:
    rows = evaluate.holdout(exports.challenger)
    normal = rows[rows[examples.TARGET] == 0]
    comparison = evaluate.compare(exports.champion, exports.challenger, normal, examples.TARGET, "roc_auc")
    assert math.isnan(comparison.champion_value) and math.isnan(comparison.challenger_value)
    assert decide.decide(driftmonitor.Promotion(metric="roc_auc"), comparison, None).decision == "rejected"


def test_user_mistakes_name_the_fix(exports: conftest.Exports, tmp_path: Path) -> None:
    rows = evaluate.holdout(exports.challenger)
    with pytest.raises(errors.UserError, match=r"promotion\.metric rmse does not fit a classification model"):
        evaluate.compare(exports.champion, exports.challenger, rows, examples.TARGET, "rmse")
    with pytest.raises(errors.UserError, match="lack the target column 'label'"):
        evaluate.compare(exports.champion, exports.challenger, rows, "label", "accuracy")
    with pytest.raises(errors.UserError, match=r"no holdout\.parquet"):
        evaluate.holdout(tmp_path)
