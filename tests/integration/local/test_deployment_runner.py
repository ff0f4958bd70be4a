"""`flywheel run -f examples/deployment-local.yaml` on the local backend: a real `bentoml serve`
under the supervisor, real HTTP, promotions under continuous load, a server killed with SIGKILL.

The models are real trainer exports (tests/integration/serving/trained.py, trained once per
session by flywheel.training). The TrainingRuns `shuttle` and `shuttle-2` that the Deployment
names are stored with the status the TrainingRun runner writes when it succeeds, pointing at those
exports: training them through the runner (DVC, the data gate, torchrun) is what
test_trainingrun_local.py does, and costs a minute this test does not need.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from flywheel import errors
from flywheel.api import contract
from flywheel.local import runners, supervisor
from flywheel.local.runners import deployment as runner
from flywheel.serving import traffic
from tests.integration.serving import trained

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = yaml.safe_load((ROOT / "examples/deployment-local.yaml").read_text())
RUNS = {"shuttle": "wine-a", "shuttle-2": "wine-b"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A local home whose store holds the two Succeeded TrainingRuns, models in its artifact store."""
    source = trained.ensure(tmp_path_factory.getbasetemp())
    home = tmp_path_factory.mktemp("home")
    ctx = runners.Context.create(home)
    for run, model in RUNS.items():
        target = home / "artifacts" / "default" / "trainingruns" / run / contract.MODEL_DIR
        shutil.copytree(trained.model_dir(source, model), target)
        card = trained.card(source, model)
        ctx.store.put({"apiVersion": "flywheel.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": run},
                       "spec": {"data": {"repo": "/unused", "path": "d.csv"},
                                "model": {"task": "classification", "target": "target"}}})  # fmt: skip
        status = {"phase": "Succeeded", "model": {"cardUri": f"{target.as_uri()}/{contract.MODEL_CARD}",
                  "quantizedUri": f"{target.as_uri()}/{contract.QUANTIZED_FILE}", "version": card["version"]}}  # fmt: skip
        ctx.store.patch_status("TrainingRun", run, status)
    yield home, source
    ctx.supervisor.stop(runner.KIND, "shuttle", grace=5)


def write(home: Path, champion: str, port: int, name: str = "shuttle", batch: int | None = None) -> Path:
    doc = yaml.safe_load(yaml.safe_dump(EXAMPLE))
    doc["metadata"]["name"] = name
    doc["spec"]["champion"] = {"fromTrainingRun": champion}
    if batch is not None:
        doc["spec"]["batching"]["maxBatchSize"] = batch
    doc["spec"]["port"] = port
    doc["spec"]["logging"]["flushSeconds"] = 0.5
    # A generous latency budget: this checks swaps, not load shedding (a 503 past the budget).
    doc["spec"]["batching"]["maxLatencyMs"] = 5000
    path = home / f"deployment-{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def cli(home: Path, *args: str) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "flywheel", *args, "--home", str(home)],
        cwd=home, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def stored(ctx: runners.Context, name: str = "shuttle") -> dict[str, Any]:
    manifest = ctx.store.get(runner.KIND, name)
    assert manifest is not None
    return manifest


def ready(manifest: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in manifest["status"]["conditions"] if c["type"] == "Ready")


