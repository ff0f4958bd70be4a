"""Champion against challenger on the same rows, as a test: the difference and its interval.

Both models' predictions on the same labelled rows (the challenger's holdout, and labelled shadow
traffic when there is some) are resampled together, row by row (a paired bootstrap), so the
interval reflects how much the difference itself varies, not each model's own spread. The
difference is signed so that > 0 favours the challenger, for every metric (RMSE and MAE included).

`promotion.rule`:
- `margin`: promote when the observed difference is at least minImprovement (what the monitor did
  before; it promotes noise on a small holdout);
- `lowerBound`: promote when the interval's lower bound is at least minImprovement: the gain is
  there at the stated confidence. With minImprovement 0 this is a one-sided test at 2.5%.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from flywheel.api import driftmonitor
from flywheel.drift import decide, performance

RESAMPLES = 2000
CONFIDENCE = 0.95
TEST = "paired bootstrap"


@dataclasses.dataclass(frozen=True)
class Difference:
    metric: str
    champion: float
    challenger: float
    difference: float
    """challenger - champion, signed so that > 0 means the challenger is better."""
    low: float
    high: float
    rows: int
    confidence: float = CONFIDENCE
    test: str = TEST

    def as_status(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "champion": round(self.champion, 6),
            "challenger": round(self.challenger, 6),
            "difference": round(self.difference, 6),
            "interval": [round(self.low, 6), round(self.high, 6)],
            "confidence": self.confidence,
            "rows": self.rows,
            "test": self.test,
        }


def compare(
    truth: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    metric: driftmonitor.Metric | str,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> Difference:
    """The paired bootstrap of challenger - champion on the same rows."""
    metric = performance.check_metric(metric)
    if not len(truth) == len(champion) == len(challenger) or len(truth) == 0:
        raise ValueError("paired comparison needs the same, non-empty rows for both models")
    sign = -1.0 if metric in decide.LOWER_IS_BETTER else 1.0
    a = performance.metric_value(truth, champion, metric)
    b = performance.metric_value(truth, challenger, metric)
    rng = np.random.default_rng(seed)
    n = len(truth)
    if metric == driftmonitor.Metric.ACCURACY:  # per-row hits: resampling is one matrix product
        gain = (challenger.astype(str) == truth.astype(str)).astype(np.float64)
        gain -= (champion.astype(str) == truth.astype(str)).astype(np.float64)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)
        samples = counts @ gain / n
    else:
        draws = rng.integers(0, n, size=(resamples, n))
        samples = np.array(
            [
                sign
                * (
                    performance.metric_value(truth[d], challenger[d], metric)
                    - performance.metric_value(truth[d], champion[d], metric)
                )
                for d in draws
            ]
        )
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.nanpercentile(samples, [tail, 100 - tail])
    return Difference(str(metric), a, b, sign * (b - a), float(low), float(high), n)


def passes(rule: str, difference: Difference, min_improvement: float) -> bool:
    """Whether the challenger wins under `rule` (margin | lowerBound)."""
    if rule == "lowerBound":
        return difference.low >= min_improvement
    return difference.difference >= min_improvement
