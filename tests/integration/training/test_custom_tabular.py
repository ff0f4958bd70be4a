"""A user's own model (examples/custom-tabular: a residual MLP with embeddings) through the platform:
real torchrun with 2 CPU workers over gloo, killed after its first checkpoint and started again (it
resumes), exported to fp32 ONNX and static int8 with a `tabular` card, then served by the real
BentoML server, answering /predict and the Open Inference Protocol alike. A second, one-process
run declares f1 (the mission time, 9 values in period 1) categorical, for the `categorical` INT64
feed and its embedding (the example itself keeps every column numeric and embeds a bucketised f1).

Data: the Shuttle example's period 1 as a plain CSV (dataPath), so no DVC here; the DVC + gate
path is the same for every model and is covered by the local-backend tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import yaml

from flywheel.api import contract
from flywheel.data import examples
from flywheel.training import inference
from tests.integration.serving.conftest import Server
from tests.unit.training import fixtures

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "custom-tabular"
EPOCHS = 4


def _spec() -> dict[str, Any]:
    spec = yaml.safe_load((EXAMPLE / "trainingrun.yaml").read_text())["spec"]
    spec["trainer"]["path"] = str(EXAMPLE)  # what `flywheel run` makes of `path: .`
    spec["training"]["epochs"] = EPOCHS
    return spec


def _torchrun(config: Path, tmp: Path) -> subprocess.Popen[str]:
    env = {**os.environ, contract.ENV_CONFIG: str(config), "OMP_NUM_THREADS": "1",
           contract.ENV_TERMINATION_LOG: str(tmp / "termination-log")}  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "flywheel.training"]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_tree(pid: int) -> None:
    parent = psutil.Process(pid)
    procs = [parent, *parent.children(recursive=True)]
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(procs, timeout=10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("custom-tabular")
    data = examples.write_period(tmp / "period-1.csv", 1)
    config = fixtures.write_config(tmp, data, _spec(), name="shuttle-custom")
    first = _torchrun(config, tmp)
    assert first.stdout is not None
    for line in first.stdout:  # stop it like a lost node, right after its first checkpoint
        if line.startswith('{"event": "checkpoint"'):
            break
    _kill_tree(first.pid)
    first.communicate(timeout=30)
    second = _torchrun(config, tmp)
    out, err = second.communicate(timeout=400)
    assert second.returncode == 0, err[-3000:]
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    model = fixtures.run_root(tmp, "shuttle-custom") / "model"
    return {
        "tmp": tmp,
        "events": events,
        "model": model,
        "card": json.loads((model / "model_card.json").read_text()),
    }


def test_two_workers_resume_after_a_kill_and_finish_every_epoch(trained: dict[str, Any]) -> None:
    epochs = [e["epoch"] for e in trained["events"] if e["event"] == "epoch"]
    assert epochs and epochs[0] >= 2, epochs  # the restarted job began after its checkpointed epoch
    assert epochs[-1] == EPOCHS
    card = trained["card"]
    assert card["training"]["epochs"] == EPOCHS
    assert card["training"]["steps"] == EPOCHS * 13  # 3200 rows, 2 workers x 128: 13 steps per epoch
    done = [e for e in trained["events"] if e["event"] == "done"]
    assert done and done[0]["phase"] == "Succeeded"


def test_card_declares_tabular_inputs_and_the_entry_point(trained: dict[str, Any]) -> None:
    card = trained["card"]
    numeric = [f"f{i}" for i in range(1, 10)]
    assert card["inputs"] == {"kind": "tabular", "numeric": numeric, "categorical": []}
    assert card["trainer"] == {"entryPoint": "tabular_model:train", "returned": "module"}
    assert card["architecture"]["type"] == "custom" and card["architecture"]["parameters"] > 1000
    assert card["version"].startswith("shuttle-custom-")
    assert card["metrics"]["accuracy"] > 0.95  # the platform scored the fp32 model on the holdout
    quant = card["quantization"]
    assert quant["activationScales"] == "static" and quant["calibration"]["split"] == "train"
    assert quant["classAgreement"] >= 0.95 and card["files"]["quantized"] == "model_int8.onnx"


def test_int8_follows_fp32_on_traffic(trained: dict[str, Any]) -> None:
    rows = examples.period_frame(1, part="traffic", labelled=False, rows=300)
    fp32 = inference.load(trained["model"], quantized=False).predict(rows)
    int8 = inference.load(trained["model"], quantized=True).predict(rows.to_dict("records"))
    assert np.mean(np.array(fp32.predictions) == np.array(int8.predictions)) >= 0.95


def test_served_by_the_real_server_on_predict_and_the_open_inference_protocol(
    trained: dict[str, Any],
) -> None:
    tmp, model = trained["tmp"], trained["model"]
    cfg = {
        "name": "custom",
        "champion": {"uri": model.as_uri(), "quantized": True},
        "traffic": {"mode": "canary"},
        "batching": {"enabled": True, "maxBatchSize": 32, "maxLatencyMs": 5000},
        "logging": {
            "enabled": True,
            "sampleRate": 1.0,
            "sink": f"{tmp.as_uri()}/traffic/custom",
            "flushRows": 200,
            "flushSeconds": 0.5,
        },
        "artifactsUri": tmp.as_uri(),
        "maxRequestRows": 100,
        "maxBodyBytes": 64 * 1024,
    }
    server = Server(tmp / "server", cfg)
    try:
        server.wait_ready()
        rows = examples.period_frame(1, part="traffic", labelled=False, rows=8)
        records = [{k: float(v) for k, v in r.items()} for r in rows.to_dict("records")]
        expected = inference.load(model, quantized=True).predict(rows)
        plain = httpx.post(f"{server.url}/predict", json={"records": records}, timeout=30)
        assert plain.status_code == 200, plain.text
        assert plain.json()["predictions"] == [str(p) for p in expected.predictions]
        assert plain.json()["model"]["version"] == trained["card"]["version"]
        numeric = [f"f{i}" for i in range(1, 10)]
        body = {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [len(records), len(numeric)],
                    "data": [r[n] for r in records for n in numeric],
                },
            ]
        }
        oip = httpx.post(f"{server.url}/v2/models/custom/infer", json=body, timeout=30)
        assert oip.status_code == 200, oip.text
        outputs = {o["name"]: o["data"] for o in oip.json()["outputs"]}
        assert [str(p) for p in outputs["predictions"]] == plain.json()["predictions"]
    finally:
        server.stop()


def test_a_categorical_feature_is_an_int64_embedding_index(tmp_path: Path) -> None:
    """One process (no torchrun): f1 declared categorical reaches the module as INT64 indices (1 +
    the category's index), the fp32 ONNX model takes it as INT64, and the predictor feeds it."""
    import onnx

    spec = _spec()
    spec["training"]["epochs"] = 2
    spec["model"]["features"] = [{"name": "f1", "type": "categorical"}] + [
        {"name": f"f{i}"} for i in range(2, 10)
    ]
    spec["trainer"]["hyperparameters"]["bucketColumn"] = "f2"
    data = examples.write_period(tmp_path / "period-1.csv", 1)
    config = fixtures.write_config(tmp_path, data, spec, name="categorical")
    env = {
        **os.environ,
        contract.ENV_CONFIG: str(config),
        contract.ENV_TERMINATION_LOG: str(tmp_path / "log"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "flywheel.training"], check=False, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    model = fixtures.run_root(tmp_path, "categorical") / "model"
    card = json.loads((model / "model_card.json").read_text())
    assert card["inputs"] == {
        "kind": "tabular",
        "numeric": [f"f{i}" for i in range(2, 10)],
        "categorical": ["f1"],
    }
    graph = onnx.load(str(model / "model_fp32.onnx")).graph
    types = {i.name: i.type.tensor_type.elem_type for i in graph.input}
    assert types == {"numeric": onnx.TensorProto.FLOAT, "categorical": onnx.TensorProto.INT64}
    rows = examples.period_frame(1, part="traffic", labelled=False, rows=50)
    prediction = inference.load(model, quantized=False).predict(rows)
    assert len(prediction.predictions) == 50 and set(prediction.predictions) <= {"0", "1"}
