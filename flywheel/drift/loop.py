"""One DriftMonitor step, impure, written once for both backends.

    step(backend, monitor, now, analysis=None) -> StepResult

lists the DriftMonitors of the namespace (an older one naming the same Deployment owns it: this one
then only says so, see flywheel.controllers.driftmonitor_claims), reads the monitor's Deployment
and TrainingRuns, runs the drift check when schedule.is_due says so,
resolves the data commit when the controller announces a retrain, evaluates every Succeeded
challenger the controller names, asks flywheel.controllers.driftmonitor.plan what to do, and carries
the plan out in a fixed order: create children, patch other resources (the Deployment's champion
first, then the challenger's decision annotation), patch the monitor's status, record events. Each
write is idempotent, so a step cut short anywhere is finished by the next one (the controller's
docstring says why that converges to one decision).

The two seams, stable names (the operator, the local runner and `flywheel demo` implement or call
them):

- `Backend`: resources and artifacts of one backend. `get(kind, name, namespace)`,
  `list(kind, namespace)`, `create(manifest)` (an existing object is left as is),
  `patch(patch)` (JSON merge patch of a Flywheel resource's metadata and spec; the local backend
  also hot-swaps a served champion), `patch_status(resource, status)`, `event(resource, event)`,
  `resolve_commit(data) -> str` (git commit of spec.data.rev), `model_dir(uri) -> Path` (a model
  directory on this filesystem), `traffic_sink(deployment) -> str` (where its requests are logged)
  `cache_dir() -> Path` and `artifacts_uri(uri) -> str` (spec.artifacts.uri as this backend
  stores it: the local backend maps the in-cluster default under its home).
- `Analysis`: the data work. `check(monitor, champion_dir, sink, now) -> CheckOutcome` and
  `evaluate(monitor, champion_dir, challenger_dir, target, sink, now) -> EvaluationOutcome`.
  `EvidentlyAnalysis` is the real one (flywheel.drift.window/reference/checks/reports/evaluate/
  decide); tests of the control flow may pass a precomputed one.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any, Protocol

from flywheel import api, errors
from flywheel.api import conditions
from flywheel.api import driftmonitor as dm_api
from flywheel.api import trainingrun as tr_api
from flywheel.controllers import driftmonitor as controller
from flywheel.controllers import driftmonitor_claims as claims
from flywheel.controllers import plans
from flywheel.drift import decide, schedule

Manifest = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class CheckOutcome:
    """A check as status fields (CheckResult.to_status), and why it judged nothing, if so."""

    status: dict[str, Any]
    note: str | None = None
    result: Any = None
    """The flywheel.drift.checks.CheckResult, when Evidently ran."""
    reason: str = controller.R_NOT_ENOUGH_ROWS
    """DriftDetected's reason when `note` is set."""


@dataclasses.dataclass(frozen=True)
class EvaluationOutcome:
    comparison: decide.Comparison
    verdict: decide.Verdict


@dataclasses.dataclass
class StepResult:
    """What one step did (the plan it carried out, and the highlights for printing)."""

    plan: plans.Plan
    check: CheckOutcome | None = None
    started: list[str] = dataclasses.field(default_factory=list)
    """Challenger TrainingRuns created by this step."""
    evaluations: dict[str, controller.Evaluation] = dataclasses.field(default_factory=dict)
    decisions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """status.lastDecision-shaped decisions made or completed by this step."""
    claimed_by: str | None = None
    """The older DriftMonitor that owns this one's Deployment: this step did nothing but say so."""


class Backend(Protocol):
    def get(self, kind: str, name: str, namespace: str) -> Manifest | None: ...
    def list(self, kind: str, namespace: str) -> list[Manifest]: ...
    def create(self, manifest: Manifest) -> None: ...
    def patch(self, patch: Manifest) -> None: ...
    def patch_status(self, resource: Manifest, status: dict[str, Any]) -> None: ...
    def event(self, resource: Manifest, event: plans.Event) -> None: ...
    def resolve_commit(self, data: tr_api.Data) -> str: ...
    def model_dir(self, uri: str) -> Path: ...
    def traffic_sink(self, deployment: Manifest) -> str: ...
    def cache_dir(self) -> Path: ...
    def artifacts_uri(self, uri: str) -> str: ...


class Analysis(Protocol):
    def check(
        self, monitor: dm_api.DriftMonitor, champion_dir: Path, sink: str, now: datetime.datetime
    ) -> CheckOutcome: ...

    def evaluate(
        self,
        monitor: dm_api.DriftMonitor,
        champion_dir: Path,
        challenger_dir: Path,
        target: str,
        sink: str,
        now: datetime.datetime,
    ) -> EvaluationOutcome: ...


