"""The trainer's typed config, read once from the JSON file named by FLYWHEEL_CONFIG.

On both backends it is the TrainingRun's ConfigMap rendered by controllers/trainingrun: mounted at
contract.CONFIG_PATH in the pod, written to a local file by flywheel.local.realize. The trainer never
knows which backend runs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pydantic
from pydantic.alias_generators import to_camel

from flywheel import errors
from flywheel.api import contract, trainingrun


class Config(pydantic.BaseModel):
    """{"name", "namespace", "spec", "artifactsUri"} (camelCase on the wire). The data is always the
    spec's DVC dataset, resolved and gated by the trainer (there is no file bypass: a test or a
    benchmark that trains on its own rows commits them to a local DVC repository,
    flywheel.data.examples.file_repo)."""

    model_config = pydantic.ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    name: str = pydantic.Field(min_length=1)
    namespace: str = "default"
    spec: trainingrun.TrainingRunSpec
    artifacts_uri: str = pydantic.Field(min_length=1)
    """The run's own artifact root, e.g. file:///home/.flywheel/artifacts/default/trainingruns/iris."""

    def to_dict(self) -> dict[str, object]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config; a missing or invalid file is a UserError naming the fix."""
    source = path or os.environ.get(contract.ENV_CONFIG)
    if not source:
        raise errors.UserError(f"{contract.ENV_CONFIG} is not set: point it at the run's config.json")
    file = Path(source)
    try:
        raw = json.loads(file.read_text())
    except FileNotFoundError as exc:
        raise errors.UserError(f"{contract.ENV_CONFIG}={file}: no such file") from exc
    except json.JSONDecodeError as exc:
        raise errors.UserError(
            f"{contract.ENV_CONFIG}={file}: not JSON ({exc.msg}, line {exc.lineno})"
        ) from exc
    try:
        return Config.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise errors.UserError(f"{file}: invalid trainer config: {problems[0]}", problems) from exc
