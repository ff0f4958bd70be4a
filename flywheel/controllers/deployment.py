"""Deployment reconciler (deployments.flywheel.dev): a BentoML server per Deployment, pure.

Children (all named <name>-serving, owned by the Deployment): a ConfigMap with the serving config
(flywheel.serving.config reads it), an apps/v1 Deployment running `bentoml serve
flywheel.serving.service:FlywheelService`, a Service, an HPA (autoscaling.enabled) and a PDB.

- Models: a ModelRef with `uri` is used as is; `fromTrainingRun` reads the run's status.model
  (the directory of its card). Until the champion's run has Succeeded nothing is rendered: Ready is
  Unknown and the plan requeues ("not yet"). A challenger whose run is not done yet is left out
  (ChallengerReady=Unknown) and the champion serves alone until it is.
- Rollouts: the pod template carries a hash of the serving config and image, so a new champion
  (promotion) rolls the pods; maxUnavailable 0 / maxSurge 1 keeps every wanted replica ready during
  the roll, and readiness is BentoML's /readyz, true only once the models are loaded.
- PDB: minAvailable = wanted - 1, rendered only for 2+ wanted replicas. Rollouts are already held
  by maxUnavailable 0; the PDB bounds voluntary evictions (drains) to one pod at a time. A PDB
  demanding every replica (or the only one) would block node drains forever.
- Status: endpoint, replicas, readyReplicas, champion/challenger URIs and versions, conditions
  Ready / ChampionReady / ChallengerReady, and rollbackTarget (the previous champion URI) once the
  champion changes.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pydantic

from flywheel.api import common, conditions, contract, loading
from flywheel.api import deployment as api
from flywheel.api import trainingrun as tr_api
from flywheel.controllers import plans, podspec, settings

COMPONENT = "serving"
R_WAITING_MODEL = "WaitingForModel"
R_MODEL_FAILED = "ModelUnavailable"
R_ROLLING_OUT = "RollingOut"
R_AVAILABLE = "Available"
R_NO_CHALLENGER = "NotConfigured"
R_CHAMPION_CHANGED = "ChampionChanged"
REQUEUE_WAITING = 15.0
REQUEUE_ROLLING = 10.0
TRAINING_RUN_API = common.API_VERSION
Model = tuple[str, bool, str | None]  # directory URI, quantized, version


def child(name: str) -> str:
    return plans.child_name(name, COMPONENT)


def _ns(resource: plans.Manifest) -> str:
    return str(resource["metadata"].get("namespace") or "default")


def observe_refs(resource: plans.Manifest, settings: settings.Settings) -> list[plans.Ref]:
    """The four children, the config, and the TrainingRuns that the models come from."""
    ns, name = _ns(resource), child(resource["metadata"]["name"])
    refs = [
        plans.Ref("v1", "ConfigMap", name, ns),
        plans.Ref("apps/v1", "Deployment", name, ns),
        plans.Ref("v1", "Service", name, ns),
        plans.Ref("autoscaling/v2", "HorizontalPodAutoscaler", name, ns),
        plans.Ref("policy/v1", "PodDisruptionBudget", name, ns),
    ]
    spec = resource.get("spec") or {}
    for role in ("champion", "challenger"):
        run = (spec.get(role) or {}).get("fromTrainingRun")
        if run:
            refs.append(plans.Ref(TRAINING_RUN_API, tr_api.TrainingRun.KIND, run, ns))
    return refs


def resolve(ref: api.ModelRef, observed: plans.Observed) -> tuple[Model | None, str | None, bool]:
    """(model, why not, failed): a model from a URI or from a Succeeded TrainingRun's status."""
    if ref.uri is not None:
        return (ref.uri, ref.quantized, None), None, False
    run = observed.get(tr_api.TrainingRun.KIND, str(ref.from_training_run))
    if run is None:
        return None, f"TrainingRun {ref.from_training_run} does not exist yet", False
    status = run.get("status") or {}
    model = status.get("model") or {}
    card = model.get("cardUri") or model.get("quantizedUri") or model.get("fp32Uri")
    if status.get("phase") == conditions.FAILED:
        return None, f"TrainingRun {ref.from_training_run} failed: {status.get('message', '')}", True
    if status.get("phase") != conditions.SUCCEEDED or not card:
        return None, f"TrainingRun {ref.from_training_run} has not succeeded yet", False
    quantized = ref.quantized and bool(model.get("quantizedUri"))
    return (str(card).rsplit("/", 1)[0], quantized, model.get("version")), None, False