def step(
    backend: Backend,
    resource: Manifest,
    now: datetime.datetime,
    analysis: Analysis | None = None,
    work: bool = True,
) -> StepResult:
    """Check (when due) -> maybe retrain -> evaluate finished challengers -> decide -> apply.
    work=False skips the check, the retrain and the evaluations: only recorded decisions and
    approvals are carried out (what `flywheel approve` needs at once, in seconds)."""
    analysis = analysis or EvidentlyAnalysis(backend)
    ns = resource["metadata"].get("namespace") or "default"
    try:
        monitor = controller.validate(resource)
    except Exception:  # the controller reports an invalid spec in status; nothing to observe
        plan = controller.plan(resource, controller.Observed(), now)
        apply(backend, resource, plan)
        return StepResult(plan)
    monitors = backend.list(api.DriftMonitor.KIND, ns)  # who owns the Deployment (one list per step)
    owner = claims.claimed_by(resource, monitors)
    if owner is not None:  # another monitor's Deployment: no check, no retrain, no decision
        plan = controller.plan(resource, controller.Observed(monitors=monitors), now)
        apply(backend, resource, plan)
        return StepResult(plan, claimed_by=owner)
    deployment = backend.get(api.Deployment.KIND, monitor.spec.deployment_ref, ns)
    runs = backend.list(api.TrainingRun.KIND, ns)
    observed = controller.Observed(deployment=deployment, runs=runs, monitors=monitors)
    result = StepResult(plans.Plan())
    champion = champion_model(backend, deployment, observed.runs) if deployment and work else None
    if deployment is not None and champion is not None and is_due(resource, monitor, now):
        result.check = _check(backend, analysis, monitor, champion[0], deployment, now)
        observed.check, observed.check_note = result.check.status, result.check.note
        observed.check_reason = result.check.reason
    if work and controller.retrain_reason(resource, observed, now) is not None:
        try:
            observed.commit = backend.resolve_commit(monitor.spec.retrain.template.data)
        except errors.UserError as exc:  # the template's data cannot be had: say so, retry next step
            observed.commit_error = str(exc)
    if deployment is not None and champion is not None:
        for run in controller.to_evaluate(resource, observed):
            evaluation = _evaluate(backend, analysis, monitor, deployment, champion, run, now)
            observed.evaluations[run["metadata"]["name"]] = evaluation
    result.evaluations = dict(observed.evaluations)
    result.plan = controller.plan(resource, observed, now)
    apply(backend, resource, result.plan)
    result.started = [m["metadata"]["name"] for m in result.plan.apply]
    last = result.plan.status.get("lastDecision")
    result.decisions = [last] if last else []
    return result


def is_due(resource: Manifest, monitor: dm_api.DriftMonitor, now: datetime.datetime) -> bool:
    """schedule.is_due on the stored status (an unreadable status counts as never checked)."""
    try:
        status = dm_api.DriftMonitorStatus.model_validate(resource.get("status") or {})
    except ValueError:
        status = None
    return schedule.is_due(monitor.spec, status, now)


def apply(backend: Backend, resource: Manifest, plan: plans.Plan) -> None:
    """Carry out a plan in the adapters' fixed order (see flywheel.kube.execute)."""
    for manifest in plan.apply:
        backend.create(manifest)
    for patch in plan.patch_resources:
        backend.patch(patch)
    backend.patch_status(resource, plan.status)
    for event in plan.events:
        backend.event(resource, event)


def champion_model(
    backend: Backend, deployment: Manifest, runs: list[Manifest]
) -> tuple[Path, str | None] | None:
    """(directory, version) of the Deployment's champion, or None while its TrainingRun is unfinished."""
    champion = (deployment.get("spec") or {}).get("champion") or {}
    if champion.get("uri"):
        version = (deployment.get("status") or {}).get("championVersion")
        return backend.model_dir(str(champion["uri"])), version
    run = next((r for r in runs if r["metadata"]["name"] == champion.get("fromTrainingRun")), None)
    return run_model(backend, run) if run else None


def run_model(backend: Backend, run: Manifest) -> tuple[Path, str | None] | None:
    status = run.get("status") or {}
    model = status.get("model") or {}
    if status.get("phase") != conditions.SUCCEEDED or not model.get("cardUri"):
        return None
    return backend.model_dir(str(model["cardUri"]).rsplit("/", 1)[0]), model.get("version")


