"""The Kubernetes children of a Deployment (deployments.flywheel.dev), pure builders.

All named <name>-serving and owned by the Deployment: a ConfigMap with the serving config
(flywheel.serving.config reads it), the apps/v1 Deployment (flywheel.controllers.deployment_pods),
a Service, an HPA (autoscaling.enabled) and a PDB.

PDB: minAvailable = wanted - 1, rendered only for 2+ wanted replicas. Rollouts are already held by
maxUnavailable 0; the PDB bounds voluntary evictions (drains) to one pod at a time. A PDB demanding
every replica (or the only one) would block node drains forever.
"""

from __future__ import annotations

import json
from typing import Any

from flywheel.api import contract
from flywheel.api import deployment as api
from flywheel.controllers import deployment_models as models
from flywheel.controllers import deployment_pods as pods
from flywheel.controllers import plans, settings

COMPONENT = pods.COMPONENT


def child(name: str) -> str:
    """The name every child of Deployment `name` carries."""
    return plans.child_name(name, COMPONENT)


def refs(resource: plans.Manifest) -> list[plans.Ref]:
    """The children, to observe before planning."""
    ns, name = str(resource["metadata"].get("namespace") or "default"), child(resource["metadata"]["name"])
    return [
        plans.Ref("v1", "ConfigMap", name, ns),
        plans.Ref("apps/v1", "Deployment", name, ns),
        plans.Ref("v1", "Service", name, ns),
        plans.Ref("autoscaling/v2", "HorizontalPodAutoscaler", name, ns),
        plans.Ref("policy/v1", "PodDisruptionBudget", name, ns),
    ]


def serving_config(
    dep: api.Deployment, champion: models.Model, challenger: models.Model | None
) -> dict[str, Any]:
    """The JSON flywheel.serving.config.ServingConfig reads (ENV_SERVING_CONFIG)."""
    spec = dep.spec
    logging = spec.logging.to_dict()
    logging.setdefault("sink", contract.traffic_sink(spec.artifacts.uri, dep.name))
    out: dict[str, Any] = {
        "name": dep.name,
        "namespace": dep.namespace,
        "champion": _source(champion),
        "traffic": spec.traffic.to_dict(),
        "batching": spec.batching.to_dict(),
        "logging": logging,
        "artifactsUri": spec.artifacts.uri,
        "workers": spec.resources.workers,
    }
    if challenger is not None:
        out["challenger"] = _source(challenger)
    else:  # serving alone until the challenger exists: no traffic may go to it
        out["traffic"] = {**out["traffic"], "challengerPercent": 0}
    return out


def _source(model: models.Model) -> dict[str, Any]:
    """A served model in the config. The version is there because a retrained TrainingRun keeps its
    model directory's URI: the version is what changes, so the config (and the pod template's hash
    over it) changes with the model, and the pods roll."""
    out: dict[str, Any] = {"uri": model.uri, "quantized": model.quantized}
    if model.version is not None:
        out["version"] = model.version
    return out


def build(
    resource: plans.Manifest,
    dep: api.Deployment,
    champion: models.Model,
    challenger: models.Model | None,
    settings: settings.Settings,
) -> list[plans.Manifest]:
    """ConfigMap, Deployment and Service, then the HPA and PDB when the spec wants them."""
    config = serving_config(dep, champion, challenger)
    name = child(dep.name)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": plans.child_metadata(resource, name, COMPONENT),
        "data": {contract.CONFIG_FILE: json.dumps(config, sort_keys=True, indent=2)},
    }
    out = [
        config_map,
        pods.deployment(resource, dep, name, config, champion, challenger, settings),
        _service(resource, dep, name),
    ]
    if dep.spec.autoscaling.enabled:
        out.append(_hpa(resource, dep, name))
    if (pdb := _pdb(resource, dep, name)) is not None:
        out.append(pdb)
    return out


def stale(dep: api.Deployment, observed: plans.Observed) -> list[plans.Manifest]:
    """Children the spec no longer wants (HPA after autoscaling is turned off, PDB below 2)."""
    name = child(dep.name)
    out = []
    if not dep.spec.autoscaling.enabled and (hpa := observed.get("HorizontalPodAutoscaler", name)):
        out.append(hpa)
    if pods.wanted_replicas(dep) < 2 and (pdb := observed.get("PodDisruptionBudget", name)):
        out.append(pdb)
    return [{k: m[k] for k in ("apiVersion", "kind", "metadata")} for m in out]


def _service(resource: plans.Manifest, dep: api.Deployment, name: str) -> plans.Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": plans.child_metadata(resource, name, COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": pods.selector(dep),
            "ports": [{"name": "http", "port": dep.spec.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _hpa(resource: plans.Manifest, dep: api.Deployment, name: str) -> plans.Manifest:
    scaling = dep.spec.autoscaling
    target = {"type": "Utilization", "averageUtilization": scaling.target_cpu_utilization}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": plans.child_metadata(resource, name, COMPONENT),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}],
        },
    }


def _pdb(resource: plans.Manifest, dep: api.Deployment, name: str) -> plans.Manifest | None:
    wanted = pods.wanted_replicas(dep)
    if wanted < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": plans.child_metadata(resource, name, COMPONENT),
        "spec": {"minAvailable": wanted - 1, "selector": {"matchLabels": pods.selector(dep)}},
    }