def serving_config(
    resource: plans.Manifest, dep: api.Deployment, champion: Model, challenger: Model | None
) -> dict[str, Any]:
    """The JSON flywheel.serving.config.ServingConfig reads (ENV_SERVING_CONFIG)."""
    spec = dep.spec
    logging = spec.logging.to_dict()
    logging.setdefault("sink", "/".join([spec.artifacts.uri.rstrip("/"), contract.TRAFFIC_DIR, dep.name]))
    out: dict[str, Any] = {
        "name": dep.name,
        "namespace": dep.namespace,
        "champion": {"uri": champion[0], "quantized": champion[1]},
        "traffic": spec.traffic.to_dict(),
        "batching": spec.batching.to_dict(),
        "logging": logging,
        "artifactsUri": spec.artifacts.uri,
        "workers": spec.resources.workers,
    }
    if challenger is not None:
        out["challenger"] = {"uri": challenger[0], "quantized": challenger[1]}
    else:  # serving alone until the challenger exists: no traffic may go to it
        out["traffic"] = {**out["traffic"], "challengerPercent": 0}
    return out


def render_children(resource: plans.Manifest, settings: settings.Settings) -> list[plans.Manifest]:
    """The children for review (`flywheel render`): fromTrainingRun models appear as placeholders."""
    dep = plans.validate_spec(api.Deployment, resource)
    champion = _placeholder(dep.spec.champion)
    challenger = _placeholder(dep.spec.challenger) if dep.spec.challenger else None
    return _children(resource, dep, champion, challenger, settings)


def _placeholder(ref: api.ModelRef) -> Model:
    if ref.uri is not None:
        return ref.uri, ref.quantized, None
    return f"<status.model of TrainingRun {ref.from_training_run}>", ref.quantized, None


def _children(
    resource: plans.Manifest,
    dep: api.Deployment,
    champion: Model,
    challenger: Model | None,
    settings: settings.Settings,
) -> list[plans.Manifest]:
    config = serving_config(resource, dep, champion, challenger)
    name = child(dep.name)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": plans.child_metadata(resource, name, COMPONENT),
        "data": {contract.CONFIG_FILE: json.dumps(config, sort_keys=True, indent=2)},
    }
    out = [
        config_map,
        _deployment(resource, dep, config, champion, challenger, settings),
        _service(resource, dep),
    ]
    if dep.spec.autoscaling.enabled:
        out.append(_hpa(resource, dep))
    if (pdb := _pdb(resource, dep)) is not None:
        out.append(pdb)
    return out


def _selector(dep: api.Deployment) -> dict[str, str]:
    return {
        contract.LABEL_INSTANCE: dep.name,
        contract.LABEL_COMPONENT: COMPONENT,
        contract.LABEL_OWNER_KIND: api.Deployment.KIND,
    }


def wanted_replicas(dep: api.Deployment) -> int:
    return dep.spec.autoscaling.min_replicas if dep.spec.autoscaling.enabled else dep.spec.replicas


def _deployment(
    resource: plans.Manifest,
    dep: api.Deployment,
    config: dict[str, Any],
    champion: Model,
    challenger: Model | None,
    settings: settings.Settings,
) -> plans.Manifest:
    spec = dep.spec
    image = spec.resources.image or settings.serving_image
    volumes, mounts, secrets = podspec.artifact_storage(spec.artifacts)
    env = [
        {"name": contract.ENV_SERVING_CONFIG, "value": contract.CONFIG_PATH},
        {"name": contract.ENV_CHAMPION_URI, "value": champion[0]},
        {"name": contract.ENV_RUN_NAME, "value": dep.name},
        {"name": contract.ENV_NAMESPACE, "value": dep.namespace},
        {"name": "HOME", "value": contract.WORK_DIR},
        {"name": "BENTOML_HOME", "value": f"{contract.WORK_DIR}/bentoml"},
        {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
    ]
    if challenger is not None:
        env.insert(2, {"name": contract.ENV_CHALLENGER_URI, "value": challenger[0]})
    probe = {
        "httpGet": {"path": "/readyz", "port": "http"},
        "periodSeconds": 5,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    container: dict[str, Any] = {
        "name": COMPONENT,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [
            "bentoml",
            "serve",
            contract.SERVING_SERVICE,
            "--host",
            "0.0.0.0",  # noqa: S104 - a pod serves on its pod IP; the Service is the boundary
            "--port",
            str(spec.port),
        ],
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
    if secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in secrets]
    labels = {**plans.labels(api.Deployment.KIND, dep.name, COMPONENT), contract.LABEL_ROLE: "champion"}
    config_hash = plans.config_hash({"config": config, "image": image})
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": podspec.pod_security_context(),
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": child(dep.name)}},
            {"name": "work", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
            *volumes,
        ],
    }
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    body: dict[str, Any] = {
        "selector": {"matchLabels": _selector(dep)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": labels, "annotations": {contract.ANNOTATION_CONFIG_HASH: config_hash}},
            "spec": pod_spec,
        },
    }
    if not spec.autoscaling.enabled:  # with an HPA, the HPA owns .spec.replicas
        body = {"replicas": spec.replicas, **body}
    meta = plans.child_metadata(resource, child(dep.name), COMPONENT)
    meta["annotations"] = {contract.ANNOTATION_CONFIG_HASH: config_hash}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": body}


def _service(resource: plans.Manifest, dep: api.Deployment) -> plans.Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": plans.child_metadata(resource, child(dep.name), COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(dep),
            "ports": [{"name": "http", "port": dep.spec.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _hpa(resource: plans.Manifest, dep: api.Deployment) -> plans.Manifest:
    scaling = dep.spec.autoscaling
    target = {"type": "Utilization", "averageUtilization": scaling.target_cpu_utilization}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": plans.child_metadata(resource, child(dep.name), COMPONENT),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": child(dep.name)},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}],
        },
    }


