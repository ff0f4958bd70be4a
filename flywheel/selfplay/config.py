"""The workload's configuration, read once from FLYWHEEL_CONFIG.

FLYWHEEL_CONFIG names a JSON file (the operator mounts it from a ConfigMap) or holds the JSON
itself: {"name", "namespace", "spec": a SelfPlayRunSpec, "artifactsUri": this run's artifact
root}. Mistakes are UserErrors naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path

import pydantic

from flywheel import errors
from flywheel.api import contract, selfplayrun


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    namespace: str
    spec: selfplayrun.SelfPlayRunSpec
    artifacts_uri: str


def load(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    raw = env.get(contract.ENV_CONFIG)
    if not raw:
        raise errors.UserError(f"{contract.ENV_CONFIG} is not set: point it at the run's config JSON")
    text = raw if raw.lstrip().startswith("{") else _read(Path(raw))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.UserError(f"{contract.ENV_CONFIG}: not JSON ({exc})") from exc
    return parse(data)


def parse(data: object) -> Config:
    if not isinstance(data, dict):
        raise errors.UserError(f"{contract.ENV_CONFIG}: expected a JSON object")
    missing = [k for k in ("name", "spec", "artifactsUri") if k not in data]
    if missing:
        raise errors.UserError(f"{contract.ENV_CONFIG}: missing {', '.join(missing)}")
    try:
        spec = selfplayrun.SelfPlayRunSpec.model_validate(data["spec"])
    except pydantic.ValidationError as exc:
        problems = [f"spec.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise errors.UserError(f"{contract.ENV_CONFIG}: invalid spec: {problems[0]}", problems) from exc
    return Config(
        name=str(data["name"]),
        namespace=str(data.get("namespace") or "default"),
        spec=spec,
        artifacts_uri=str(data["artifactsUri"]),
    )


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise errors.UserError(f"{contract.ENV_CONFIG}={path}: cannot read ({exc.strerror})") from exc
