"""DriftMonitor: Evidently drift checks on live traffic; on drift, retrain and promote only a winner."""

from __future__ import annotations

import enum
from typing import ClassVar, Literal

import pydantic
from pydantic import Field

from flywheel.api import common, trainingrun


class Reference(common.Model):
    """The data that live traffic is compared with."""

    from_champion: bool = True
    """Use the champion's training data (from its model card's lineage)."""
    repo: str | None = None
    """A DVC repository to read the reference from instead."""
    rev: str | None = None
    path: str | None = None

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> Reference:
        if not self.from_champion and not (self.repo and self.path):
            raise ValueError("set fromChampion: true, or repo and path of a DVC reference")
        return self


class Schedule(common.Model):
    """How often to check."""

    interval_seconds: int = Field(default=300, ge=10)
    """Seconds between checks."""


class Window(common.Model):
    """Which logged traffic a check reads."""

    rows: int | None = Field(default=5000, ge=1)
    """The last N logged rows."""
    minutes: int | None = Field(default=None, ge=1)
    """Only rows logged in the last T minutes."""
    min_rows: int = Field(default=200, ge=1)
    """Skip the check (and say so) with fewer rows than this."""
    max_rows: int = Field(default=50000, ge=100)
    """Sampling cap on each side, so a check's cost stays bounded."""


class DriftMethod(enum.StrEnum):
    AUTO = "auto"
    KS = "ks"
    PSI = "psi"
    WASSERSTEIN = "wasserstein"
    JENSENSHANNON = "jensenshannon"
    CHISQUARE = "chisquare"
    Z = "z"
    KL_DIV = "kl_div"


class ColumnDrift(common.Model):
    """An override for one column."""

    column: str = Field(min_length=1)
    method: DriftMethod | None = None
    threshold: float | None = Field(default=None, gt=0)


class Drift(common.Model):
    """When traffic counts as drifted."""

    method: DriftMethod = DriftMethod.AUTO
    """Per-column test; auto lets Evidently choose by type and size."""
    column_threshold: float | None = Field(default=None, gt=0)
    """Threshold of the per-column test (p-value or distance, depending on the method)."""
    dataset_drift_share: float = Field(default=0.5, gt=0, le=1)
    """Share of drifted columns at which the dataset counts as drifted and a retrain starts."""
    columns: list[ColumnDrift] = Field(default_factory=list)
    """Per-column overrides."""


class Trigger(enum.StrEnum):
    FEATURE_DRIFT = "featureDrift"
    PREDICTION_DRIFT = "predictionDrift"
    PERFORMANCE_DROP = "performanceDrop"


class RetrainMode(enum.StrEnum):
    FROM_SCRATCH = "fromScratch"
    FINE_TUNE = "fineTune"


class Retrain(common.Model):
    """The challenger TrainingRun started on drift."""

    enabled: bool = True
    template: trainingrun.TrainingRunSpec
    """Spec of the challenger run; data.rev is resolved to a commit at trigger time and pinned."""
    triggers: list[Trigger] = Field(default_factory=lambda: [Trigger.FEATURE_DRIFT], min_length=1)
    """What starts a retrain: featureDrift (the inputs moved: the Evidently check), predictionDrift
    (the served predictions' distribution moved from the champion's on its holdout: a proxy for
    label shift), performanceDrop (the champion's metric on labelled traffic fell: see
    spec.performance). The one that fired is named on the challenger and in status."""
    mode: RetrainMode = RetrainMode.FROM_SCRATCH
    """fromScratch: the template as written. fineTune: the challenger starts from the champion's
    weights and preprocessing (its model.initFrom is set to the champion the Deployment serves)."""
    cooldown_seconds: int = Field(default=3600, ge=0)
    """No new retrain within this long of the last one."""
    max_concurrent: int = Field(default=1, ge=1, le=10)
    """Retrains running at once."""


class Metric(enum.StrEnum):
    ACCURACY = "accuracy"
    F1 = "f1"
    ROC_AUC = "roc_auc"
    RMSE = "rmse"
    MAE = "mae"


class PromotionRule(enum.StrEnum):
    MARGIN = "margin"
    LOWER_BOUND = "lowerBound"


class Promotion(common.Model):
    """When a challenger replaces the champion."""

    metric: Metric = Metric.ACCURACY
    """Compared on the same rows (the challenger's holdout); rmse and mae are better when lower."""
    min_improvement: float = Field(default=0.01, ge=0)
    """The challenger must win by at least this much (absolute)."""
    rule: PromotionRule = PromotionRule.MARGIN
    """margin: the observed improvement must reach minImprovement. lowerBound: the lower end of the
    improvement's 95% interval (a paired bootstrap over the same rows) must reach it, so a gain
    within noise is not promoted; needs accuracy, f1, rmse or mae."""
    auto_promote: bool = True
    """Patch the Deployment's champion on a win; otherwise only record the decision."""
    max_error_rate_increase: float = Field(default=0.0, ge=0, le=1)
    """With shadow traffic: the challenger's error rate may exceed the champion's by at most this."""
    max_latency_ratio: float = Field(default=1.5, ge=1)
    """With shadow traffic: the challenger's p99 latency may be at most this times the champion's."""

    @pydantic.model_validator(mode="after")
    def _rule_has_an_interval(self) -> Promotion:
        if self.rule == PromotionRule.LOWER_BOUND and self.metric == Metric.ROC_AUC:
            raise ValueError(
                "promotion.rule lowerBound needs a per-row metric: set promotion.metric to accuracy, f1, "
                "rmse or mae, or promotion.rule to margin"
            )
        return self


