"""A retrained TrainingRun is a new model version, and the local Deployment serves it: the real
trainer (flywheel.training's entry point, in this process) writes the run's model into a local home
twice, with a changed spec; a real `bentoml serve` started by `flywheel run` swaps to the new model
and /predict, status, /metrics and the traffic log all name the new version. Running the
Deployment again without a retrain changes nothing.

The TrainingRun's status is written as the TrainingRun runner writes it on success (from the
trainer's result.json): training it through the runner (DVC, the data gate, torchrun) is what
test_trainingrun_local.py covers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from flywheel import artifacts
from flywheel.local import runners
from flywheel.local.runners import deployment as runner
from flywheel.serving import traffic
from flywheel.training import result
from tests.integration.local import test_deployment_runner as served
from tests.integration.serving import trained
from tests.unit.training import fixtures

pytestmark = pytest.mark.slow
RUN = "shuttle"


def train(home: Path, data: Path, epochs: int) -> str:
    """Train RUN into the home's artifact store and record its success; return the version."""
    spec = fixtures.spec(epochs=epochs, learningRate=0.02)
    trained._train(home, RUN, fixtures.write_config(home, data, spec, name=RUN))
    outcome = result.read(artifacts.Store(fixtures.run_root(home, RUN).as_uri()))
    ctx = runners.Context.create(home)
    ctx.store.put({"apiVersion": "flywheel.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": RUN},
                   "spec": {"data": {"repo": "/unused", "path": "d.csv"}, "model": {"task": "classification",
                            "target": "target"}, "training": {"epochs": epochs}}})  # fmt: skip
    ctx.store.patch_status("TrainingRun", RUN, {"phase": "Succeeded", "model": outcome.model.to_dict()})
    assert outcome.model is not None and outcome.model.version
    return outcome.model.version


def predict(url: str, record: dict[str, Any]) -> str:
    resp = httpx.post(f"{url}/predict", json={"records": [record]}, timeout=30)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["model"]["version"])


def test_retrain_with_a_changed_spec_serves_the_new_version(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    data = fixtures.wine_csv(tmp_path / "wine.csv")
    record = trained.records(tmp_path, 1)[0]
    ctx = runners.Context.create(home)
    port = served.free_port()
    deployment = served.write(home, RUN, port)
    first = train(home, data, epochs=2)
    try:
        code, out = served.cli(home, "run", "-f", str(deployment), "--detach")
        assert code == 0, out
        url = f"http://127.0.0.1:{port}"
        assert predict(url, record) == first
        pid = ctx.supervisor.find(runner.KIND, RUN).pid

        second = train(home, data, epochs=3)  # the same run, the same URI, a changed spec
        assert second != first
        code, out = served.cli(home, "run", "-f", str(deployment), "--detach")
        assert code == 0 and "hot swap" in out, out
        assert predict(url, record) == second
        status = served.stored(ctx, RUN)["status"]
        assert (status["championVersion"], served.ready(served.stored(ctx, RUN))["status"]) == (
            second,
            "True",
        )
        assert f'model_version="{second}"' in httpx.get(f"{url}/metrics", timeout=10).text

        # Nothing retrained: running the Deployment again is a no-op.
        code, out = served.cli(home, "run", "-f", str(deployment), "--detach")
        assert code == 0 and "already serving" in out, out
        assert ctx.supervisor.find(runner.KIND, RUN).pid == pid and predict(url, record) == second

        sink = runner.sink_uri(ctx, served.stored(ctx, RUN))
        deadline = time.monotonic() + 10
        while len(frame := traffic.read(sink)) < 3 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert list(frame["model_version"]) == [first, second, second]
    finally:
        ctx.supervisor.stop(runner.KIND, RUN, grace=5)
