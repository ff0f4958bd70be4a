"""`flywheel demo --scenario concept-drift`: drift no feature check can see, found through feedback.

The inputs stay those of period 1; what changes is what they mean (flywheel.data.examples.
concept_shift: a new failure mode makes high f9 readings anomalies). So:

1. commit period-1 and train the champion on it (as the main demo);
2. serve it and send CONCEPT_ROWS requests of period-1 traffic, each with its own x-request-id;
3. ground truth comes back later through POST /feedback, labelled by the new rule;
4. commit period 1 relabelled (`concept-1`), what a team does once it understands the failure;
5. the DriftMonitor's check finds no feature drift but a performance drop on the labelled traffic,
   and starts a challenger fine-tuned from the champion (retrain.mode fineTune) on `concept-1`;
6. both are scored on the challenger's holdout, and the challenger is promoted only if the paired
   bootstrap interval's lower bound clears minImprovement (promotion.rule lowerBound).

The summary (<report>/concept-summary.json) says which trigger fired, the live performance with
its interval, the retrain mode and the promotion test.
"""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path
from typing import Any

import httpx

from flywheel import api
from flywheel.data import examples
from flywheel.demo import dataset, flow, resources, stages
from flywheel.serving import traffic

FILE = "concept-summary.json"
FIGURE = "live_performance.png"
ID_PREFIX = "concept"


def commit_concept(demo: flow.Loop) -> None:
    commit, created = dataset.commit_concept(demo.repo)
    where = f"{demo.repo} ({dataset.CONCEPT_TAG} = {commit[:12]})"
    if created:
        demo.st.note(f"committed period 1 relabelled with the new failure mode to {where}")
    else:
        demo.st.reused(f"the relabelled rows are already committed: {where}")


def labelled_traffic(demo: flow.Loop) -> None:
    """Period-1 traffic, one record per request, then its ground truth by the new rule."""
    _send_labelled(demo, 0)


def traffic_after(demo: flow.Loop) -> None:
    """As much labelled traffic again, now answered by whoever the monitor left serving."""
    _send_labelled(demo, resources.CONCEPT_ROWS)


def _send_labelled(demo: flow.Loop, start: int) -> None:
    assert demo.facts.endpoint and demo.facts.sink
    rows = examples.period_frame(1, part="traffic", rows=start + resources.CONCEPT_ROWS).iloc[start:]
    truth = examples.concept_shift(rows)[examples.TARGET].astype(str).tolist()
    records = rows.drop(columns=[examples.TARGET]).to_dict(orient="records")
    ids = [f"{ID_PREFIX}-{start + i}" for i in range(len(records))]
    with httpx.Client(timeout=30) as client:
        for rid, record in zip(ids, records, strict=True):
            reply = client.post(f"{demo.facts.endpoint}/predict", json={"records": [record]},
                                headers={"x-request-id": rid})  # fmt: skip
            if reply.status_code != 200:
                raise stages.StageError(f"/predict answered {reply.status_code}: {reply.text[:200]}",
                                        "see `flywheel logs deployment/shuttle`")  # fmt: skip
        labels = [{"request_id": rid, "label": label} for rid, label in zip(ids, truth, strict=True)]
        reply = client.post(f"{demo.facts.endpoint}/feedback", json={"labels": labels})
        if reply.status_code != 200:
            raise stages.StageError(f"/feedback answered {reply.status_code}: {reply.text[:200]}",
                                    "see `flywheel logs deployment/shuttle`")  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        logged = traffic.read(demo.facts.sink, last_rows=len(ids) * 2)
        if "request_id" in logged.columns and logged["request_id"].isin(ids).sum() >= len(ids):
            break
        if time.monotonic() > deadline:
            raise stages.StageError("the server did not log the traffic within 60 s",
                                    "check spec.logging of examples/deployment-local.yaml")  # fmt: skip
        time.sleep(0.25)
    changed = sum(a != b for a, b in zip(truth, rows[examples.TARGET].astype(str), strict=True))
    served = dict(collections.Counter(logged[logged["request_id"].isin(ids)]["model_version"]))
    demo.st.note(
        f"{len(ids)} period-1 requests answered ({served}) and logged; {len(labels)} labels sent to "
        f"/feedback ({changed} differ from the old rule: the new failure mode)"
    )