def _pdb(resource: plans.Manifest, dep: api.Deployment) -> plans.Manifest | None:
    wanted = wanted_replicas(dep)
    if wanted < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": plans.child_metadata(resource, child(dep.name), COMPONENT),
        "spec": {"minAvailable": wanted - 1, "selector": {"matchLabels": _selector(dep)}},
    }


# --- plan ---------------------------------------------------------------------------------------
def plan(
    resource: plans.Manifest, observed: plans.Observed, now: datetime.datetime, settings: settings.Settings
) -> plans.Plan:
    """Children, status and events for a Deployment from what was observed (pure, idempotent)."""
    current: dict[str, Any] = resource.get("status") or {}
    try:
        dep = plans.validate_spec(api.Deployment, resource)
    except pydantic.ValidationError as exc:
        return _invalid(resource, current, exc, now)
    champion, why, failed = resolve(dep.spec.champion, observed)
    rows: list[tuple[str, str, str, str]] = []
    fields: dict[str, Any] = {}
    if champion is None:
        state = "False" if failed else "Unknown"
        reason = R_MODEL_FAILED if failed else R_WAITING_MODEL
        rows = [
            (conditions.READY, state, reason, f"champion: {why}"),
            (conditions.CHAMPION_READY, state, reason, str(why)),
        ]
        rows.append(_challenger_row(dep, observed, None))
        out = _finish(resource, current, now, rows, conditions.PENDING, fields)
        out.requeue_after = REQUEUE_WAITING
        return out
    challenger = None
    if dep.spec.challenger is not None:
        challenger, _, _ = resolve(dep.spec.challenger, observed)
    children = _children(resource, dep, champion, challenger, settings)
    name = child(dep.name)
    live = observed.get("Deployment", name)
    rollout = _rollout(dep, live, children[1])
    ready = "True" if rollout[0] else "Unknown"
    rows = [
        (conditions.READY, ready, R_AVAILABLE if rollout[0] else R_ROLLING_OUT, rollout[1]),
        (
            conditions.CHAMPION_READY,
            ready,
            R_AVAILABLE if rollout[0] else R_ROLLING_OUT,
            f"serving {champion[0]}",
        ),
        _challenger_row(dep, observed, challenger if rollout[0] else None, rolling=not rollout[0]),
    ]
    live_status = (live or {}).get("status") or {}
    fields = {
        "endpoint": f"http://{name}.{dep.namespace}.svc:{dep.spec.port}",
        "replicas": live_status.get("replicas", 0),
        "readyReplicas": live_status.get("readyReplicas", 0),
        "championUri": champion[0],
        "championVersion": champion[2],
        "challengerUri": challenger[0] if challenger else None,
        "challengerVersion": challenger[2] if challenger else None,
        "rollbackTarget": current.get("rollbackTarget"),
    }
    events: list[plans.Event] = []
    previous = current.get("championUri")
    if previous and previous != champion[0]:
        fields["rollbackTarget"] = previous
        events.append(plans.Event(R_CHAMPION_CHANGED, f"champion {previous} -> {champion[0]}; rolling pods"))
    out = _finish(
        resource, current, now, rows, conditions.RUNNING if rollout[0] else conditions.PENDING, fields
    )
    out.apply = children
    out.delete = _stale(dep, observed, name)
    out.events = events + out.events
    waiting = dep.spec.challenger is not None and challenger is None
    out.requeue_after = (
        None if rollout[0] and not waiting else (REQUEUE_WAITING if waiting else REQUEUE_ROLLING)
    )
    return out


