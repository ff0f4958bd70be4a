"""The trainer in one process, end to end: real data (scikit-learn), real training, real ONNX Runtime
int8 export, then the exported model loaded back through flywheel.training.inference alone."""

from __future__ import annotations

import hashlib
import json
import sys
import types

import numpy as np
import pandas as pd
import pytest

from flywheel import artifacts
from flywheel.api import contract
from flywheel.training import __main__ as entry
from flywheel.training import inference, result
from tests.unit.training import fixtures

pytestmark = pytest.mark.slow


def _train(tmp_path, monkeypatch, capsys, data, spec) -> tuple[int, list[dict]]:
    monkeypatch.setenv(contract.ENV_CONFIG, str(fixtures.write_config(tmp_path, data, spec)))
    monkeypatch.setenv(contract.ENV_TERMINATION_LOG, str(tmp_path / "termination-log"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    code = entry.main()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return code, lines


def test_classification_with_categorical_feature_exports_a_complete_agreeing_model(
    tmp_path, monkeypatch, capsys
):
    data = fixtures.wine_csv(tmp_path / "wine.csv")
    code, events = _train(tmp_path, monkeypatch, capsys, data, fixtures.spec(epochs=6, learningRate=0.01))
    assert code == 0
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "train", "holdout", "step", "metric"} <= set(epochs[0])
    assert events[-1]["event"] == "done" and any(e["event"] == "export" for e in events)

    root = fixtures.run_root(tmp_path)
    outcome = result.read(artifacts.Store(root.as_uri()))
    assert outcome.phase == "Succeeded"
    assert set(outcome.metrics) == {"accuracy", "f1", "roc_auc"} and outcome.metrics["accuracy"] > 0.8
    data_hash = hashlib.md5(data.read_bytes()).hexdigest()
    assert outcome.model.version.startswith("tiny-") and outcome.data.hash == data_hash
    assert outcome.checkpoint.step == epochs[-1]["step"] and outcome.data.rows == 178
    assert json.loads((tmp_path / "termination-log").read_text())["model"]["version"] == outcome.model.version

    model_dir = root / contract.MODEL_DIR
    assert {p.name for p in model_dir.iterdir()} == {
        contract.FP32_FILE,
        inference.FP32_ONNX_FILE,
        inference.QUANTIZED_ONNX_FILE,
        contract.PREPROCESSOR_FILE,
        contract.HOLDOUT_FILE,
        contract.MODEL_CARD,
    }
    card = json.loads((model_dir / contract.MODEL_CARD).read_text())
    assert card["classes"] == ["barbera", "barolo", "grignolino"] and card["metrics"] == outcome.metrics
    band = next(f for f in card["features"] if f["name"] == "hue_band")
    assert band == {
        "name": "hue_band",
        "type": "categorical",
        "nullable": False,
        "categories": ["high", "low", "mid"],
    }
    alcohol = next(f for f in card["features"] if f["name"] == "alcohol")
    assert alcohol["min"] < alcohol["mean"] < alcohol["max"]
    assert card["quantization"]["classAgreement"] >= 0.98 and card["package"]["name"] == "flywheel"
    assert card["config"]["spec"]["training"]["epochs"] == 6 and card["data"]["hash"] == data_hash

    rows = pd.read_csv(data).drop(columns=["target"])
    fp32 = inference.load(model_dir, quantized=False).predict(rows)
    int8 = inference.load(model_dir, quantized=True).predict(rows.to_dict("records"))
    agree = np.mean(np.array(fp32.predictions) == np.array(int8.predictions))
    assert agree >= 0.98, f"int8 agrees with fp32 on only {agree:.1%} of rows"  # stated tolerance: 98%

    # Static int8: scales calibrated on the training split, so a row scores the same alone as
    # beside an extreme row (dynamic int8 changed every row of such a batch).
    quant = card["quantization"]
    assert quant["activationScales"] == "static" and quant["calibration"]["split"] == "train"
    assert quant["calibration"]["rows"] > 0
    records = rows.head(20).to_dict("records")
    extreme = {**records[0], "alcohol": 1e6, "magnesium": -1e6}
    predictor = inference.load(model_dir, quantized=True)
    alone = [predictor.predict([r]).probabilities[0] for r in records]
    beside = predictor.predict([*records, extreme]).probabilities[:20]
    assert alone == beside
    assert set(int8.predictions) <= set(card["classes"]) and int8.classes == card["classes"]
    np.testing.assert_allclose(np.sum(int8.probabilities, axis=1), 1.0, rtol=1e-5)


def test_regression_metrics_and_int8_close_to_fp32(tmp_path, monkeypatch, capsys):
    data = fixtures.diabetes_csv(tmp_path / "diabetes.csv")
    spec = fixtures.spec("regression", "target", epochs=4, learningRate=0.01)
    code, _ = _train(tmp_path, monkeypatch, capsys, data, spec)
    assert code == 0
    model_dir = fixtures.run_root(tmp_path) / contract.MODEL_DIR
    card = json.loads((model_dir / contract.MODEL_CARD).read_text())
    assert set(card["metrics"]) == {"rmse", "mae", "r2"} and card["metrics"]["r2"] > 0.2
    frame = pd.read_csv(data)
    fp32 = np.array(inference.load(model_dir, quantized=False).predict(frame).predictions)
    int8 = np.array(inference.load(model_dir, quantized=True).predict(frame).predictions)
    # stated tolerance: int8 within 5% of the target's spread of fp32, on average and per row within 20%
    spread = frame["target"].std()
    assert np.abs(fp32 - int8).mean() < 0.05 * spread and np.abs(fp32 - int8).max() < 0.2 * spread


def test_gate_failure_exits_1_with_a_failed_result_and_nothing_trained(tmp_path, monkeypatch, capsys):
    """flywheel.data's resolver and gate are replaced by fakes returning their real result types (the
    real ones need a DVC repo; tests/integration/data/test_expectations_at_rev.py runs this same
    path on one): this checks the trainer's side of the contract."""
    from flywheel.api import trainingrun
    from flywheel.data import gate as real_gate
    from flywheel.data import resolve as real_resolve

    data = fixtures.breast_cancer_csv(tmp_path / "bc.csv")
    lineage = trainingrun.DataLineage(repo="r", rev="main", path="bc.csv", commit="c0ffee")
    failure = {"expectation": "min_rows", "column": None, "observed": 3, "message": "too few rows"}
    verdict = real_gate.GateResult(success=False, evaluated=1, failures=[failure], summary="too few rows")
    resolve = types.ModuleType("flywheel.data.resolve")
    resolve.resolve = lambda spec, cache: real_resolve.Resolved(local_path=data, lineage=lineage)
    gate = types.ModuleType("flywheel.data.gate")
    gate.validate = lambda path, spec, extra=None: verdict
    monkeypatch.setitem(sys.modules, "flywheel.data.resolve", resolve)
    monkeypatch.setitem(sys.modules, "flywheel.data.gate", gate)
    monkeypatch.setattr("flywheel.data.resolve", resolve, raising=False)
    monkeypatch.setattr("flywheel.data.gate", gate, raising=False)
    monkeypatch.setenv("FLYWHEEL_DATA_CACHE", str(tmp_path / "cache"))
    code, events = _train(tmp_path, monkeypatch, capsys, None, fixtures.spec())
    assert code == 1 and events[-1]["event"] == "failed"
    root = fixtures.run_root(tmp_path)
    assert not (root / contract.MODEL_DIR).exists() and not (root / contract.CHECKPOINTS_DIR).exists()
    compact = json.loads((tmp_path / "termination-log").read_text())
    assert compact["phase"] == "Failed" and compact["validation"] == verdict.to_status()
    assert (
        compact["data"]["commit"] == "c0ffee"
        and compact["data"]["hash"] == hashlib.md5(data.read_bytes()).hexdigest()
    )


def test_an_int8_model_that_answers_differently_from_fp32_is_not_served(tmp_path) -> None:
    """One epoch of a tiny net leaves logits near the boundary, where static int8 flips most
    answers (38% agreement here): the export keeps fp32 for serving and says why in the card."""
    import contextlib
    import io
    import json

    from flywheel import distributed as dist
    from flywheel.api import contract, trainingrun
    from flywheel.data import examples
    from flywheel.training import config, export, inference, trainer

    spec = trainingrun.TrainingRunSpec(
        data=examples.file_repo(tmp_path / "dvc", examples.period_frame(1)),
        model=examples.model_spec().model_copy(
            update={"architecture": trainingrun.Architecture(hidden_layers=[8])}
        ),
        training=trainingrun.Training(epochs=1, batch_size=256, learning_rate=0.01),
        export=trainingrun.Export(quantization="static-int8"),
    )
    cfg = config.Config(name="shuttle", spec=spec, artifacts_uri=f"file://{tmp_path}")
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.run(cfg, dist.init({}))
    card = json.loads((tmp_path / contract.MODEL_DIR / contract.MODEL_CARD).read_text())
    assert card["quantization"]["classAgreement"] < export.MIN_CLASS_AGREEMENT
    assert (
        card["quantization"]["served"] is False
        and "agrees with fp32" in card["quantization"]["notServedBecause"]
    )
    assert "quantized" not in card["files"]
    assert not (tmp_path / contract.MODEL_DIR / inference.QUANTIZED_ONNX_FILE).exists()
