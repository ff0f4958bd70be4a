"""The serving config: what one FlywheelService process serves and how, read once at start.

The operator (flywheel.controllers.deployment_children.serving_config) and the local backend
(flywheel.local.runners.deployment) write this JSON and point ENV_SERVING_CONFIG at it. Without that
file, ENV_CHAMPION_URI (and optionally ENV_CHALLENGER_URI) alone start a champion-only service with
the Deployment defaults. Keys are the Deployment's camelCase names, so `traffic`, `batching` and
`logging` are copied from the spec as is:

    {"name": "fraud", "namespace": "default",
     "champion": {"uri": "file:///a/m1", "quantized": true, "version": "fraud-3f2a..."},
     "challenger": {"uri": "file:///a/m2", "quantized": true},            # optional
     "traffic": {"mode": "canary", "challengerPercent": 10, "stickyHeader": "x-request-id"},
     "batching": {"enabled": true, "maxBatchSize": 64, "maxLatencyMs": 1000},
     "logging": {"enabled": true, "sampleRate": 1.0, "sink": "file:///a/traffic/fraud",
                 "flushRows": 1000, "flushSeconds": 5},
     "artifactsUri": "file:///a", "maxRequestRows": 1000, "maxBodyBytes": 4194304,
     "accessLog": false, "tracing": false}                                   # optional
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import pydantic
from pydantic import Field

from flywheel import errors
from flywheel.api import common, contract, deployment

# Admin endpoints (hot swap) load model files, so they are off unless this token is set; callers
# send it as `Authorization: Bearer <token>`.
ENV_ADMIN_TOKEN = "FLYWHEEL_SERVING_ADMIN_TOKEN"  # noqa: S105 - an env var name, not a secret
DEFAULT_LOADER = "flywheel.training.inference:load"


class ModelSource(common.Model):
    """A resolved model: a directory URI holding model_card.json."""

    uri: str = Field(pattern=common.ARTIFACT_URI_PATTERN)
    quantized: bool = True
    version: str | None = None
    """The version the controller resolved (a TrainingRun's status.model.version). The directory of
    a retrained run keeps its URI, so this is what changes the config, hence rolls or swaps the
    server; the server itself reports the version of the card it loaded."""


class ServingConfig(common.Model):
    """Everything the service reads at start; see the module docstring for the wire form."""

    name: str = "flywheel"
    namespace: str = "default"
    champion: ModelSource
    challenger: ModelSource | None = None
    traffic: deployment.Traffic = Field(default_factory=deployment.Traffic)
    batching: deployment.Batching = Field(default_factory=deployment.Batching)
    logging: deployment.Logging = Field(default_factory=deployment.Logging)
    artifacts_uri: str = Field(default=common.Artifacts().uri, pattern=common.ARTIFACT_URI_PATTERN)
    max_request_rows: int = Field(default=1000, ge=1, le=100_000)
    """Rows one request may carry; more is a 400 (split the request)."""
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Largest request body; more is a 413."""
    workers: int = Field(default=1, ge=1, le=64)
    """BentoML worker processes (each loads the models; admin hot swap needs workers: 1)."""
    loader: str = DEFAULT_LOADER
    """`module:function(model_dir, quantized) -> predictor`; tests point it at a fixture model."""
    access_log: bool = False
    """BentoML's per-request access log line. Off by default: the Parquet traffic log (`logging`)
    already records every request, and formatting the line costs worker CPU on every request."""
    tracing: bool = False
    """OpenTelemetry spans for /predict. Off by default: BentoML samples no trace unless
    `tracing.sample_rate` is configured, yet its ASGI middleware still builds a span per request;
    set true (and configure BentoML's tracing exporter) to trace predictions."""

    def sink_uri(self) -> str:
        """Where traffic logs go: logging.sink, else <artifacts>/traffic/<name>."""
        if self.logging.sink:
            return self.logging.sink
        return contract.traffic_sink(self.artifacts_uri, self.name)


def load(env: Mapping[str, str] | None = None) -> ServingConfig:
    """Read the config from ENV_SERVING_CONFIG, or from the champion/challenger URI env vars."""
    env = os.environ if env is None else env
    path = env.get(contract.ENV_SERVING_CONFIG)
    try:
        if path:
            raw = json.loads(Path(path).read_text())
            return ServingConfig.model_validate(raw)
        champion = env.get(contract.ENV_CHAMPION_URI)
        if not champion:
            raise errors.UserError(
                f"no model to serve: set {contract.ENV_SERVING_CONFIG} (a JSON file) "
                f"or {contract.ENV_CHAMPION_URI} (a model directory URI)"
            )
        data: dict[str, object] = {"champion": {"uri": champion}}
        if challenger := env.get(contract.ENV_CHALLENGER_URI):
            data["challenger"] = {"uri": challenger}
            data["traffic"] = {"mode": "shadow"}
        if artifacts := env.get(contract.ENV_ARTIFACTS_URI):
            data["artifactsUri"] = artifacts
        if name := env.get(contract.ENV_RUN_NAME):
            data["name"] = name
        return ServingConfig.model_validate(data)
    except (OSError, json.JSONDecodeError) as exc:
        raise errors.UserError(f"{contract.ENV_SERVING_CONFIG}={path}: cannot read it: {exc}") from exc
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise errors.UserError(f"serving config: {where}: {first['msg']}") from exc


def within_artifacts(artifacts_uri: str, uri: str) -> str | None:
    """`uri` with `.` and `..` resolved, when that lies in the artifact store; else None.
    Normalised first: `file:///<root>/../../elsewhere` starts with the root, yet is not in it."""
    want, root = urlparse(uri), urlparse(artifacts_uri)
    if (want.scheme, want.netloc) != (root.scheme, root.netloc) or want.params or want.query or want.fragment:
        return None
    path = posixpath.normpath(want.path) if want.path else "/"
    base = posixpath.normpath(root.path) if root.path else "/"
    if path.startswith("//"):  # normpath keeps a leading '//'; the filesystem reads it as '/'
        path = "/" + path.lstrip("/")
    if base not in ("/", ".") and path != base and not path.startswith(base.rstrip("/") + "/"):
        return None
    return f"{want.scheme}://{want.netloc}{path}"
