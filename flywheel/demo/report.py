"""The report folder: the Evidently HTML, training curves, the comparison figure, summary.json.

    <report>/drift_report.html      the DriftMonitor's Evidently report of the check that fired
    <report>/training_curves.png    loss and holdout metric per epoch, champion and challenger
    <report>/comparison.png         both models on the same rows (the challenger's holdout)
    <report>/summary.json           every figure of the run (see flywheel.demo.summary)

The comparison scores both int8 models, as served, with flywheel.drift.evaluate.compare on every
classification metric, so the figure shows more than the one metric that decided the promotion;
the decisive values in summary.json are the DriftMonitor's own (status.lastDecision).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from flywheel.api import driftmonitor as dm_api
from flywheel.demo import figures, flow, stages, summary

HTML = "drift_report.html"
CURVES = "training_curves.png"
COMPARISON = "comparison.png"
METRICS = (dm_api.Metric.ACCURACY, dm_api.Metric.F1, dm_api.Metric.ROC_AUC)


def write(loop: flow.Loop, report: Path, timings: list[stages.Timing], total: float) -> dict[str, Any]:
    """Write the report folder; returns the summary it wrote."""
    report.mkdir(parents=True, exist_ok=True)
    facts = loop.facts
    files: dict[str, str] = {}
    if facts.report_html is not None and facts.report_html.exists():
        shutil.copyfile(facts.report_html, report / HTML)
        files["driftReport"] = HTML
    runs = {
        f"{role} ({facts.data.get(role, {}).get('tag')})": figures.epochs_from_log(
            loop.ctx.supervisor.log_path("TrainingRun", name)
        )
        for role, name in facts.runs.items()
    }
    if any(runs.values()):
        figures.training_curves(runs, report / CURVES)
        files["trainingCurves"] = CURVES
    others, rows = _all_metrics(facts)
    decision = facts.decision
    if others:
        figures.comparison(
            others, report / COMPARISON, rows=rows, decision=decision.get("decision", "?"),
            primary=decision.get("metric", ""),
        )  # fmt: skip
        files["comparison"] = COMPARISON
    out = _summary(facts, others, rows, timings, total, files)
    summary.write(report, out)
    return out


def _all_metrics(facts: flow.Facts) -> tuple[dict[str, tuple[float, float]], int]:
    """metric -> (champion, challenger) on the challenger's holdout rows, scored as served."""
    from flywheel.data import examples
    from flywheel.drift import evaluate

    dirs = facts.model_dirs
    if "champion" not in dirs or "challenger" not in dirs:
        return {}, 0
    rows = evaluate.holdout(dirs["challenger"])
    target = examples.TARGET
    out: dict[str, tuple[float, float]] = {}
    for metric in METRICS:
        comparison = evaluate.compare(dirs["champion"], dirs["challenger"], rows, target, metric)
        out[metric.value] = (comparison.champion_value, comparison.challenger_value)
    return out, len(rows)


def _summary(
    facts: flow.Facts,
    others: dict[str, tuple[float, float]],
    rows: int,
    timings: list[stages.Timing],
    total: float,
    files: dict[str, str],
) -> dict[str, Any]:
    check, decision = facts.check, facts.decision
    champion, challenger = decision.get("championValue"), decision.get("challengerValue")
    metric = decision.get("metric")
    improvement = None
    if isinstance(champion, float | int) and isinstance(challenger, float | int):
        lower_is_better = metric in (dm_api.Metric.RMSE.value, dm_api.Metric.MAE.value)
        improvement = (champion - challenger) if lower_is_better else (challenger - champion)
    traffic = facts.traffic.to_dict() if facts.traffic else {}
    return {
        "outcome": {
            "driftDetected": bool(check.get("drifted")),
            "decision": decision.get("decision"),
            "failedRequests": traffic.get("failed"),
        },
        "drift": {
            "detected": bool(check.get("drifted")),
            "share": check.get("datasetDriftShare"),
            "rowsChecked": check.get("rowsChecked"),
            "driftedColumns": check.get("driftedColumns") or [],
            "reportUri": check.get("reportUri"),
        },
        "data": facts.data,
        "models": facts.versions,
        "runs": facts.runs,
        "endpoint": facts.endpoint,
        "evaluation": {
            "metric": metric,
            "champion": champion,
            "challenger": challenger,
            "improvement": improvement,
            "rows": rows or None,
            "otherMetrics": {k: list(v) for k, v in others.items() if k != metric},
        },
        "decision": {k: decision.get(k) for k in ("decision", "reason", "challenger", "dataRev", "time")},
        "traffic": traffic,
        "promotion": facts.promotion,
        "timings": [
            {"key": t.key, "title": t.title, "seconds": t.seconds, "reused": t.reused} for t in timings
        ],
        "totalSeconds": round(total, 2),
        "files": files,
    }
