"""The parts the Deployment controller and the local runner share: model resolution, rollout state."""

from __future__ import annotations

from typing import Any

import pytest

from flywheel.api import conditions
from flywheel.api import deployment as api
from flywheel.controllers import deployment_children, deployment_models, deployment_status, settings
from tests.unit.controllers import test_deployment as fixtures


def ref(**fields: Any) -> api.ModelRef:
    return api.ModelRef.model_validate(fields)


def test_uri_is_used_as_is_and_a_run_gives_its_card_directory() -> None:
    assert deployment_models.resolve(
        ref(uri="s3://bucket/m", quantized=False), fixtures.observed()
    ).model == (deployment_models.Model("s3://bucket/m", False, None))
    run = fixtures.training_run("t1", conditions.SUCCEEDED, version="v7")
    got = deployment_models.resolve(ref(fromTrainingRun="t1"), fixtures.observed(run))
    assert got.model == deployment_models.Model(f"{fixtures.ART}/ml/trainingruns/t1/model", True, "v7")


def test_a_run_without_an_int8_export_is_served_in_fp32() -> None:
    run = fixtures.training_run("t1", conditions.SUCCEEDED)
    del run["status"]["model"]["quantizedUri"]
    got = deployment_models.resolve(ref(fromTrainingRun="t1"), fixtures.observed(run))
    assert got.model is not None and got.model.quantized is False


@pytest.mark.parametrize(
    ("phase", "failed", "words"),
    [
        (None, False, "does not exist yet"),
        ("Running", False, "has not succeeded yet"),
        ("Failed", True, "failed: boom"),
    ],
)
def test_a_run_that_is_not_done_is_not_yet_or_never(phase: str | None, failed: bool, words: str) -> None:
    world = fixtures.observed(fixtures.training_run("t1", phase)) if phase else fixtures.observed()
    got = deployment_models.resolve(ref(fromTrainingRun="t1"), world)
    assert got.model is None and got.failed is failed and words in str(got.why)
    rows = deployment_status.waiting_rows(got)
    assert [r[:3] for r in rows] == [
        (
            conditions.READY,
            "False" if failed else "Unknown",
            "ModelUnavailable" if failed else "WaitingForModel",
        ),
        (
            conditions.CHAMPION_READY,
            "False" if failed else "Unknown",
            "ModelUnavailable" if failed else "WaitingForModel",
        ),
    ]


def test_rollout_is_done_only_when_every_wanted_replica_runs_the_new_template() -> None:
    res = fixtures.resource(replicas=3)
    dep = api.Deployment.model_validate(res)
    model = deployment_models.Model(f"{fixtures.ART}/models/m1", True, "v1")
    desired = deployment_children.build(res, dep, model, None, settings.Settings())[1]
    assert deployment_status.rollout(dep, None, desired) == (False, "creating the serving Deployment")
    assert deployment_status.rollout(dep, fixtures.live(desired, ready=2), desired)[0] is False
    assert deployment_status.rollout(dep, fixtures.live(desired, ready=3), desired) == (
        True,
        "3/3 replicas ready",
    )
    other = deployment_children.build(
        res, dep, model._replace(uri="s3://bucket/m2"), None, settings.Settings()
    )[1]
    stale = fixtures.live(other, ready=3)  # all ready, but on the old template
    assert deployment_status.rollout(dep, stale, desired) == (False, "rolling out a new serving config")
