"""`flywheel demo`: the whole loop on this machine, from versioned data to a promoted challenger.

    flywheel demo [--home DIR] [--report DIR]

 1. commit period-1 of the NASA shuttle data (river) to a local DVC repository
 2. train the champion on it (TrainingRun: data gate, torchrun with 2 workers, fp32 + int8 export)
 3. serve the int8 champion on localhost (Deployment: BentoML, traffic logged as Parquet)
 4. replay period-2 traffic (later in the mission: the sensors move) against the real endpoint
 5. a DriftMonitor checks the logged traffic with Evidently and finds drift
 6. commit period-2's labelled rows as a new DVC rev
 7. the DriftMonitor starts a challenger TrainingRun with that rev pinned
 8. the challenger trains while traffic keeps flowing
 9. the DriftMonitor scores both on the same rows and promotes the challenger only if it wins,
    by hot swap under the running traffic
10. the report: Evidently HTML, training curves, comparison figure, summary.json, and a table

`flywheel demo --scenario concept-drift` tells the other story: the inputs do not move, their
meaning does; ground truth sent back through POST /feedback shows the drop, and a fine-tuned
challenger is promoted by a statistical test (flywheel.demo.concept).

The stages are in flywheel.demo.flow, the traffic generator in flywheel.demo.replay, the report in
flywheel.demo.report. The server is stopped at the end; `flywheel run -f
examples/deployment-local.yaml --home DIR` serves the promoted champion again.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from rich.console import Console

from flywheel.demo import flow, monitor, report, stages, summary

FIX_TRAIN = "see `flywheel logs trainingrun/<name> --home {home}`; run the demo again to resume"
FIX_SERVE = "see `flywheel logs deployment/shuttle --home {home}`"
FIX_DRIFT = "see `flywheel get dm shuttle -o yaml --home {home}`"
FIX_GIT = "check that git works here and that {home} is writable"
CLOSED_LOOP, CONCEPT_DRIFT = "closed-loop", "concept-drift"


def cli(args: argparse.Namespace) -> int:
    console = Console()
    home = Path(args.home).resolve()
    report_dir = Path(args.report).resolve() if args.report else home / "report"
    if getattr(args, "scenario", CLOSED_LOOP) == CONCEPT_DRIFT:
        return _concept(console, home, report_dir)
    started = time.monotonic()
    st = stages.Stages(console, total=10, log_path=home / "logs" / "demo.log")
    loop = flow.Loop(home, console, st)
    console.print(f"[bold]flywheel demo[/bold]: the closed loop on this machine (home {home})")
    try:
        _run(st, loop, str(home))
        loop.stop_traffic()
        loop.stop_serving()
        out = st.run(
            "report", "Write the report", f"check that {report_dir} is writable",
            lambda: report.write(loop, report_dir, st.timings, time.monotonic() - started),
        )  # fmt: skip
        out["timings"].append(dataclasses.asdict(st.timings[-1]))
        out["totalSeconds"] = round(time.monotonic() - started, 2)
        summary.write(report_dir, out)
    finally:
        loop.stop_traffic()
        loop.stop_serving()
    console.print()
    console.print(summary.table(out))
    console.print(f"Report: {report_dir}")
    for name in out.get("files", {}).values():
        console.print(f"  {report_dir / name}")
    console.print(f"  {report_dir / summary.FILE}")
    console.print(
        f"Explore: flywheel get --home {home}; flywheel get dm shuttle -o yaml --home {home}",
        highlight=False,
    )
    return 0


def _concept(console: Console, home: Path, report_dir: Path) -> int:
    from flywheel.demo import concept

    started = time.monotonic()
    st = stages.Stages(console, total=10, log_path=home / "logs" / "demo-concept.log")
    loop = flow.Loop(home, console, st)
    train, serve, drift, git = (f.format(home=home) for f in (FIX_TRAIN, FIX_SERVE, FIX_DRIFT, FIX_GIT))
    console.print(f"[bold]flywheel demo --scenario concept-drift[/bold] (home {home})")
    try:
        st.run("data", "Commit period-1 data to a local DVC repository", git, loop.commit_period_1)
        st.run("champion", "Train the champion on period-1", train, loop.train_champion)
        st.run("serve", "Serve the champion on localhost (Deployment)", serve, loop.serve)
        st.run("traffic", "Period-1 traffic, then its ground truth by a new rule (POST /feedback)", serve,
               lambda: concept.labelled_traffic(loop))  # fmt: skip
        st.run(
            "commit", "Commit period 1 relabelled as a new DVC rev", git, lambda: concept.commit_concept(loop)
        )
        st.run("check", "DriftMonitor: no feature drift; live performance drops; retrain", drift,
               lambda: concept.check_and_retrain(loop))  # fmt: skip
        st.run("challenger", "Fine-tune the champion on the relabelled rows", train,
               lambda: concept.train_challenger(loop))  # fmt: skip
        st.run("promote", "Paired bootstrap on the same rows; promote if the lower bound clears the margin",
               drift, lambda: concept.decide(loop))  # fmt: skip
        st.run("after", "More labelled traffic, answered by the new champion", serve,
               lambda: concept.traffic_after(loop))  # fmt: skip
        writable = f"check that {report_dir} is writable"
        figure = st.run("report", "The live metric over time, with the drop and the promotion marked",
                        writable, lambda: concept.figure(loop, report_dir))  # fmt: skip
    finally:
        loop.stop_serving()
    out = concept.summary(loop, report_dir, time.monotonic() - started)
    decision = out.get("decision") or {}
    console.print(
        f"trigger: {out.get('trigger')} (feature drift: {out['featureDrift']['drifted']}); "
        f"retrain: {out.get('retrainMode')} from {out.get('initFrom')}; "
        f"decision: {decision.get('decision')} ({decision.get('test')}, interval {decision.get('interval')})",
        highlight=False,
    )
    console.print(f"Summary: {report_dir / concept.FILE}; figure: {figure}")
    return 0


def _run(st: stages.Stages, loop: flow.Loop, home: str) -> None:
    train, serve, drift, git = (f.format(home=home) for f in (FIX_TRAIN, FIX_SERVE, FIX_DRIFT, FIX_GIT))
    st.run("data", "Commit period-1 data to a local DVC repository", git, loop.commit_period_1)
    st.run(
        "champion", "Train the champion on period-1 (gate, torchrun x2, int8 export)", train,
        loop.train_champion,
    )  # fmt: skip
    st.run("serve", "Serve the int8 champion on localhost (Deployment)", serve, loop.serve)
    st.run("replay", "Replay period-2 traffic against the endpoint", serve, loop.replay_traffic)
    st.run(
        "drift",
        "DriftMonitor: Evidently drift check on the logged traffic",
        drift,
        lambda: monitor.check_drift(loop),
    )
    st.run("commit", "Commit period-2 labelled data as a new DVC rev", git, loop.commit_period_2)
    st.run(
        "retrain",
        "DriftMonitor starts a challenger with the rev pinned",
        drift,
        lambda: monitor.start_retrain(loop),
    )
    st.run(
        "challenger",
        "Train the challenger (traffic keeps flowing)",
        train,
        lambda: monitor.train_challenger(loop),
    )
    st.run(
        "promote", "Evaluate both on the same rows; promote only a winner (hot swap)", drift,
        lambda: monitor.evaluate_and_promote(loop),
    )  # fmt: skip
