"""The promotion verdict: minImprovement, metric direction, shadow guards, autoPromote."""

from __future__ import annotations

import dataclasses
import math

import pytest

from flywheel.api import driftmonitor
from flywheel.drift import decide


def _promotion(**fields: object) -> driftmonitor.Promotion:
    return driftmonitor.Promotion.model_validate(fields)


def test_improvement_is_signed_so_positive_means_the_challenger_is_better() -> None:
    acc = decide.Comparison.of("accuracy", 0.90, 0.95, 100)
    rmse = decide.Comparison.of("rmse", 2.0, 1.5, 100)
    assert acc.higher_is_better and acc.improvement == pytest.approx(0.05)
    assert not rmse.higher_is_better and rmse.improvement == pytest.approx(0.5)
    assert decide.Comparison.of("mae", 1.0, 1.2, 100).improvement == pytest.approx(-0.2)


def test_winner_by_min_improvement_is_promoted_with_figures_in_the_reason() -> None:
    verdict = decide.decide(
        _promotion(minImprovement=0.01), decide.Comparison.of("f1", 0.80, 0.86, 800), None
    )
    assert verdict.decision == "promoted" and verdict.promote
    assert "0.8600" in verdict.reason and "0.8000" in verdict.reason and "800 rows" in verdict.reason


@pytest.mark.parametrize(("champion", "challenger"), [(0.80, 0.805), (0.80, 0.80), (0.80, 0.70)])
def test_too_small_a_win_a_tie_or_a_loss_is_rejected(champion: float, challenger: float) -> None:
    comparison = decide.Comparison.of("accuracy", champion, challenger, 500)
    verdict = decide.decide(_promotion(minImprovement=0.01), comparison, None)
    assert verdict.decision == "rejected" and not verdict.promote and "minImprovement 0.01" in verdict.reason


def test_lower_is_better_metrics_promote_a_smaller_error() -> None:
    promotion = _promotion(metric="rmse", minImprovement=0.1)
    assert decide.decide(promotion, decide.Comparison.of("rmse", 3.0, 2.5, 50), None).promote
    assert not decide.decide(promotion, decide.Comparison.of("rmse", 3.0, 3.5, 50), None).promote


def test_auto_promote_off_records_the_win_without_promoting() -> None:
    verdict = decide.decide(
        _promotion(autoPromote=False), decide.Comparison.of("accuracy", 0.8, 0.9, 10), None
    )
    assert verdict.decision == "promoted" and not verdict.promote and "autoPromote is false" in verdict.reason


def test_undefined_metric_is_rejected() -> None:
    verdict = decide.decide(_promotion(), decide.Comparison.of("roc_auc", math.nan, 0.9, 10), None)
    assert verdict.decision == "rejected" and "undefined" in verdict.reason


def _shadow(**fields: float) -> decide.ShadowStats:
    base = {"champion_error_rate": 0.01, "challenger_error_rate": 0.01, "champion_p99_ms": 10.0}
    return decide.ShadowStats(**{**base, "challenger_p99_ms": 12.0, "rows": 400, **fields})  # type: ignore[arg-type]


def test_shadow_error_rate_guard() -> None:
    win = decide.Comparison.of("accuracy", 0.8, 0.9, 100)
    assert decide.decide(_promotion(), win, _shadow()).promote
    worse = decide.decide(_promotion(), win, _shadow(challenger_error_rate=0.02))
    assert worse.decision == "rejected" and "error rate 2.00%" in worse.reason
    assert decide.decide(
        _promotion(maxErrorRateIncrease=0.02), win, _shadow(challenger_error_rate=0.02)
    ).promote


def test_shadow_latency_guard() -> None:
    win = decide.Comparison.of("accuracy", 0.8, 0.9, 100)
    slow = decide.decide(_promotion(maxLatencyRatio=1.5), win, _shadow(challenger_p99_ms=16.0))
    assert slow.decision == "rejected" and "1.60x" in slow.reason
    assert decide.decide(_promotion(maxLatencyRatio=2), win, _shadow(challenger_p99_ms=16.0)).promote


def test_empty_shadow_stats_do_not_block() -> None:
    win = decide.Comparison.of("accuracy", 0.8, 0.9, 100)
    assert decide.decide(_promotion(), win, _shadow(challenger_error_rate=1.0, rows=0)).promote


def test_lower_bound_rule_needs_the_interval_above_the_margin() -> None:
    rule = _promotion(minImprovement=0.01, rule="lowerBound")
    wide = dataclasses.replace(decide.Comparison.of("accuracy", 0.80, 0.83, 200), interval=(-0.01, 0.07))
    verdict = decide.decide(rule, wide, None)
    assert not verdict.promote and "within noise" in verdict.reason and "[-0.0100, +0.0700]" in verdict.reason
    assert decide.decide(_promotion(minImprovement=0.01), wide, None).promote  # the margin rule takes it
    tight = dataclasses.replace(wide, interval=(0.015, 0.045))
    assert decide.decide(rule, tight, None).promote
    bare = decide.Comparison.of("accuracy", 0.80, 0.83, 200)
    assert "needs an interval" in decide.decide(rule, bare, None).reason


def test_lower_bound_rule_with_roc_auc_is_refused_naming_the_fields() -> None:
    with pytest.raises(ValueError, match=r"promotion\.rule lowerBound needs a per-row metric"):
        _promotion(metric="roc_auc", rule="lowerBound")


def test_labelled_shadow_traffic_must_be_a_win_too() -> None:
    rule = _promotion(minImprovement=0.01, rule="lowerBound")
    holdout = dataclasses.replace(decide.Comparison.of("accuracy", 0.80, 0.90, 800), interval=(0.07, 0.13))
    lost = dataclasses.replace(decide.Comparison.of("accuracy", 0.85, 0.84, 300), interval=(-0.04, 0.02))
    verdict = decide.decide(rule, holdout, None, lost)
    assert (
        not verdict.promote
        and "not a win on the live rows" in verdict.reason
        and "300 labelled" in verdict.reason
    )
    won = dataclasses.replace(decide.Comparison.of("accuracy", 0.80, 0.88, 300), interval=(0.05, 0.11))
    verdict = decide.decide(rule, holdout, None, won)
    assert verdict.promote and "on 300 labelled shadow rows" in verdict.reason
