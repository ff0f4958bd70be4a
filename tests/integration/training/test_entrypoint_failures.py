"""A broken spec.trainer is a Failed run whose message names the field and the fix, through the real
trainer process (`python -m flywheel.training`, one process): exit 2 and no traceback as the message
for what the user must fix in the manifest or the module's shape; exit 1 with the exception's type
and message (the traceback in the log) when the user's function raises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel import artifacts
from flywheel.api import contract
from flywheel.training import result
from tests.unit.training import fixtures

CODE = """
def raises(ctx):
    raise RuntimeError("the loss went to NaN at step 3")

def wrong_return(ctx):
    return {"weights": 1}

def own_onnx(ctx):
    import torch
    net = torch.nn.Linear(len(ctx.inputs["numeric"]), ctx.n_outputs)
    import tempfile
    path = tempfile.mkdtemp() + "/mine.onnx"
    torch.onnx.export(net, (ctx.encode(ctx.train.head(2))["numeric"],), path, input_names=["numeric"],
                      output_names=["output"], dynamic_axes={"numeric": {0: "n"}, "output": {0: "n"}}, dynamo=False)
    return path
"""


def _run(tmp_path: Path, entry: str) -> tuple[int, result.Result, str]:
    (tmp_path / "user_trainer_mod.py").write_text(CODE)
    spec = fixtures.spec()
    del spec["model"]["architecture"]
    spec["trainer"] = {"entryPoint": entry, "path": str(tmp_path)}
    data = fixtures.breast_cancer_csv(tmp_path / "bc.csv", rows=60)
    config = fixtures.write_config(tmp_path, data, spec, name="broken")
    env = {**os.environ, contract.ENV_CONFIG: str(config), contract.ENV_TERMINATION_LOG: str(tmp_path / "t")}
    done = subprocess.run(
        [sys.executable, "-m", "flywheel.training"], check=False, env=env, capture_output=True, text=True
    )
    store = artifacts.Store(fixtures.run_root(tmp_path, "broken").as_uri())
    return done.returncode, result.read(store), done.stderr


@pytest.mark.parametrize(
    "entry,fix",
    [
        ("user_trainer_missing:train", "cannot import user_trainer_missing"),
        ("user_trainer_mod:nothing", "user_trainer_mod has no nothing; define `def nothing(ctx):`"),
        ("user_trainer_mod:wrong_return", "returned dict; return flywheel.training.Trained(module, example)"),
    ],
)
def test_what_the_user_must_fix_is_failed_with_exit_2(tmp_path: Path, entry: str, fix: str) -> None:
    code, outcome, stderr = _run(tmp_path, entry)
    assert code == 2
    assert outcome.phase == "Failed"
    assert outcome.message.startswith(f"spec.trainer.entryPoint {entry}: ") and fix in outcome.message
    assert "Traceback" not in stderr


def test_an_exception_in_the_users_function_is_failed_with_its_type_and_message(tmp_path: Path) -> None:
    code, outcome, stderr = _run(tmp_path, "user_trainer_mod:raises")
    assert code == 1 and outcome.phase == "Failed"
    assert outcome.message == (
        "spec.trainer.entryPoint user_trainer_mod:raises raised RuntimeError: the loss went to NaN at step 3"
    )
    assert "Traceback" in stderr and 'user_trainer_mod.py", line 3, in raises' in stderr  # the log has it


def test_a_function_may_return_the_onnx_file_it_wrote(tmp_path: Path) -> None:
    """The other return form: the platform quantizes, scores and serves the user's own ONNX file."""
    code, outcome, stderr = _run(tmp_path, "user_trainer_mod:own_onnx")
    assert code == 0, stderr[-3000:]
    assert outcome.phase == "Succeeded" and "accuracy" in outcome.metrics
    model = fixtures.run_root(tmp_path, "broken") / "model"
    card = json.loads((model / "model_card.json").read_text())
    assert card["trainer"] == {"entryPoint": "user_trainer_mod:own_onnx", "returned": "onnx"}
    assert "fp32" not in card["files"] and card["files"]["fp32Onnx"] == "model_fp32.onnx"
    assert outcome.model is not None and outcome.model.fp32_uri.endswith("model_fp32.onnx")
