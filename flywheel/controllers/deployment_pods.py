"""The apps/v1 Deployment that runs the BentoML server of a Deployment, pure.

Rollouts: the pod template carries a hash of the serving config and image, so a new champion (a
promotion) rolls the pods; maxUnavailable 0 / maxSurge 1 keeps every wanted replica ready during
the roll, and readiness is BentoML's /readyz, true only once the models are loaded. A startup
probe holds liveness off while the models load.
"""

from __future__ import annotations

from typing import Any

from flywheel.api import contract
from flywheel.api import deployment as api
from flywheel.controllers import deployment_models as models
from flywheel.controllers import plans, podspec, settings

COMPONENT = "serving"


def selector(dep: api.Deployment) -> dict[str, str]:
    return {
        contract.LABEL_INSTANCE: dep.name,
        contract.LABEL_COMPONENT: COMPONENT,
        contract.LABEL_OWNER_KIND: api.Deployment.KIND,
    }


def wanted_replicas(dep: api.Deployment) -> int:
    """Replicas that must be ready: the HPA's floor when autoscaling, else spec.replicas."""
    return dep.spec.autoscaling.min_replicas if dep.spec.autoscaling.enabled else dep.spec.replicas


def deployment(
    resource: plans.Manifest,
    dep: api.Deployment,
    name: str,
    config: dict[str, Any],
    champion: models.Model,
    challenger: models.Model | None,
    settings: settings.Settings,
) -> plans.Manifest:
    """The serving Deployment; its template hash changes whenever the served config does."""
    spec = dep.spec
    image = spec.resources.image or settings.serving_image
    config_hash = plans.config_hash({"config": config, "image": image})
    labels = {**plans.labels(api.Deployment.KIND, dep.name, COMPONENT), contract.LABEL_ROLE: "champion"}
    body: dict[str, Any] = {
        "selector": {"matchLabels": selector(dep)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": labels, "annotations": {contract.ANNOTATION_CONFIG_HASH: config_hash}},
            "spec": _pod_spec(dep, name, image, champion, challenger, settings),
        },
    }
    if not spec.autoscaling.enabled:  # with an HPA, the HPA owns .spec.replicas
        body = {"replicas": spec.replicas, **body}
    meta = plans.child_metadata(resource, name, COMPONENT)
    meta["annotations"] = {contract.ANNOTATION_CONFIG_HASH: config_hash}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": body}


def _pod_spec(
    dep: api.Deployment,
    name: str,
    image: str,
    champion: models.Model,
    challenger: models.Model | None,
    settings: settings.Settings,
) -> dict[str, Any]:
    volumes, mounts, secrets = podspec.artifact_storage(dep.spec.artifacts)
    container = _container(dep, image, champion, challenger, settings, mounts)
    if secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in secrets]
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": podspec.pod_security_context(),
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": name}},
            {"name": "work", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            *volumes,
        ],
    }
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    return pod_spec


def _container(
    dep: api.Deployment,
    image: str,
    champion: models.Model,
    challenger: models.Model | None,
    settings: settings.Settings,
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    spec = dep.spec
    env = [
        {"name": contract.ENV_SERVING_CONFIG, "value": contract.CONFIG_PATH},
        {"name": contract.ENV_CHAMPION_URI, "value": champion.uri},
        {"name": contract.ENV_RUN_NAME, "value": dep.name},
        {"name": contract.ENV_NAMESPACE, "value": dep.namespace},
        {"name": "HOME", "value": contract.WORK_DIR},
        {"name": "BENTOML_HOME", "value": f"{contract.WORK_DIR}/bentoml"},
        {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
    ]
    if challenger is not None:
        env.insert(2, {"name": contract.ENV_CHALLENGER_URI, "value": challenger.uri})
    probe = {
        "httpGet": {"path": "/readyz", "port": "http"},
        "periodSeconds": 5,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    return {
        "name": COMPONENT,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        # A pod serves on its pod IP (0.0.0.0); the Service is the boundary.
        "command": ["bentoml", *contract.serving_args("0.0.0.0", spec.port)],  # noqa: S104
        "env": env,
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {
            **probe,
            "httpGet": {"path": "/livez", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        # Loading models can take a while: liveness starts only after the first /livez success.
        "startupProbe": {
            "httpGet": {"path": "/livez", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 90,
        },
        "resources": {
            "requests": {"cpu": spec.resources.cpu, "memory": spec.resources.memory},
            "limits": {"cpu": spec.resources.cpu, "memory": spec.resources.memory},
        },
        "securityContext": podspec.container_security_context(rdma=False),
        "volumeMounts": [
            {"name": "config", "mountPath": contract.CONFIG_MOUNT, "readOnly": True},
            {"name": "work", "mountPath": contract.WORK_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            *mounts,
        ],
    }