def _check(
    backend: Backend,
    analysis: Analysis,
    monitor: dm_api.DriftMonitor,
    champion_dir: Path,
    deployment: Manifest,
    now: datetime.datetime,
) -> CheckOutcome:
    """The check; one that cannot run (no reference data, unreadable traffic) is reported in
    DriftDetected and tried again at the next interval, instead of failing the whole step."""
    try:
        return analysis.check(monitor, champion_dir, backend.traffic_sink(deployment), now)
    except errors.UserError as exc:
        status = {"lastCheckTime": plans.now_rfc3339(now), "rowsChecked": 0}
        return CheckOutcome(status, f"the drift check failed: {exc}", reason=controller.R_CHECK_FAILED)


def _evaluate(
    backend: Backend,
    analysis: Analysis,
    monitor: dm_api.DriftMonitor,
    deployment: Manifest,
    champion: tuple[Path, str | None],
    run: Manifest,
    now: datetime.datetime,
) -> controller.Evaluation:
    """Score champion and challenger on the challenger's holdout; the verdict as the controller's."""
    name = run["metadata"]["name"]
    status = run.get("status") or {}
    data_rev = (status.get("data") or {}).get("commit") or run["spec"]["data"].get("rev")
    challenger = run_model(backend, run)
    metric = monitor.spec.promotion.metric.value
    if challenger is None:  # Succeeded without a model: nothing to promote
        return controller.Evaluation(
            name, "rejected", "the challenger exported no model", metric, data_rev=data_rev
        )
    target = str(run["spec"]["model"]["target"])
    try:
        outcome = analysis.evaluate(
            monitor, champion[0], challenger[0], target, backend.traffic_sink(deployment), now
        )
    except errors.UserError as exc:  # e.g. no holdout rows: retrying cannot help; record why
        why = f"the challenger could not be evaluated: {exc}"
        return controller.Evaluation(name, "rejected", why, metric, data_rev=data_rev)
    verdict, comparison = outcome.verdict, outcome.comparison
    decision = "pending" if verdict.decision == "promoted" and not verdict.promote else verdict.decision
    return controller.Evaluation(
        challenger=name, decision=decision, reason=verdict.reason, metric=comparison.metric,
        champion_value=comparison.champion_value, challenger_value=comparison.challenger_value,
        champion_version=champion[1], challenger_version=challenger[1], data_rev=data_rev,
        rows=comparison.rows, interval=comparison.interval, test=comparison.test,
        rule=monitor.spec.promotion.rule.value,
    )  # fmt: skip


class EvidentlyAnalysis:
    """The real checks and evaluation (flywheel.drift building blocks), imported when first used."""

    def __init__(self, backend: Backend, seed: int = 0) -> None:
        self.backend = backend
        self.seed = seed

    def check(
        self, monitor: dm_api.DriftMonitor, champion_dir: Path, sink: str, now: datetime.datetime
    ) -> CheckOutcome:
        from flywheel.drift import checks, metrics, reference, reports, window

        spec = monitor.spec
        current = window.read(sink, spec.window, now, self.seed)
        stamp = plans.now_rfc3339(now)
        if len(current) < spec.window.min_rows:
            note = f"{len(current)} rows in the window, fewer than window.minRows {spec.window.min_rows}"
            return CheckOutcome({"lastCheckTime": stamp, "rowsChecked": len(current)}, note + "; not judged")
        ref = reference.load(spec, champion_dir, self.backend.cache_dir())
        features = [c for c in window.features(current) if c in ref.columns]
        result = checks.check(current, ref, spec.drift, features, spec.window.max_rows, self.seed)
        uri = reports.write(self.backend.artifacts_uri(spec.artifacts.uri), monitor.name, now, result)
        metrics.observe(monitor.namespace, monitor.name, result)
        return CheckOutcome(result.to_status(uri, now), None, result)

    def evaluate(
        self,
        monitor: dm_api.DriftMonitor,
        champion_dir: Path,
        challenger_dir: Path,
        target: str,
        sink: str,
        now: datetime.datetime,
    ) -> EvaluationOutcome:
        from flywheel.drift import evaluate, window

        spec = monitor.spec
        rows = evaluate.holdout(challenger_dir)
        comparison = evaluate.compare(champion_dir, challenger_dir, rows, target, spec.promotion.metric)
        shadow = window.shadow_stats(sink, spec.window, now)
        return EvaluationOutcome(comparison, decide.decide(spec.promotion, comparison, shadow))
