"""Fine-tuning (spec.model.initFrom) with the real trainer, in-process, on the Shuttle periods: the
run starts from the champion's weights and preprocessing, says so in its card, and refuses a model
it cannot start from, naming the field."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from flywheel import distributed as dist
from flywheel import errors
from flywheel.api import contract, trainingrun
from flywheel.data import examples
from flywheel.training import config, trainer
from tests.integration.drift import conftest

pytestmark = pytest.mark.slow  # trains tiny models


def _run(tmp: Path, exports: conftest.Exports, name: str, replay: float = 0.0, **model: object) -> Path:
    spec = trainingrun.TrainingRunSpec(
        data=exports.repo.data_spec(2),
        model=examples.model_spec().model_copy(
            update={"architecture": trainingrun.Architecture(hidden_layers=[16]), **model}
        ),
        # A learning rate this small moves no weight visibly: what the run ends with is what it began with.
        training=trainingrun.Training(
            epochs=1, batch_size=128, learning_rate=1e-12, weight_decay=0.0, replay_fraction=replay
        ),
    )
    root = tmp / "artifacts" / name
    cfg = config.Config(name=name, spec=spec, artifacts_uri=root.as_uri())  # resolves period-2 with DVC
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.run(cfg, dist.init({}))
    return root / contract.MODEL_DIR


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    saved = torch.load(model_dir / contract.FP32_FILE, map_location="cpu", weights_only=True)
    return saved["state_dict"]


def test_fine_tune_starts_from_the_champion_and_records_it(exports: conftest.Exports, tmp_path: Path) -> None:
    tuned = _run(tmp_path, exports, "tuned", init_from=exports.champion.as_uri())
    scratch = _run(tmp_path, exports, "scratch")
    champion = _weights(exports.champion)
    assert all(torch.allclose(champion[k], v, atol=1e-6) for k, v in _weights(tuned).items())
    assert not all(torch.allclose(champion[k], v, atol=1e-3) for k, v in _weights(scratch).items())
    card = json.loads((tuned / contract.MODEL_CARD).read_text())
    first = json.loads((exports.champion / contract.MODEL_CARD).read_text())
    assert card["training"]["initFrom"] == {"uri": exports.champion.as_uri(), "version": first["version"]}
    # The champion's preprocessing is kept (fitted on period 1), not refitted on period 2's rows.
    assert (tuned / contract.PREPROCESSOR_FILE).read_text() == (
        exports.champion / contract.PREPROCESSOR_FILE
    ).read_text()
    assert "initFrom" not in json.loads((scratch / contract.MODEL_CARD).read_text())["training"]


def test_a_model_the_run_cannot_start_from_is_refused_naming_the_field(
    exports: conftest.Exports, tmp_path: Path
) -> None:
    wide = trainingrun.Architecture(hidden_layers=[32, 8])
    with pytest.raises(errors.UserError, match=r"hiddenLayers is \[32, 8\], the model's is \[16\]"):
        _run(tmp_path, exports, "wide", init_from=exports.champion.as_uri(), architecture=wide)
    with pytest.raises(errors.UserError, match="no complete export"):
        _run(tmp_path, exports, "nowhere", init_from=(tmp_path / "missing").as_uri())
    with pytest.raises(ValueError, match=r"init_from|initFrom"):
        trainingrun.ModelSpec(task="classification", target="y", init_from="/not/a/uri")


def test_replay_mixes_the_champions_own_training_rows_into_the_new_split(
    exports: conftest.Exports, tmp_path: Path
) -> None:
    """training.replayFraction: the champion's rows come back from its card's data lineage (the real
    DVC repository at the commit it recorded), its holdout left out, drawn seeded."""
    plain = _run(tmp_path, exports, "plain", init_from=exports.champion.as_uri())
    mixed = _run(tmp_path, exports, "mixed", init_from=exports.champion.as_uri(), replay=0.5)
    first = json.loads((exports.champion / contract.MODEL_CARD).read_text())
    card = json.loads((mixed / contract.MODEL_CARD).read_text())
    replay = card["training"]["initFrom"]["replay"]
    n_new = json.loads((plain / contract.MODEL_CARD).read_text())["training"]["samples"]
    assert replay["fraction"] == 0.5 and replay["rows"] == round(0.5 * 3200)  # 80% of 4000 new rows
    assert replay["commit"] == first["data"]["commit"] and replay["path"] == first["data"]["path"]
    assert card["training"]["samples"] == n_new + round(0.5 * 3200)  # one epoch over the mixed split
    assert card["data"]["commit"] != first["data"]["commit"]  # the new data is the run's own lineage