class Performance(common.Model):
    """Live performance: the champion's metric on traffic whose ground truth came back
    (POST /feedback, or label files in the traffic sink's feedback/ folder)."""

    metric: Metric | None = None
    """accuracy, f1, rmse or mae; unset: promotion.metric (accuracy when that is roc_auc)."""
    min_rows: int = Field(default=50, ge=1)
    """Labelled rows in the window below which no drop is judged."""
    threshold: float | None = None
    """A drop when the metric is past this value (below for accuracy and f1, above for rmse and
    mae). Unset: a drop is the window's 95% interval lying wholly below (worse than) the champion's
    own interval on its holdout."""
    prediction_drift_threshold: float = Field(default=0.1, gt=0, le=1)
    """predictionDrift fires when the served predictions' distance from the champion's predictions
    on its holdout reaches this: Jensen-Shannon distance of the class shares (classification), or
    the Wasserstein distance in units of the holdout predictions' standard deviation (regression);
    Evidently's defaults for a column of that kind."""


class DriftMonitorSpec(common.Model):
    """Desired state of a DriftMonitor."""

    deployment_ref: str = Field(pattern=common.DNS_LABEL_PATTERN)
    """The Deployment (deployments.flywheel.dev) whose traffic is checked and whose champion is promoted."""
    reference: Reference = Field(default_factory=Reference)
    schedule: Schedule = Field(default_factory=Schedule)
    window: Window = Field(default_factory=Window)
    drift: Drift = Field(default_factory=Drift)
    retrain: Retrain
    promotion: Promotion = Field(default_factory=Promotion)
    performance: Performance = Field(default_factory=Performance)
    artifacts: common.Artifacts = Field(default_factory=common.Artifacts)
    """Where reports are written."""


class DriftedColumn(common.Model):
    column: str
    score: float
    method: str
    threshold: float | None = None


class LabelledShadow(common.Model):
    """Champion and challenger on the window's labelled shadowed records (the same live rows)."""

    rows: int
    difference: float
    """challenger - champion, > 0 favours the challenger."""
    interval: list[float] = Field(default_factory=list)
    """Its 95% paired bootstrap interval [low, high]."""


class Decision(common.Model):
    """A promotion decision, with the figures it was made on."""

    time: str
    challenger: str
    """The challenger TrainingRun."""
    decision: Literal["promoted", "rejected", "pending"]
    reason: str
    metric: str
    champion_value: float | None = None
    challenger_value: float | None = None
    champion_version: str | None = None
    challenger_version: str | None = None
    data_rev: str | None = None
    rows: int | None = None
    """Rows both models were scored on."""
    interval: list[float] | None = None
    """The improvement's 95% interval [low, high] (challenger better when > 0), and its test."""
    test: str | None = None
    rule: str | None = None
    shadow: LabelledShadow | None = None
    """With enough labelled shadow traffic: the same comparison on those live rows, which must
    also be a win under the rule."""


class RetrainStatus(common.Model):
    active: list[str] = Field(default_factory=list)
    """Challenger TrainingRuns not yet finished."""
    last_started: str | None = None
    last_reason: str | None = None
    last_trigger: str | None = None
    count: int = 0


class RollbackHold(common.Model):
    """A rollback the monitor honours: the Deployment stopped serving a challenger the monitor
    promoted (a person rolled it back). Until a later promotion, a challenger with the same model
    version or the same data revision is not promoted on its own: it waits for an approval."""

    challenger: str
    """The challenger that was rolled back."""
    time: str
    """When the monitor saw the rollback."""
    version: str | None = None
    data_rev: str | None = None
    champion: str | None = None
    """What the Deployment served instead, when the rollback was seen."""


class VersionPerformance(common.Model):
    version: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    rows: int = 0
    """Labelled rows the figure is computed on; [low, high] is its 95% interval."""


class LivePerformance(common.Model):
    """The champion's metric on labelled traffic in the last check's window."""

    metric: str
    baseline: VersionPerformance | None = None
    """The champion on its own holdout: what a drop is judged against."""
    versions: list[VersionPerformance] = Field(default_factory=list)
    """Per served model version, on the window's labelled rows."""
    labels: int = 0
    """Distinct labelled records in the traffic sink."""
    unknown_labels: int = 0
    """Labels whose request the traffic log does not hold (not sampled, not flushed, or a wrong id)."""
    dropped: str | None = None
    """Why this counts as a performance drop, or unset."""


class PredictionDrift(common.Model):
    method: str
    distance: float
    threshold: float
    drifted: bool


class DriftMonitorStatus(common.CommonStatus):
    """Observed state of a DriftMonitor."""

    last_check_time: str | None = None
    rows_checked: int | None = None
    dataset_drift_share: float | None = None
    drifted: bool | None = None
    drifted_columns: list[DriftedColumn] = Field(default_factory=list)
    report_uri: str | None = None
    retrain: RetrainStatus | None = None
    last_decision: Decision | None = None
    last_promotion: str | None = None
    rollback_target: str | None = None
    rollback_hold: RollbackHold | None = None
    check_job: str | None = None
    """The last check Job (batch/v1) this monitor started; its outcome is read back from it."""
    check_job_read: str | None = None
    """The check Job whose outcome is in status already (folded in once)."""
    performance: LivePerformance | None = None
    prediction_drift: PredictionDrift | None = None
    triggers: list[str] = Field(default_factory=list)
    """The retrain triggers the last check found (whether or not spec.retrain.triggers acts on them)."""


class DriftMonitor(common.Resource):
    """Watch a Deployment's traffic for drift; retrain a challenger; promote it only if it wins."""

    KIND: ClassVar[str] = "DriftMonitor"
    PLURAL: ClassVar[str] = "driftmonitors"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("dm",)

    kind: Literal["DriftMonitor"] = "DriftMonitor"
    spec: DriftMonitorSpec
    status: DriftMonitorStatus | None = None
