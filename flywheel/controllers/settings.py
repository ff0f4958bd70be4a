"""Operator settings the controllers need: operand images and defaults, read once at start-up.

The Helm chart sets them as env on the operator Deployment (values -> env -> Settings), the local
backend uses the defaults. Controllers take a Settings argument instead of reading env themselves.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from flywheel.api import contract

ENV_ARTIFACTS_URI = "FLYWHEEL_ARTIFACTS_URI"
ENV_ARTIFACTS_SECRET = "FLYWHEEL_ARTIFACTS_CREDENTIALS_SECRET"  # noqa: S105 - an env var name


@dataclasses.dataclass(frozen=True)
class Settings:
    trainer_image: str = contract.DEFAULT_TRAINER_IMAGE
    selfplay_image: str = contract.DEFAULT_SELFPLAY_IMAGE
    serving_image: str = contract.DEFAULT_SERVING_IMAGE
    drift_image: str = contract.DEFAULT_DRIFT_IMAGE
    """The DriftMonitor's check Job (images/drift: Evidently, ONNX Runtime; no torch)."""
    image_pull_policy: str = "IfNotPresent"
    service_account: str | None = None
    """ServiceAccount of workload pods (none: the namespace default)."""
    trainjob_runtime: str = "torch-distributed"
    """ClusterTrainingRuntime a TrainJob runs against (launcher: TrainJob): Kubeflow Trainer's stock
    torch-distributed, or the flywheel-torch runtime the chart can install."""
    artifacts_uri: str | None = None
    """The platform's artifact store (Helm value artifacts.uri): what a spec.artifacts.uri left at
    its default means on Kubernetes (flywheel.controllers.artifact_store). None: no platform store,
    and such a resource is refused (its default is pod scratch space)."""
    artifacts_credentials_secret: str | None = None
    """The Secret a platform s3:// store is read with (Helm value artifacts.s3CredentialsSecret)."""
    service_host: str | None = None
    """Where a Deployment's Service answers, for status.endpoint. None: the cluster DNS name
    (<service>.<namespace>.svc); the local backend, whose servers bind loopback, says 127.0.0.1."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            trainer_image=env.get(contract.ENV_TRAINER_IMAGE, defaults.trainer_image),
            selfplay_image=env.get(contract.ENV_SELFPLAY_IMAGE, defaults.selfplay_image),
            serving_image=env.get(contract.ENV_SERVING_IMAGE, defaults.serving_image),
            drift_image=env.get(contract.ENV_DRIFT_IMAGE, defaults.drift_image),
            image_pull_policy=env.get("FLYWHEEL_IMAGE_PULL_POLICY", defaults.image_pull_policy),
            service_account=env.get("FLYWHEEL_WORKLOAD_SERVICE_ACCOUNT") or None,
            trainjob_runtime=env.get("FLYWHEEL_TRAINJOB_RUNTIME") or defaults.trainjob_runtime,
            artifacts_uri=env.get(ENV_ARTIFACTS_URI) or None,
            artifacts_credentials_secret=env.get(ENV_ARTIFACTS_SECRET) or None,
        )
