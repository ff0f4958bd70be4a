"""A real model export published to s3:// by the trainer and opened by the DriftMonitor operator's
check Job (flywheel.drift.job: artifact_cache.local_dir into its cache), over real HTTP against moto's S3 emulator
(see conftest). The model is trained in-process on the Shuttle example (a few seconds)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from flywheel import artifact_cache, artifacts, errors
from flywheel import distributed as dist
from flywheel.api import contract, driftmonitor, trainingrun
from flywheel.data import examples
from flywheel.drift import evaluate
from flywheel.serving import config as serving_config
from flywheel.serving import models as serving_models
from flywheel.training import config, trainer

pytestmark = pytest.mark.slow


def train_to(uri: str, repo: Path) -> str:
    """Train on period 1 (committed to a DVC repository at `repo`) and export under `uri` (the
    run's artifact root); returns the model version."""
    spec = trainingrun.TrainingRunSpec(
        data=examples.file_repo(repo, examples.period_frame(1)),
        model=examples.model_spec().model_copy(
            update={"architecture": trainingrun.Architecture(hidden_layers=[8])}
        ),
        training=trainingrun.Training(epochs=3, batch_size=256, learning_rate=0.01),  # int8 then follows fp32
    )
    cfg = config.Config(name="shuttle", spec=spec, artifacts_uri=uri)
    with contextlib.redirect_stdout(io.StringIO()):  # the trainer's JSON progress lines
        result = trainer.run(cfg, dist.init({}))
    assert result.model is not None
    return result.model.version


def test_export_to_s3_is_opened_by_the_check_job(s3, tmp_path: Path) -> None:
    run_root = f"{s3.root}/default/trainingruns/shuttle"
    version = train_to(run_root, tmp_path / "dvc")
    model_uri = f"{run_root}/{contract.MODEL_DIR}"
    store = artifacts.Store(model_uri)
    assert contract.MODEL_CARD in store.list() and contract.HOLDOUT_FILE in store.list()

    local = artifact_cache.local_dir(model_uri, tmp_path / "cache" / "models")  # as the check Job opens it
    assert local.is_relative_to(tmp_path / "cache")
    assert json.loads((local / contract.MODEL_CARD).read_text())["version"] == version
    assert sorted(p.name for p in local.iterdir()) == store.list()

    predictor = evaluate.load(local)  # the int8 ONNX model as served, from the fetched copy
    rows = evaluate.holdout(local)
    target = examples.model_spec().target
    assert 0.5 < evaluate.score(predictor, rows, target, driftmonitor.Metric.ACCURACY) <= 1.0

    # The next step finds the same card: no second download (a marker file in the copy survives).
    (local / "seen").write_text("1")
    assert (
        artifact_cache.local_dir(model_uri, tmp_path / "cache" / "models") == local
        and (local / "seen").exists()
    )


def test_missing_model_reads_as_an_incomplete_export(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on a PVC: the path has no card, and the readers say so (the step reports it in status)."""
    missing = artifact_cache.local_dir(
        f"{s3.root}/default/trainingruns/never/model", tmp_path / "cache" / "models"
    )
    assert not missing.exists()
    with pytest.raises(errors.UserError, match=r"no model_card\.json"):
        evaluate.load(missing)


def test_serving_loads_the_s3_model_from_one_cached_copy(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serving pod's path: the card and the predictor come from one download (it used to fetch
    the whole model into a new temp folder on every card read and load, and never removed them)."""
    monkeypatch.setattr(serving_models, "CACHE_ROOT", tmp_path / "cache")
    run_root = f"{s3.root}/default/trainingruns/shuttle"
    version = train_to(run_root, tmp_path / "dvc")
    model_uri = f"{run_root}/{contract.MODEL_DIR}"

    assert serving_models.read_card(model_uri).version == version
    (only,) = (tmp_path / "cache").iterdir()
    (only / "seen").write_text("1")  # survives unless the model is downloaded again
    loaded = serving_models.load(model_uri, quantized=True, loader=serving_config.DEFAULT_LOADER)
    assert loaded.quantized and loaded.card.version == version
    assert (only / "seen").exists() and list((tmp_path / "cache").iterdir()) == [only]
    row = examples.period_frame(1, part="traffic", labelled=False, rows=5)
    assert len(loaded.predictor.predict(row).predictions) == 5

    with pytest.raises(errors.UserError, match=r"no model_card\.json"):
        serving_models.read_card(f"{s3.root}/default/trainingruns/never/model")
