"""flywheel.results: the one writer of a run's outcome, used by the training and self-play workloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flywheel import artifacts, results
from flywheel.api import contract
from flywheel.training import result as training_result


def test_result_json_goes_to_the_store_the_local_copy_and_the_message_to_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(contract.ENV_TERMINATION_LOG, str(tmp_path / "termination-log"))
    monkeypatch.setenv(contract.ENV_RESULT_PATH, str(tmp_path / "local" / "result.json"))
    store = artifacts.Store((tmp_path / "run").as_uri())
    uri = results.write(store, {"phase": "Succeeded", "step": 3}, '{"phase":"Succeeded"}')
    assert uri.endswith(contract.RESULT_FILE)
    stored = json.loads(store.read_bytes(contract.RESULT_FILE))
    assert stored == {"phase": "Succeeded", "step": 3}
    assert json.loads((tmp_path / "local" / "result.json").read_text()) == stored
    assert (tmp_path / "termination-log").read_text() == '{"phase":"Succeeded"}'


def test_without_a_log_or_a_local_path_only_the_store_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(contract.ENV_RESULT_PATH, raising=False)
    monkeypatch.setattr(results, "termination_log_path", lambda: None)
    store = artifacts.Store((tmp_path / "run").as_uri())
    results.write(store, {"phase": "Failed"}, "{}")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [contract.RESULT_FILE]


def test_the_training_result_is_written_through_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(contract.ENV_TERMINATION_LOG, str(tmp_path / "log"))
    written: list[str] = []
    real = results.write
    monkeypatch.setattr(results, "write", lambda *a: written.append(a[2]) or real(*a))
    done = training_result.Result(phase="Succeeded", message="ok")
    training_result.write(done, artifacts.Store((tmp_path / "run").as_uri()))
    assert written == [training_result.compact(done)] == [(tmp_path / "log").read_text()]
