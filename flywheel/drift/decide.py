"""The promotion verdict: pure, from the spec's Promotion, the comparison and (optionally) shadow stats.

A challenger is promoted only when it beats the champion on the spec's metric by at least
minImprovement (on the same rows), and, when shadow traffic exists, its error rate is no more than
maxErrorRateIncrease above the champion's and its p99 latency no more than maxLatencyRatio times the
champion's. Every verdict carries a one-line reason with the figures it was made on.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from flywheel.api import driftmonitor

LOWER_IS_BETTER = frozenset({driftmonitor.Metric.RMSE, driftmonitor.Metric.MAE})


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Champion and challenger scored on the same rows."""

    metric: str
    champion_value: float
    challenger_value: float
    rows: int
    higher_is_better: bool
    improvement: float
    """challenger - champion, signed so that > 0 means the challenger is better."""
    interval: tuple[float, float] | None = None
    """The improvement's 95% interval from a paired test on the same rows (None: not computed)."""
    test: str | None = None

    @classmethod
    def of(
        cls, metric: driftmonitor.Metric | str, champion: float, challenger: float, rows: int
    ) -> Comparison:
        higher = driftmonitor.Metric(metric) not in LOWER_IS_BETTER
        delta = challenger - champion if higher else champion - challenger
        return cls(str(driftmonitor.Metric(metric)), champion, challenger, rows, higher, delta)


@dataclasses.dataclass(frozen=True)
class ShadowStats:
    """Both models on the same shadowed requests (see flywheel.drift.window.shadow_stats)."""

    champion_error_rate: float
    challenger_error_rate: float
    champion_p99_ms: float | None
    challenger_p99_ms: float | None
    rows: int


@dataclasses.dataclass(frozen=True)
class Verdict:
    decision: Literal["promoted", "rejected"]
    reason: str
    promote: bool
    """The decision is "promoted" and promotion.autoPromote is set: patch the Deployment."""


def decide(
    promotion: driftmonitor.Promotion,
    comparison: Comparison,
    shadow: ShadowStats | None,
    labelled: Comparison | None = None,
) -> Verdict:
    """Promote only a challenger that wins by minImprovement, on the holdout and, when the window
    holds enough labelled shadow traffic (`labelled`), on those live rows too, by the same rule; and
    passes the shadow guards."""
    figures = _figures(comparison)
    if not (math.isfinite(comparison.champion_value) and math.isfinite(comparison.challenger_value)):
        return _rejected(f"{figures}: the metric is undefined on these rows, so no winner can be named")
    margin = f"improvement {comparison.improvement:+.4f}"
    if comparison.interval is not None:
        low, high = comparison.interval
        margin += f" (95% [{low:+.4f}, {high:+.4f}], {comparison.test})"
    if promotion.rule == driftmonitor.PromotionRule.LOWER_BOUND:
        if comparison.interval is None:
            return _rejected(
                f"{figures}: rule lowerBound needs an interval, and {comparison.metric} has none"
            )
        if comparison.interval[0] < promotion.min_improvement:
            return _rejected(
                f"{figures}: {margin}: the lower bound is below minImprovement "
                f"{promotion.min_improvement:g}, so the gain is within noise"
            )
    elif comparison.improvement < promotion.min_improvement:
        return _rejected(f"{figures}: {margin} < minImprovement {promotion.min_improvement:g}")
    live = ""
    if labelled is not None:
        low = labelled.interval[0] if labelled.interval else labelled.improvement
        judged = low if promotion.rule == driftmonitor.PromotionRule.LOWER_BOUND else labelled.improvement
        live = (
            f"; on {labelled.rows} labelled shadow rows {labelled.challenger_value:.4f} vs "
            f"{labelled.champion_value:.4f}, improvement {labelled.improvement:+.4f}"
            + (
                f" (95% [{labelled.interval[0]:+.4f}, {labelled.interval[1]:+.4f}])"
                if labelled.interval
                else ""
            )
        )
        if judged < promotion.min_improvement:
            return _rejected(f"{figures}: {margin}{live}: not a win on the live rows")
    guard = _shadow_problem(promotion, shadow)
    if guard is not None:
        return _rejected(f"{figures}, but {guard}")
    applied = "" if promotion.auto_promote else " (autoPromote is false: recorded, not applied)"
    bound = "lower bound" if promotion.rule == driftmonitor.PromotionRule.LOWER_BOUND else "improvement"
    reason = f"{figures}: {margin}, {bound} >= minImprovement {promotion.min_improvement:g}{live}"
    return Verdict("promoted", reason + _shadow_note(shadow) + applied, promotion.auto_promote)


def _shadow_problem(promotion: driftmonitor.Promotion, shadow: ShadowStats | None) -> str | None:
    if shadow is None or shadow.rows == 0:
        return None
    allowed = shadow.champion_error_rate + promotion.max_error_rate_increase
    if shadow.challenger_error_rate > allowed + 1e-12:
        return (
            f"its shadow error rate {shadow.challenger_error_rate:.2%} exceeds the champion's "
            f"{shadow.champion_error_rate:.2%} + maxErrorRateIncrease {promotion.max_error_rate_increase:g} "
            f"({shadow.rows} requests)"
        )
    champ, chall = shadow.champion_p99_ms, shadow.challenger_p99_ms
    if champ and chall is not None and chall > promotion.max_latency_ratio * champ:
        return (
            f"its shadow p99 latency {chall:.1f} ms is {chall / champ:.2f}x the champion's {champ:.1f} ms "
            f"(maxLatencyRatio {promotion.max_latency_ratio:g}, {shadow.rows} requests)"
        )
    return None


def _shadow_note(shadow: ShadowStats | None) -> str:
    if shadow is None or shadow.rows == 0:
        return ""
    p99 = ""
    if shadow.champion_p99_ms is not None and shadow.challenger_p99_ms is not None:
        p99 = f", p99 {shadow.challenger_p99_ms:.1f} vs {shadow.champion_p99_ms:.1f} ms"
    return (
        f"; shadow errors {shadow.challenger_error_rate:.2%} vs {shadow.champion_error_rate:.2%}{p99}"
        f" ({shadow.rows} requests)"
    )


def _figures(c: Comparison) -> str:
    return (
        f"challenger {c.metric} {c.challenger_value:.4f} vs champion {c.champion_value:.4f} on {c.rows} rows"
    )


def _rejected(reason: str) -> Verdict:
    return Verdict("rejected", reason, False)