def check_and_retrain(demo: flow.Loop) -> None:
    from flywheel.demo import monitor

    monitor.fresh_monitor(demo)
    manifest = demo.ctx.store.put(resources.driftmonitor_concept(demo.repo, dataset.CONCEPT_TAG))
    plan = monitor.reconcile_until(
        demo, manifest, lambda p: any(m["kind"] == api.TrainingRun.KIND for m in p.apply)
    )
    status = (demo.ctx.store.get(api.DriftMonitor.KIND, demo.monitor_name) or {}).get("status") or {}
    demo.facts.check = status
    perf = status.get("performance") or {}
    champion = next(
        (v for v in perf.get("versions") or [] if v.get("version") == demo.facts.versions.get("champion")), {}
    )
    baseline = (perf.get("baseline") or {}).get("value")
    shift = (status.get("predictionDrift") or {}).get("distance") or 0.0
    demo.st.note(
        f"feature drift: share {status.get('datasetDriftShare', 0):.2f} (drifted: {status.get('drifted')}); "
        f"prediction drift {shift:.3f}; live {perf.get('metric')} {champion.get('value')} "
        f"[{champion.get('low')}, {champion.get('high')}] on {champion.get('rows')} labelled rows "
        f"against {baseline} on the holdout"
    )
    started = [m["metadata"]["name"] for m in plan.apply if m["kind"] == api.TrainingRun.KIND]
    if not started:
        raise stages.StageError(
            f"no retrain started; triggers found: {status.get('triggers')}",
            f"see `flywheel get dm {demo.monitor_name} -o yaml --home {demo.ctx.home}`",
        )
    (name,) = started
    demo.facts.runs["challenger"] = name
    retrain = status.get("retrain") or {}
    demo.st.note(f"trigger {retrain.get('lastTrigger')}: trainingrun/{name} (fine-tune from the champion)")


def train_challenger(demo: flow.Loop) -> None:
    run = demo.ctx.store.get(api.TrainingRun.KIND, demo.facts.runs["challenger"])
    assert run is not None
    demo.train(run, "challenger", dataset.CONCEPT_TAG)


def decide(demo: flow.Loop) -> None:
    from flywheel.demo import monitor

    stored = demo.ctx.store.get(api.DriftMonitor.KIND, demo.monitor_name)
    assert stored is not None
    challenger = demo.facts.runs["challenger"]
    plan = monitor.reconcile_until(
        demo, stored, lambda p: (p.status.get("lastDecision") or {}).get("challenger") == challenger
    )
    decision = plan.status.get("lastDecision") or {}
    if decision.get("challenger") != challenger:
        where = f"see `flywheel get dm {demo.monitor_name} -o yaml --home {demo.ctx.home}`"
        raise stages.StageError("the monitor made no decision on the challenger", where)
    demo.facts.decision = decision
    demo.st.note(f"decision: {decision['decision']}: {decision['reason']}")


WINDOW = 100
"""Labelled rows per point of the live-performance figure."""


def figure(demo: flow.Loop, report_dir: Path) -> Path:
    """The live metric over consecutive windows of the scenario's labelled traffic, with the check
    that found the drop and the promotion marked."""
    from flywheel.demo import figures
    from flywheel.drift import feedback, performance

    assert demo.facts.sink
    logged = traffic.read(demo.facts.sink)
    logged = logged[logged["request_id"].astype(str).str.startswith(f"{ID_PREFIX}-") & logged["served"]]
    joined = feedback.join(logged, demo.facts.sink).rows.sort_values("timestamp", kind="stable")
    perf = demo.facts.check.get("performance") or {}
    metric = str(perf.get("metric") or "accuracy")
    windows = []
    for end in range(WINDOW, len(joined) + 1, WINDOW // 2):
        part = joined.iloc[end - WINDOW : end]
        version = str(part["model_version"].mode().iloc[0])
        part = part[part["model_version"] == version]
        got = performance.estimate(part[feedback.LABEL].to_numpy(), part["prediction"].to_numpy(), metric)
        windows.append({"end": end, "version": version, "value": got.value, "low": got.low, "high": got.high})
    marks = {"drop found, fine-tune started": resources.CONCEPT_ROWS}
    if (demo.facts.decision or {}).get("decision") == "promoted":
        marks["challenger promoted"] = resources.CONCEPT_ROWS + 1
    baseline = (perf.get("baseline") or {}).get("value")
    return figures.live_performance(windows, marks, report_dir / FIGURE, metric=metric, baseline=baseline)


def summary(demo: flow.Loop, report_dir: Path, seconds: float) -> dict[str, Any]:
    status = demo.facts.check
    run = demo.ctx.store.get(api.TrainingRun.KIND, demo.facts.runs.get("challenger", "")) or {}
    out = {
        "scenario": "concept-drift",
        "champion": demo.facts.versions.get("champion"),
        "challenger": demo.facts.versions.get("challenger"),
        "triggers": status.get("triggers"),
        "trigger": (status.get("retrain") or {}).get("lastTrigger"),
        "featureDrift": {"drifted": status.get("drifted"), "share": status.get("datasetDriftShare")},
        "predictionDrift": status.get("predictionDrift"),
        "performance": status.get("performance"),
        "retrainMode": ((run.get("metadata") or {}).get("annotations") or {}).get(
            "flywheel.dev/retrain-mode"
        ),
        "initFrom": ((run.get("spec") or {}).get("model") or {}).get("initFrom"),
        "decision": demo.facts.decision,
        "figure": FIGURE,
        "totalSeconds": round(seconds, 2),
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / FILE).write_text(json.dumps(out, indent=2))
    return out
