"""spec.trainer: its validation, the feeds a card's `inputs` define, the entry-point loader, and how
the trainer's image and env reach both launchers' pods (pure: no training here)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest

from flywheel import errors
from flywheel.api import loading, trainingrun
from flywheel.controllers import settings
from flywheel.controllers import trainingrun as controller
from flywheel.local import paths
from flywheel.training import feeds, loader, preprocess
from tests.unit.controllers import upstream
from tests.unit.controllers import upstream_trainjob as v2

BASE: dict[str, Any] = {
    "data": {"repo": "r", "path": "p.csv"},
    "model": {"task": "classification", "target": "y"},
}


def spec(**trainer: Any) -> trainingrun.TrainingRunSpec:
    return trainingrun.TrainingRunSpec.model_validate(
        {**BASE, "trainer": {"entryPoint": "pkg.mod:train", **trainer}}
    )


def problem(**overrides: Any) -> str:
    with pytest.raises(pydantic.ValidationError) as info:
        trainingrun.TrainingRunSpec.model_validate({**BASE, **overrides})
    return "\n".join(loading.error_lines("f.yaml", info.value))


# --- validation ---------------------------------------------------------------------------------


def test_column_prefix_expands_row_major_and_columns_must_fill_the_shape() -> None:
    tensor = spec(inputs=[{"name": "image", "shape": [1, 2, 2], "columnPrefix": "px"}]).trainer
    assert tensor is not None and tensor.tensor_columns() == ["px0", "px1", "px2", "px3"]
    text = problem(
        trainer={"entryPoint": "m:f", "inputs": [{"name": "x", "shape": [2, 2], "columns": ["a", "b"]}]}
    )
    assert "trainer.inputs.0" in text and "holds 4 values but columns lists 2" in text
    both = problem(
        trainer={
            "entryPoint": "m:f",
            "inputs": [{"name": "x", "shape": [1], "columns": ["a"], "columnPrefix": "a"}],
        }
    )
    assert "exactly one of columns or columnPrefix" in both


def test_entry_point_pattern_names_the_field_and_the_shape() -> None:
    text = problem(trainer={"entryPoint": "my_models.tabular"})
    assert "trainer.entryPoint: use module:function" in text


def test_architecture_is_for_the_built_in_only() -> None:
    text = problem(
        model={**BASE["model"], "architecture": {"hiddenLayers": [8]}}, trainer={"entryPoint": "m:f"}
    )
    assert "model.architecture" in text and "remove model.architecture" in text
    # Defaults filled in (what the trainer's config carries) are not "set".
    filled = trainingrun.TrainingRunSpec.model_validate(spec().to_dict())
    assert filled.trainer is not None and filled.trainer.entry_point == "pkg.mod:train"


def test_tensor_columns_must_be_declared_numeric_features_when_features_are_given() -> None:
    model = {**BASE["model"], "features": [{"name": "a"}, {"name": "b", "type": "categorical"}]}
    unknown = problem(
        model=model,
        trainer={"entryPoint": "m:f", "inputs": [{"name": "t", "shape": [2], "columns": ["a", "z"]}]},
    )
    assert "column(s) z are not in model.features" in unknown
    categorical = problem(
        model=model,
        trainer={"entryPoint": "m:f", "inputs": [{"name": "t", "shape": [2], "columns": ["a", "b"]}]},
    )
    assert "b are categorical" in categorical


def test_reserved_env_and_duplicate_tensors_are_refused() -> None:
    assert "FLYWHEEL_CONFIG are Flywheel's own" in problem(
        trainer={"entryPoint": "m:f", "env": [{"name": "FLYWHEEL_CONFIG", "value": "x"}]}
    )
    twice = [{"name": "t", "shape": [1], "columns": ["a"]}, {"name": "t", "shape": [1], "columns": ["b"]}]
    assert "tensor t declared twice" in problem(trainer={"entryPoint": "m:f", "inputs": twice})


# --- feeds ----------------------------------------------------------------------------------------

TRAIN = pd.DataFrame({"n": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "c"], "y": [0, 1, 0, 1]})
MODEL = trainingrun.ModelSpec(
    task=trainingrun.Task.CLASSIFICATION,
    target="y",
    features=[
        trainingrun.Feature(name="n"),
        trainingrun.Feature(name="c", type="categorical", nullable=True),
    ],
)
PREP = preprocess.fit(TRAIN, TRAIN["y"], MODEL)


def test_tabular_feeds_standardise_numbers_and_index_categories_from_one() -> None:
    inputs = feeds.describe(PREP, feeds.TABULAR)
    assert inputs == {"kind": "tabular", "numeric": ["n"], "categorical": ["c"]}
    rows = [{"n": 2.5, "c": "b"}, {"n": None, "c": "zzz"}, {"n": 4.0, "c": None}]
    fed = feeds.encode(PREP, inputs, rows)
    assert fed["numeric"].dtype == np.float32 and fed["categorical"].dtype == np.int64
    np.testing.assert_allclose(
        fed["numeric"][:, 0], [0.0, 0.0, (4.0 - 2.5) / np.std([1, 2, 3, 4])], rtol=1e-6
    )
    assert fed["categorical"][:, 0].tolist() == [2, 0, 0]  # b is category 1 -> 2; unseen and missing -> 0
    assert feeds.names(inputs) == ["numeric", "categorical"]


def test_tensor_feeds_fill_each_tensor_row_major_unscaled() -> None:
    frame = pd.DataFrame({f"px{i}": [float(i), float(10 + i)] for i in range(4)})
    inputs = {"kind": "tensors", "tensors": [{"name": "image", "datatype": "FP32", "shape": [1, 2, 2],
                                             "columns": [f"px{i}" for i in range(4)]}]}  # fmt: skip
    fed = feeds.encode(PREP, inputs, frame)
    assert fed["image"].shape == (2, 1, 2, 2) and fed["image"][1, 0].tolist() == [[10.0, 11.0], [12.0, 13.0]]
    with pytest.raises(errors.UserError, match="px3"):
        feeds.encode(PREP, inputs, frame.drop(columns=["px3"]))


def test_matrix_feeds_are_the_built_in_preprocessing() -> None:
    fed = feeds.encode(PREP, None, TRAIN)
    assert list(fed) == ["input"] and np.array_equal(fed["input"], PREP.features(TRAIN))


# --- loader ---------------------------------------------------------------------------------------


def test_loader_names_the_field_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "user_code_ok.py").write_text("def train(ctx):\n    return None\ndef two(a, b):\n    pass\n")
    trainer = trainingrun.Trainer(entry_point="user_code_ok:train", path=str(tmp_path))
    assert callable(loader.load(trainer))
    for entry, message in [
        ("no_such_module_xyz:train", "cannot import no_such_module_xyz"),
        ("user_code_ok:missing", "user_code_ok has no missing"),
        ("user_code_ok:two", "must take one argument"),
    ]:
        with pytest.raises(errors.UserError, match=message) as info:
            loader.load(trainingrun.Trainer(entry_point=entry, path=str(tmp_path)))
        assert str(info.value).startswith(f"spec.trainer.entryPoint {entry}")
    with pytest.raises(errors.UserError, match=r"spec\.trainer\.path"):
        loader.load(trainingrun.Trainer(entry_point="m:f", path=str(tmp_path / "nowhere")))
    sys.modules.pop("user_code_ok", None)


def test_a_users_exception_keeps_its_type_and_a_bounded_message() -> None:
    def boom(ctx: object) -> None:
        raise ValueError("x" * 5000)

    with pytest.raises(loader.UserCodeFailed) as info:
        loader.call(boom, None, "m:boom")
    assert str(info.value).startswith("spec.trainer.entryPoint m:boom raised ValueError: xxx")
    assert len(str(info.value)) < 700


def test_flywheel_run_resolves_trainer_path_against_the_manifest_folder(tmp_path: Path) -> None:
    doc = upstream.trainingrun(trainer={"entryPoint": "m:f", "path": "code"})
    resource = paths.code_paths(loading.parse(doc, "x"), tmp_path)
    assert resource.spec.trainer.path == str((tmp_path / "code").resolve())


def test_a_folder_is_read_in_dependency_order() -> None:
    root = Path(__file__).resolve().parents[3] / "examples" / "custom-tabular"
    assert [d["kind"] for d in loading.read_documents(root)] == ["TrainingRun", "Deployment", "DriftMonitor"]


# --- rendering ------------------------------------------------------------------------------------


@pytest.mark.parametrize("launcher", ["PyTorchJob", "TrainJob"])
def test_trainer_image_and_env_reach_both_launchers_pods(launcher: str) -> None:
    manifest = upstream.trainingrun(
        launcher=launcher,
        resources={"image": "registry/other:1"},
        trainer={
            "entryPoint": "m:f",
            "image": "registry/mine:2",
            "env": [{"name": "MY_FLAG", "value": "on"}],
        },
    )
    _, job = controller.render_children(manifest, settings.Settings())
    if launcher == "PyTorchJob":
        [container] = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
        image, env = container["image"], container["env"]
        upstream.assert_upstream_valid(job)
    else:
        assert v2.trainjob_errors(job) == []
        # spec.trainer's image and env are what Trainer v2 puts on the runtime's `node` container
        image, env = job["spec"]["trainer"]["image"], job["spec"]["trainer"]["env"]
    assert image == "registry/mine:2"
    assert {"name": "MY_FLAG", "value": "on"} in env
    assert [e["name"] for e in env].index("MY_FLAG") > [e["name"] for e in env].index("FLYWHEEL_CONFIG")


# --- flywheel validate and fine-tuning ------------------------------------------------------------


def _validate(path: Path, target: str = "local") -> int:
    import argparse

    from flywheel.training import entrycheck

    return entrycheck.cli(argparse.Namespace(filename=[str(path)], target=target, artifacts_uri=None))


def test_validate_imports_the_entry_point_against_the_manifest_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "custom-tabular"
    assert _validate(example) == 0
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "vmod_two_args.py").write_text("def train(ctx, extra):\n    pass\n")
    manifest = (example / "trainingrun.yaml").read_text()
    manifest = manifest.replace("tabular_model:train", "vmod_two_args:train").replace("path: .", "path: code")
    (tmp_path / "run.yaml").write_text(manifest)
    capsys.readouterr()
    assert _validate(tmp_path / "run.yaml") == 1
    out = capsys.readouterr().out
    assert "spec.trainer.entryPoint vmod_two_args:train: must take one argument" in out
    # Kubernetes: nothing imported; the image that must hold the code is named
    _validate(tmp_path / "run.yaml", "kubernetes")
    assert "must be importable in ghcr.io/flywheel-dev/custom-tabular:0.1.0" in capsys.readouterr().out
    sys.modules.pop("vmod_two_args", None)


def test_fine_tuning_needs_the_entry_point_that_trained_the_model(tmp_path: Path) -> None:
    from flywheel.api import contract
    from flywheel.training import finetune

    (tmp_path / contract.MODEL_CARD).write_text('{"trainer": {"entryPoint": "team.models:train"}}')
    (tmp_path / contract.FP32_FILE).write_bytes(b"")
    model = trainingrun.ModelSpec(task=trainingrun.Task.CLASSIFICATION, target="y")
    for entry, said in [("other:train", "other:train"), (None, "unset (the built-in MLP)")]:
        with pytest.raises(errors.UserError, match="use the same entry point") as info:
            finetune.load(tmp_path.as_uri(), model, entry)
        assert "trained by team.models:train" in str(info.value) and said in str(info.value)
