"""Which models a Deployment serves: a ModelRef resolved to a model directory, pure.

A ModelRef with `uri` is used as is. `fromTrainingRun` reads the run's status.model (the directory
of its model card) once the run has Succeeded; until then the model is "not yet", and a Failed run
makes it unavailable for good (until the spec changes). Both backends resolve through here: the
operator with TrainingRuns read from the API server, the local runner with those in its store.
"""

from __future__ import annotations

from typing import NamedTuple

from flywheel.api import common, conditions
from flywheel.api import deployment as api
from flywheel.api import trainingrun as tr_api
from flywheel.controllers import plans

TRAINING_RUN_API = common.API_VERSION
ROLES = ("champion", "challenger")


class Model(NamedTuple):
    """A resolved model: directory URI (holding model_card.json), int8 or not, card version."""

    uri: str
    quantized: bool
    version: str | None


class Resolution(NamedTuple):
    """A model, or why there is none yet (`failed`: it will not come without a spec change)."""

    model: Model | None
    why: str | None
    failed: bool


def training_run_refs(resource: plans.Manifest) -> list[plans.Ref]:
    """The TrainingRuns the champion and challenger come from (to observe before planning)."""
    ns = str(resource["metadata"].get("namespace") or "default")
    spec = resource.get("spec") or {}
    runs = [(spec.get(role) or {}).get("fromTrainingRun") for role in ROLES]
    return [plans.Ref(TRAINING_RUN_API, tr_api.TrainingRun.KIND, run, ns) for run in runs if run]


def resolve(ref: api.ModelRef, observed: plans.Observed) -> Resolution:
    """A model from a URI, or from a Succeeded TrainingRun's status.model."""
    if ref.uri is not None:
        return Resolution(Model(ref.uri, ref.quantized, None), None, False)
    run = observed.get(tr_api.TrainingRun.KIND, str(ref.from_training_run))
    if run is None:
        return Resolution(None, f"TrainingRun {ref.from_training_run} does not exist yet", False)
    status = run.get("status") or {}
    model = status.get("model") or {}
    card = model.get("cardUri") or model.get("quantizedUri") or model.get("fp32Uri")
    if status.get("phase") == conditions.FAILED:
        why = f"TrainingRun {ref.from_training_run} failed: {status.get('message', '')}"
        return Resolution(None, why, True)
    if status.get("phase") != conditions.SUCCEEDED or not card:
        return Resolution(None, f"TrainingRun {ref.from_training_run} has not succeeded yet", False)
    quantized = ref.quantized and bool(model.get("quantizedUri"))
    return Resolution(Model(str(card).rsplit("/", 1)[0], quantized, model.get("version")), None, False)


def placeholder(ref: api.ModelRef) -> Model:
    """For `flywheel render`: a fromTrainingRun model is named, not resolved (no cluster to ask)."""
    if ref.uri is not None:
        return Model(ref.uri, ref.quantized, None)
    return Model(f"<status.model of TrainingRun {ref.from_training_run}>", ref.quantized, None)
