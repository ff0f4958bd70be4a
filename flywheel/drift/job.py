"""The DriftMonitor's check Job: `python -m flywheel.drift` (rendered by controllers/driftcheck.py).

Reads its config once from $FLYWHEEL_CONFIG (the Job's ConfigMap), runs the drift check on the
Deployment's logged traffic (when `check` is set) and evaluates each listed challenger against the
champion, then writes one JSON outcome to $FLYWHEEL_TERMINATION_LOG (the pod's termination
message, which the monitor reads back; the full report goes to the artifact store):

    {"check": {<status fields>} | null, "note": str | null, "reason": str | null,
     "evaluations": [{"challenger", "decision", "reason", "metric", "championValue", ...}]}

A check that cannot run (no reference data, unreadable traffic) and a challenger that cannot be
evaluated are outcomes, not crashes: they come back as a note or a rejected evaluation saying why.
The clock is read here, once, so the check's time is when it really looked at the traffic.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path
from typing import Any

from flywheel import artifact_cache, errors
from flywheel.api import conditions, contract
from flywheel.api import driftmonitor as dm_api
from flywheel.controllers import driftcheck, plans
from flywheel.drift import decide


def main(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    config = json.loads(Path(env.get(contract.ENV_CONFIG, contract.CONFIG_PATH)).read_text())
    cache = Path(env.get("FLYWHEEL_CACHE_DIR") or artifact_cache.ROOT)
    # FLYWHEEL_NOW: the local backend's clock (its runner passes ctx.now()); a pod reads its own.
    stamp = env.get("FLYWHEEL_NOW")
    now = plans.parse_rfc3339(stamp) if stamp else datetime.datetime.now(datetime.UTC)
    outcome = run(config, now, cache)
    text = json.dumps(outcome, sort_keys=True)
    Path(env.get(contract.ENV_TERMINATION_LOG, contract.TERMINATION_LOG)).write_text(text)
    print(text, flush=True)
    return 0


def run(config: dict[str, Any], now: datetime.datetime, cache: Path, seed: int = 0) -> dict[str, Any]:
    spec = dm_api.DriftMonitorSpec.model_validate(config["spec"])
    champion_dir = artifact_cache.local_dir(str(config["championUri"]), cache / "models")
    out: dict[str, Any] = {"check": None, "note": None, "reason": None, "evaluations": []}
    sink = str(config["trafficSink"])
    if config.get("check"):
        try:
            out.update(_check(config, spec, champion_dir, sink, now, cache, seed))
        except errors.UserError as exc:  # reported in DriftDetected, tried again next interval
            stamp = plans.now_rfc3339(now)
            out.update(check={"lastCheckTime": stamp, "rowsChecked": 0},
                       note=f"the drift check failed: {exc}", reason=conditions.R_CHECK_FAILED)  # fmt: skip
    for challenger in config.get("challengers") or []:
        out["evaluations"].append(_evaluate(config, spec, champion_dir, challenger, sink, now, cache))
    return out


def _check(
    config: dict[str, Any],
    spec: dm_api.DriftMonitorSpec,
    champion_dir: Path,
    sink: str,
    now: datetime.datetime,
    cache: Path,
    seed: int,
) -> dict[str, Any]:
    from flywheel.drift import checks, live, reference, reports, window

    current = window.read(sink, spec.window, now, seed)
    stamp = plans.now_rfc3339(now)
    if len(current) < spec.window.min_rows:
        note = f"{len(current)} rows in the window, fewer than window.minRows {spec.window.min_rows}"
        return {"check": {"lastCheckTime": stamp, "rowsChecked": len(current)},
                "note": note + "; not judged", "reason": conditions.R_NOT_ENOUGH_ROWS}  # fmt: skip
    ref = reference.load(spec, champion_dir, cache / "drift")
    features = [c for c in window.features(current) if c in ref.columns]
    result = checks.check(current, ref, spec.drift, features, spec.window.max_rows, seed)
    uri = reports.write(spec.artifacts.uri, str(config["monitor"]), now, result)
    status = result.to_status(uri, now)
    status.update(live.assess(spec, champion_dir, config.get("championVersion"), current, sink, seed))
    status["triggers"] = triggers(status)
    columns = sorted(status.get("driftedColumns") or [], key=lambda c: -float(c.get("score") or 0))
    status["driftedColumns"] = columns[: driftcheck.MAX_COLUMNS]  # the report lists them all
    return {"check": status, "note": None, "reason": None}


def triggers(status: dict[str, Any]) -> list[str]:
    """The retrain triggers a check's status shows (spec.retrain.triggers chooses which act)."""
    fired = []
    if status.get("drifted") is True:
        fired.append(dm_api.Trigger.FEATURE_DRIFT.value)
    if (status.get("predictionDrift") or {}).get("drifted") is True:
        fired.append(dm_api.Trigger.PREDICTION_DRIFT.value)
    if (status.get("performance") or {}).get("dropped"):
        fired.append(dm_api.Trigger.PERFORMANCE_DROP.value)
    return fired


def _evaluate(
    config: dict[str, Any],
    spec: dm_api.DriftMonitorSpec,
    champion_dir: Path,
    challenger: dict[str, Any],
    sink: str,
    now: datetime.datetime,
    cache: Path,
) -> dict[str, Any]:
    """Score champion and challenger on the challenger's holdout; the verdict, as a decision."""
    from flywheel.drift import evaluate, live, window

    metric = spec.promotion.metric.value
    base = {
        "challenger": challenger["name"], "metric": metric, "dataRev": challenger.get("dataRev"),
        "championVersion": config.get("championVersion"), "challengerVersion": challenger.get("version"),
    }  # fmt: skip
    try:
        challenger_dir = artifact_cache.local_dir(str(challenger["modelUri"]), cache / "models")
        rows = evaluate.holdout(challenger_dir)
        comparison = evaluate.compare(champion_dir, challenger_dir, rows, str(challenger["target"]),
                                      spec.promotion.metric)  # fmt: skip
    except errors.UserError as exc:  # e.g. no holdout rows: retrying cannot help; record why
        return {**base, "decision": "rejected", "reason": f"the challenger could not be evaluated: {exc}"}
    shadow = window.shadow_stats(sink, spec.window, now)
    task = "classification" if comparison.higher_is_better else "regression"  # rmse and mae: lower
    live_pairs = live.shadow_comparison(spec, sink, now, challenger.get("version"), task)
    labelled = None
    if live_pairs is not None:
        labelled = decide.Comparison.of(live_pairs.metric, live_pairs.champion, live_pairs.challenger,
                                        live_pairs.rows)  # fmt: skip
        labelled = dataclasses.replace(
            labelled, interval=(live_pairs.low, live_pairs.high), test=live_pairs.test
        )
    verdict = decide.decide(spec.promotion, comparison, shadow, labelled)
    decision = "pending" if verdict.decision == "promoted" and not verdict.promote else verdict.decision
    figures = {
        "championValue": comparison.champion_value, "challengerValue": comparison.challenger_value,
        "rows": comparison.rows, "interval": list(comparison.interval) if comparison.interval else None,
        "test": comparison.test, "rule": spec.promotion.rule.value,
        "shadow": None if live_pairs is None else {
            "rows": live_pairs.rows, "difference": round(live_pairs.difference, 6),
            "interval": [round(live_pairs.low, 6), round(live_pairs.high, 6)],
        },
    }  # fmt: skip
    return {**base, **figures, "decision": decision, "reason": verdict.reason, "metric": comparison.metric}
