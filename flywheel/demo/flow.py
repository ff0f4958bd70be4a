"""The closed loop on the local backend: the stages of data, training, serving and traffic.

The DriftMonitor's stages are in flywheel.demo.monitor. Each stage uses the same pieces a user
drives by hand: resources put in the local store and handed to their runners (TrainingRun:
torchrun; Deployment: a BentoML server on localhost), and the DriftMonitor's reconciles (the
controller over the local store, flywheel.local.runners.driftmonitor), whose check Jobs check drift
and evaluate, which creates the challenger and promotes it by hot swap. The demo adds only
what a user would add: data commits, and real HTTP traffic.

Re-running reuses what is done: data already committed, models already trained (the runners skip a
Succeeded TrainingRun; a challenger whose record was reset resumes from its last checkpoint). The
live part (serving, traffic, the check, the decision) runs again, from a fresh monitor.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from flywheel import api, artifacts
from flywheel.api import conditions
from flywheel.data import examples
from flywheel.demo import dataset, replay, resources, stages
from flywheel.local import runners

RATE_FAST = 40.0
"""Requests per second while filling the drift window (~180 rows/s at 1..8 records each)."""
RATE_STEADY = 8.0
"""Requests per second while the challenger trains: steady production-like load on shared cores."""


@dataclasses.dataclass
class Facts:
    """What the stages learned, for the summary and the report."""

    data: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    runs: dict[str, str] = dataclasses.field(default_factory=dict)
    """role (champion, challenger) -> TrainingRun name."""
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    model_dirs: dict[str, Path] = dataclasses.field(default_factory=dict)
    endpoint: str | None = None
    sink: str | None = None
    check: dict[str, Any] = dataclasses.field(default_factory=dict)
    report_html: Path | None = None
    decision: dict[str, Any] = dataclasses.field(default_factory=dict)
    promotion: dict[str, Any] = dataclasses.field(default_factory=dict)
    traffic: replay.Stats | None = None


class Loop:
    """The stages of the demo over one local home."""

    def __init__(self, home: Path, console: Console, st: stages.Stages) -> None:
        self.ctx = runners.Context.create(home, console)
        self.console = console
        self.st = st
        self.repo = home / "datasets" / "shuttle"
        self.facts = Facts()
        self.player: replay.Replayer | None = None
        self.deployment_name = "shuttle"
        self.monitor_name = resources.name(resources.driftmonitor(self.repo, retrain=False))

    # --- 1. data ----------------------------------------------------------------------------------
    def commit_period_1(self) -> None:
        self._commit(1)

    def commit_period_2(self) -> None:
        self._commit(2)

    def _commit(self, period: int) -> None:
        try:
            commit, created = dataset.commit_period(self.repo, period)
        except FileExistsError as exc:
            raise stages.StageError(str(exc), f"remove {self.repo} or give another --home") from exc
        self._said_commit(period, commit, created)

    def _said_commit(self, period: int, commit: str, created: bool) -> None:
        where = f"{self.repo} ({dataset.tag(period)} = {commit[:12]}, pushed to {self.repo.name}.dvc-remote)"
        if created:
            rows = examples.ROWS_PER_PERIOD
            self.st.note(f"committed {rows} labelled rows of period {period} to {where}")
        else:
            self.st.reused(f"period {period} is already committed: {where}")

    # --- 2. champion ------------------------------------------------------------------------------
    def train(self, manifest: dict[str, Any], role: str, tag: str) -> None:
        from flywheel.local.runners import trainingrun

        name = resources.name(manifest)
        stored = self.ctx.store.get(api.TrainingRun.KIND, name) or self.ctx.store.put(manifest)
        if (stored.get("status") or {}).get("phase") == conditions.SUCCEEDED:
            self.st.reused(f"trainingrun/{name} already succeeded")
        if not trainingrun.run(self.ctx, stored):
            status = (self.ctx.store.get(api.TrainingRun.KIND, name) or {}).get("status") or {}
            raise stages.StageError(
                f"trainingrun/{name} failed: {status.get('message')}",
                f"see `flywheel logs trainingrun/{name} --home {self.ctx.home}`, then run the demo again",
            )
        self._record_run(role, name, tag)

    def train_champion(self) -> None:
        manifest = resources.trainingrun(self.repo)
        stored = self.ctx.store.get(api.TrainingRun.KIND, resources.name(manifest))
        if stored is None or stored["spec"] != manifest["spec"]:
            self.ctx.store.put(manifest)
        self.train(manifest, "champion", dataset.tag(1))

    def _record_run(self, role: str, name: str, tag: str) -> None:
        run = self.ctx.store.get(api.TrainingRun.KIND, name)
        assert run is not None
        status = run["status"]
        self.facts.runs[role] = name
        self.facts.versions[role] = status["model"]["version"]
        self.facts.data[role] = {
            "tag": tag,
            **{k: status["data"].get(k) for k in ("repo", "path", "rev", "commit", "hash", "rows")},
        }
        card = str(status["model"]["cardUri"])
        self.facts.model_dirs[role] = artifacts.Store(card.rsplit("/", 1)[0]).local_path()
        metrics = " ".join(f"{k} {v:.4f}" for k, v in sorted((status.get("metrics") or {}).items()))
        self.st.note(f"{role}: trainingrun/{name}, model {status['model']['version']}, holdout {metrics}")

    # --- 3. serve ---------------------------------------------------------------------------------
    def serve(self) -> None:
        from flywheel.local.runners import deployment as runner

        live = self.ctx.supervisor.find(api.Deployment.KIND, self.deployment_name)
        live = live if live is not None and self.ctx.supervisor.alive(live) else None
        previous = self.ctx.store.get(api.Deployment.KIND, self.deployment_name)
        manifest = resources.deployment(previous["spec"]["port"] if live and previous else None)
        name = self.deployment_name = resources.name(manifest)
        sink = runner.sink_uri(self.ctx, manifest)
        old = artifacts.Store(sink).local_path()
        if old.exists() and live is None:
            aside = old.with_name(old.name + ".previous-demo")  # a fresh window for this run's check
            shutil.rmtree(aside, ignore_errors=True)
            old.rename(aside)
            self.st.note(f"moved the previous demo's traffic log aside to {aside}")
        stored = self.ctx.store.put(manifest)
        self.ctx.detach = True  # serve in the background while the demo goes on
        try:
            ok = runner.run(self.ctx, stored)
        finally:
            self.ctx.detach = False
        status = (self.ctx.store.get(api.Deployment.KIND, name) or {}).get("status") or {}
        if not ok or not status.get("endpoint"):
            raise stages.StageError(
                f"deployment/{name} is not serving: {status.get('message')}",
                f"see `flywheel logs deployment/{name} --home {self.ctx.home}`",
            )
        self.facts.endpoint, self.facts.sink = status["endpoint"], sink
        self.st.note(f"serving {status.get('championVersion')} at {status['endpoint']} (traffic log: {sink})")

    def stop_serving(self) -> None:
        """As `flywheel stop` does: afterwards `flywheel get` shows the Deployment Suspended, not
        Failed as a server that died would be."""
        from flywheel.local import lifecycle

        lifecycle.stop_and_suspend(self.ctx, lifecycle.Ref(api.Deployment.KIND, self.deployment_name))

    # --- 4. traffic -------------------------------------------------------------------------------
    def replay_traffic(self) -> None:
        from flywheel.serving import traffic

        frame = examples.period_frame(2, part="traffic", labelled=False)
        records = frame.to_dict(orient="records")
        window = resources.driftmonitor(self.repo, retrain=False)["spec"]["window"]
        wanted = min(int(window.get("rows") or len(records)), len(records))
        assert self.facts.endpoint and self.facts.sink
        self.player = replay.Replayer(self.facts.endpoint, records, rate=RATE_FAST, concurrency=8).start()
        self.st.note(
            f"replaying {len(records)} unlabelled period-2 rows to {self.facts.endpoint}/predict: "
            f"Poisson arrivals at {RATE_FAST:g} req/s, 1-8 rows each, up to 8 in flight"
        )
        if not self.player.wait_rows(wanted, timeout=120):
            raise stages.StageError(
                f"only {self.player.stats().rows} of {wanted} rows were answered in 120 s "
                f"({self.player.stats().failed} failed requests)",
                "the server is too slow or failing: see `flywheel logs deployment/shuttle`",
            )
        deadline = time.monotonic() + 60
        while len(traffic.read(self.facts.sink, last_rows=wanted)) < wanted:
            if time.monotonic() > deadline:
                raise stages.StageError(
                    "the server answered but did not log the traffic within 60 s",
                    "check spec.logging of examples/deployment-local.yaml",
                )
            time.sleep(0.25)
        self.player.set_rate(RATE_STEADY)
        stats = self.player.stats()
        self.st.note(
            f"{stats.rows} rows in {stats.requests} requests answered and logged, "
            f"{stats.failed} failed{_reasons(stats)}; p50 {stats.percentile(50):.0f} ms, "
            f"p99 {stats.percentile(99):.0f} ms; the replay continues at {RATE_STEADY:g} req/s"
        )

    def stop_traffic(self) -> replay.Stats | None:
        if self.player is not None:
            self.facts.traffic = self.player.stop()
            self.player = None
        return self.facts.traffic


def _reasons(stats: replay.Stats) -> str:
    return f" {dict(stats.failures)}" if stats.failures else ""