def _rollout(dep: api.Deployment, live: plans.Manifest | None, desired: plans.Manifest) -> tuple[bool, str]:
    """(done, message): the live Deployment runs the desired template on every wanted replica."""
    wanted = wanted_replicas(dep)
    if live is None:
        return False, "creating the serving Deployment"
    meta, status = live.get("metadata") or {}, live.get("status") or {}
    want_hash = desired["metadata"]["annotations"][contract.ANNOTATION_CONFIG_HASH]
    if (meta.get("annotations") or {}).get(contract.ANNOTATION_CONFIG_HASH) != want_hash:
        return False, "rolling out a new serving config"
    generation = meta.get("generation")
    if generation is not None and status.get("observedGeneration", 0) < generation:
        return False, "waiting for the Deployment controller to see the new template"
    ready, updated = status.get("readyReplicas", 0), status.get("updatedReplicas", 0)
    if updated < wanted or ready < wanted or status.get("replicas", 0) > updated:
        return False, f"rolling out: {updated}/{wanted} updated, {ready}/{wanted} ready"
    return True, f"{ready}/{wanted} replicas ready"


def _challenger_row(
    dep: api.Deployment, observed: plans.Observed, challenger: Model | None, rolling: bool = False
) -> tuple[str, str, str, str]:
    ref = dep.spec.challenger
    if ref is None:
        return conditions.CHALLENGER_READY, "False", R_NO_CHALLENGER, "no challenger in spec"
    if challenger is not None:
        return (
            conditions.CHALLENGER_READY,
            "True",
            R_AVAILABLE,
            f"{dep.spec.traffic.mode} traffic to {challenger[0]}",
        )
    resolved, why, failed = resolve(ref, observed)
    if resolved is not None:  # resolvable but the pods do not serve it yet
        return conditions.CHALLENGER_READY, "Unknown", R_ROLLING_OUT, f"rolling out {resolved[0]}"
    return (
        conditions.CHALLENGER_READY,
        "False" if failed else "Unknown",
        R_MODEL_FAILED if failed else R_WAITING_MODEL,
        str(why),
    )


def _stale(dep: api.Deployment, observed: plans.Observed, name: str) -> list[plans.Manifest]:
    """Children the spec no longer wants (HPA after autoscaling is turned off, PDB below 2)."""
    out = []
    if not dep.spec.autoscaling.enabled and (hpa := observed.get("HorizontalPodAutoscaler", name)):
        out.append(hpa)
    if wanted_replicas(dep) < 2 and (pdb := observed.get("PodDisruptionBudget", name)):
        out.append(pdb)
    return [{k: m[k] for k in ("apiVersion", "kind", "metadata")} for m in out]


def _invalid(
    resource: plans.Manifest, current: dict[str, Any], exc: pydantic.ValidationError, now: datetime.datetime
) -> plans.Plan:
    where = f"{resource.get('kind')}/{resource['metadata'].get('name')}"
    problems = [line.removeprefix(f"{where}: ") for line in loading.error_lines(where, exc)]
    message = "; ".join(problems) + "; fix the field and re-apply"
    rows = [(conditions.READY, "False", conditions.R_INVALID_SPEC, message)]
    out = _finish(resource, current, now, rows, conditions.FAILED, {}, stalled=True)
    out.permanent_error = message
    return out


def _finish(
    resource: plans.Manifest,
    current: dict[str, Any],
    now: datetime.datetime,
    rows: list[tuple[str, str, str, str]],
    phase: str,
    fields: dict[str, Any],
    stalled: bool = False,
) -> plans.Plan:
    generation = resource["metadata"].get("generation")
    conds = list(current.get("conditions") or [])
    ready = rows[0]
    for type_, value, reason, message in rows:
        conds = plans.set_condition(conds, type_, value, reason, message, now, generation)
    message = ready[3]
    status = {
        "observedGeneration": generation,
        "phase": phase,
        "message": message,
        "conditions": conds,
        **fields,
    }
    out = plans.Plan(status={k: v for k, v in status.items() if v is not None})
    old = plans.get_condition(current.get("conditions"), conditions.READY) or {}
    if old.get("status") != ready[1] or old.get("reason") != ready[2]:
        kind = "Warning" if ready[1] == "False" or stalled else "Normal"
        out.events.append(plans.Event(ready[2], message, kind))
    return out
