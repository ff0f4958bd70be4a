"""The models double as the Python SDK: build a resource in Python, get its manifest."""

from __future__ import annotations

import pydantic
import pytest

from flywheel import api
from flywheel.api import common, trainingrun


def test_build_a_trainingrun_in_python():
    run = api.TrainingRun(
        metadata=api.ObjectMeta(name="iris"),
        spec=trainingrun.TrainingRunSpec(
            data=trainingrun.Data(repo="/repo", path="iris.csv", rev="v1"),
            model=trainingrun.ModelSpec(task=trainingrun.Task.CLASSIFICATION, target="species"),
            resources=common.Resources(replicas=2, gpus_per_replica=4),
        ),
    )
    manifest = run.to_manifest()
    assert manifest["apiVersion"] == "flywheel.dev/v1alpha1" and manifest["kind"] == "TrainingRun"
    assert manifest["spec"]["resources"]["gpusPerReplica"] == 4
    assert manifest["spec"]["data"]["rev"] == "v1"
    assert "status" not in manifest
    assert run.spec.resources.nproc_per_replica() == 4


def test_assignment_is_validated():
    res = common.Resources()
    with pytest.raises(pydantic.ValidationError):
        res.replicas = 0


def test_nproc_on_cpu_defaults_to_one_process():
    assert common.Resources().nproc_per_replica() == 1
    assert common.Resources(procs_per_replica=3).nproc_per_replica() == 3