class Load:
    """Clients posting continuously; every answer's status and model version recorded."""

    def __init__(self, url: str, record: dict[str, Any], clients: int = 3) -> None:
        self.url, self.record = url, record
        self.stop = threading.Event()
        self.seen: list[tuple[float, int, str]] = []
        self.threads = [threading.Thread(target=self._post) for _ in range(clients)]

    def _post(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    resp = client.post(f"{self.url}/predict", json={"records": [self.record]})
                    version = resp.json()["model"]["version"] if resp.status_code == 200 else resp.text[:100]
                    self.seen.append((time.monotonic(), resp.status_code, version))
                except httpx.HTTPError as exc:  # a refused connection is a failed request too
                    self.seen.append((time.monotonic(), 0, type(exc).__name__))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def after(self, moment: float) -> set[str]:
        return {v for t, _, v in self.seen if t > moment}


def test_serve_promote_under_load_then_notice_the_dead_server(home: Any) -> None:
    home, source = home
    ctx = runners.Context.create(home)
    versions = {run: trained.card(source, model)["version"] for run, model in RUNS.items()}
    uris = {run: f"{(home / 'artifacts/default/trainingruns' / run / 'model').as_uri()}" for run in RUNS}
    port = free_port()
    code, out = cli(home, "run", "-f", str(write(home, "shuttle", port)), "--detach")
    assert code == 0, out
    first = stored(ctx)
    status = first["status"]
    assert (status["phase"], ready(first)["status"], status["endpoint"]) == (
        "Running",
        "True",
        f"http://127.0.0.1:{port}",
    )
    assert (status["championVersion"], status["championUri"], status["readyReplicas"]) == (
        versions["shuttle"],
        uris["shuttle"],
        1,
    )
    pid = ctx.supervisor.find(runner.KIND, "shuttle").pid  # fmt: skip

    record = trained.records(source, 1)[0]
    with Load(status["endpoint"], record) as load:
        time.sleep(1.0)
        runner.promote(ctx, "shuttle", "default", {"fromTrainingRun": "shuttle-2"})  # the DriftMonitor's call
        promoted_at = time.monotonic()
        time.sleep(1.0)
        assert load.after(promoted_at + 0.2) == {versions["shuttle-2"]}
        # The other route: the user changes spec.champion back and runs the file again.
        code, out = cli(home, "run", "-f", str(write(home, "shuttle", port)), "--detach")
        assert code == 0, out
        rolled_back_at = time.monotonic()
        time.sleep(1.0)
    assert "hot swap" in out
    assert [(s, v) for _, s, v in load.seen if s != 200] == [], "a request failed during a promotion"
    assert len(load.seen) > 30
    assert {v for _, _, v in load.seen} == set(versions.values())
    assert load.after(rolled_back_at + 0.2) == {versions["shuttle"]}
    assert ctx.supervisor.find(runner.KIND, "shuttle").pid == pid  # swapped in place, never restarted

    final = stored(ctx)
    assert final["metadata"]["generation"] == 3 and final["status"]["observedGeneration"] == 3
    assert final["status"]["championUri"] == uris["shuttle"]
    assert final["status"]["rollbackTarget"] == uris["shuttle-2"]  # the champion before the last promotion
    changes = [
        e["message"] for e in ctx.store.events(runner.KIND, "shuttle") if e["reason"] == "ChampionChanged"
    ]
    assert changes == [  # the controller's words, as on Kubernetes
        f"champion {uris['shuttle']} -> {uris['shuttle-2']}; rolling pods",
        f"champion {uris['shuttle-2']} -> {uris['shuttle']}; rolling pods",
    ]

    # Traffic was logged where INTERFACES.md says, readable by a DriftMonitor.
    sink = runner.sink_uri(ctx, final)
    assert sink == (home / "artifacts/traffic/shuttle").as_uri()
    deadline = time.monotonic() + 10
    while len(frame := traffic.read(sink)) < len(load.seen) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert len(frame) == len(load.seen) and frame["served"].all()
    assert set(frame["model_version"]) == set(versions.values())

    # The server dies without a CLI to see it: `flywheel get` (observe) notices and cleans up.
    os.killpg(pid, signal.SIGKILL)
    time.sleep(0.5)
    seen = runner.observe(ctx, stored(ctx))
    assert (ready(seen)["status"], ready(seen)["reason"], seen["status"]["phase"]) == (
        "False",
        "ServingUnavailable",
        "Failed",
    )
    assert "the server process is gone" in ready(seen)["message"]
    child = ctx.store.get("Deployment", "shuttle-serving")  # the apps/v1 child, as the kubelet left it
    assert (child["apiVersion"], child["status"]["readyReplicas"]) == ("apps/v1", 0)
    assert supervisor.tagged(ctx.supervisor.tag(runner.KIND, "shuttle")) == []  # no orphaned workers
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{status['endpoint']}/livez", timeout=2)


def test_two_servers_in_one_home_keep_their_own_metrics_and_restart_after_traffic(home: Any) -> None:
    """Two Deployments in one home: each /metrics counts its own requests (one Prometheus
    directory per server). Then a spec change restarts one while clients hold keep-alive
    connections to it: its closed connections sit in TIME-WAIT on the port, and the restart
    still comes up on that port (it used to fail with "port in use")."""
    home, source = home
    ctx = runners.Context.create(home)
    versions = {run: trained.card(source, model)["version"] for run, model in RUNS.items()}
    ports = {"alpha": free_port(), "beta": free_port()}
    try:
        for name, champion in (("alpha", "shuttle"), ("beta", "shuttle-2")):
            code, out = cli(home, "run", "-f", str(write(home, champion, ports[name], name=name)), "--detach")
            assert code == 0, out
        record = trained.records(source, 1)[0]
        alpha, beta = (f"http://127.0.0.1:{ports[n]}" for n in ("alpha", "beta"))
        with httpx.Client(timeout=30) as client:
            for _ in range(7):
                assert client.post(f"{alpha}/predict", json={"records": [record]}).status_code == 200
            assert client.post(f"{beta}/predict", json={"records": [record]}).status_code == 200
            texts = {n: client.get(f"{u}/metrics").text for n, u in (("alpha", alpha), ("beta", beta))}
        line = 'flywheel_serving_requests_total{{model_version="{}",role="champion",served="true"}}'
        assert f"{line.format(versions['shuttle'])} 7.0" in texts["alpha"]
        assert f"{line.format(versions['shuttle-2'])} 1.0" in texts["beta"]
        assert versions["shuttle"] not in texts["beta"] and versions["shuttle-2"] not in texts["alpha"]

        with Load(alpha, record, clients=3) as load:
            time.sleep(1.0)
            code, out = cli(
                home, "run", "-f", str(write(home, "shuttle", ports["alpha"], "alpha", batch=8)), "--detach"
            )
        assert code == 0, out
        after = stored(ctx, "alpha")
        assert (after["status"]["phase"], ready(after)["status"]) == ("Running", "True"), after["status"]
        assert len(load.seen) > 10
        resp = httpx.post(f"{alpha}/predict", json={"records": [record]}, timeout=30)
        assert resp.status_code == 200 and resp.json()["model"]["version"] == versions["shuttle"]
    finally:
        for name in ports:
            ctx.supervisor.stop(runner.KIND, name, grace=5)


def test_champion_not_trained_yet_serves_nothing_and_says_why(home: Any) -> None:
    home, _ = home
    ctx = runners.Context.create(home / "other", detach=True)
    ctx.store.put({"apiVersion": "flywheel.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "shuttle"},
                   "spec": {"data": {"repo": "/unused", "path": "d.csv"},
                            "model": {"task": "classification", "target": "target"}}})  # fmt: skip
    manifest = ctx.store.put({**EXAMPLE, "metadata": {"name": "shuttle"}})
    assert runner.run(ctx, manifest) is False
    after = stored(ctx)
    assert (ready(after)["status"], ready(after)["reason"]) == ("Unknown", "WaitingForModel")
    assert "TrainingRun shuttle has not succeeded yet" in after["status"]["message"]
    assert ctx.supervisor.find(runner.KIND, "shuttle") is None


def test_a_champion_the_server_refuses_fails_the_rollout_and_the_old_one_keeps_serving(home: Any) -> None:
    """A rollout the realiser cannot complete, with nothing mocked: the new champion is a directory
    outside the artifact store, which the live server refuses to load. As new pods that never get
    ready under maxUnavailable 0, the old model keeps answering; the child says Progressing False
    and the controller Ready False, RolloutFailed, with the server's reason. Promoting a servable
    champion then completes the next rollout."""
    home, source = home
    ctx = runners.Context.create(home, detach=True)
    versions = {run: trained.card(source, model)["version"] for run, model in RUNS.items()}
    port = free_port()
    try:
        code, out = cli(home, "run", "-f", str(write(home, "shuttle", port, name="gamma")), "--detach")
        assert code == 0, out
        outside = home.parent / "elsewhere"
        shutil.copytree(trained.model_dir(source, RUNS["shuttle-2"]), outside, dirs_exist_ok=True)
        with pytest.raises(errors.UserError, match="promotion failed"):
            runner.promote(ctx, "gamma", "default", {"uri": outside.as_uri()})
        after = stored(ctx, "gamma")
        assert (ready(after)["status"], ready(after)["reason"]) == ("False", "RolloutFailed")
        assert "artifact store" in ready(after)["message"]
        child = ctx.store.get("Deployment", "gamma-serving")
        progressing = next(c for c in child["status"]["conditions"] if c["type"] == "Progressing")
        assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
        record = trained.records(source, 1)[0]
        resp = httpx.post(f"http://127.0.0.1:{port}/predict", json={"records": [record]}, timeout=30)
        assert resp.status_code == 200 and resp.json()["model"]["version"] == versions["shuttle"]
        assert after["status"]["servedChampionVersion"] == versions["shuttle"]

        runner.promote(ctx, "gamma", "default", {"fromTrainingRun": "shuttle-2"})
        again = stored(ctx, "gamma")
        assert (ready(again)["status"], again["status"]["servedChampionVersion"]) == (
            "True",
            versions["shuttle-2"],
        )
    finally:
        ctx.supervisor.stop(runner.KIND, "gamma", grace=5)
