"""The trainer's input (config read once) and output (result.json + termination message) contracts."""

from __future__ import annotations

import json

import pydantic
import pytest

from flywheel import artifacts, errors, results
from flywheel.api import contract, trainingrun
from flywheel.training import config, result
from tests.unit.training import fixtures


def test_config_reads_the_file_named_by_env_and_is_frozen(tmp_path, monkeypatch):
    path = fixtures.write_config(tmp_path, None, fixtures.spec())
    monkeypatch.setenv(contract.ENV_CONFIG, str(path))
    cfg = config.load()
    assert cfg.name == "tiny" and cfg.spec.data.path == "data.csv"
    assert cfg.spec.training.epochs == 2 and cfg.spec.model.architecture.hidden_layers == [32, 16]
    with pytest.raises(pydantic.ValidationError):
        cfg.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "no such file"), ("{not json", "not JSON"), ('{"name": "x"}', "invalid trainer config")],
)
def test_config_problems_are_one_line_user_errors(tmp_path, monkeypatch, content, needle):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv(contract.ENV_CONFIG, str(path))
    with pytest.raises(errors.UserError, match=needle) as info:
        config.load()
    assert "\n" not in str(info.value)


def test_config_without_env_names_the_variable(monkeypatch):
    monkeypatch.delenv(contract.ENV_CONFIG, raising=False)
    with pytest.raises(errors.UserError, match=contract.ENV_CONFIG):
        config.load()


def _result(validation: dict | None = None) -> result.Result:
    return result.Result(
        phase="Succeeded",
        message="ok",
        metrics={"accuracy": 0.9},
        model=trainingrun.ModelArtifacts(version="r-abc", fp32_uri="file:///m/f.pt", card_uri="file:///m/c"),
        data=trainingrun.DataLineage(hash="abc", rows=10),
        checkpoint=trainingrun.Checkpoint(uri="file:///c/step-1.pt", step=1),
        validation=validation,
    )


def test_result_goes_to_the_artifact_root_and_the_termination_log(tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv(contract.ENV_TERMINATION_LOG, str(log))
    store = artifacts.Store((tmp_path / "run").as_uri())
    uri = result.write(_result(), store)
    assert uri.endswith(contract.RESULT_FILE)
    assert result.read(store) == _result()
    compact = json.loads(log.read_text())
    assert compact["phase"] == "Succeeded"
    assert compact["model"] == {"version": "r-abc", "fp32Uri": "file:///m/f.pt", "cardUri": "file:///m/c"}
    assert compact["checkpoint"] == {"uri": "file:///c/step-1.pt", "step": 1}


def test_compact_result_stays_under_4_kib_and_keeps_the_essentials():
    huge = {"success": False, "failed": [{"expectation": "x" * 200, "observed": list(range(50))}] * 40}
    text = result.compact(_result(huge))
    assert len(text.encode()) <= result.MAX_TERMINATION_BYTES
    parsed = json.loads(text)
    assert parsed["validation"] == {"success": False}
    assert parsed["metrics"] == {"accuracy": 0.9} and parsed["model"]["version"] == "r-abc"


def test_default_termination_log_only_when_it_exists(monkeypatch):
    monkeypatch.delenv(contract.ENV_TERMINATION_LOG, raising=False)
    path = results.termination_log_path()
    assert path is None or str(path) == contract.TERMINATION_LOG


def test_config_has_no_data_file_bypass(tmp_path, monkeypatch):
    """dataPath is gone: the trainer always resolves and gates spec.data itself (issue 16)."""
    raw = json.loads(fixtures.write_config(tmp_path, None, fixtures.spec()).read_text())
    path = tmp_path / "bypass.json"
    path.write_text(json.dumps({**raw, "dataPath": str(tmp_path / "d.csv")}))
    monkeypatch.setenv(contract.ENV_CONFIG, str(path))
    with pytest.raises(errors.UserError, match="dataPath"):
        config.load()
