"""Checks of rendered TrainJobs and training runtimes against the Kubeflow Trainer v2.3.0 definitions.

Sources, none written by us: the TrainJob and ClusterTrainingRuntime CRDs and the stock
torch-distributed runtime (tests/upstream/trainer-v2.3.0/, vendored byte for byte, provenance and
SHA-256 in tests/upstream/README.md), the CEL rules those CRDs carry (re-stated here: a JSON-Schema
validator ignores `x-kubernetes-validations`), and the official Kubernetes schemas for the pod a
runtime plus a TrainJob make (kubernetes-validate, strict).

The pod check stands in for the Trainer controller, which cannot run here: it lays the TrainJob's
trainer fields and runtime patch over the runtime's pod template the way v2.3 documents (trainer
image/command/env/resources into container `node`; the patch's containers by name, its volumes,
pod securityContext, placement and metadata onto the pod) and validates the result as a Pod.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.unit.controllers import upstream

DIR = upstream.REPO / "tests" / "upstream" / "trainer-v2.3.0"
TRAINJOB_CRD = DIR / "trainer.kubeflow.org_trainjobs.yaml"
RUNTIME_CRD = DIR / "trainer.kubeflow.org_clustertrainingruntimes.yaml"
STOCK_RUNTIME = DIR / "torch-distributed.runtime.helm-template.yaml"
RESERVED_ENV = {"node", "dataset-initializer", "model-initializer"}


@functools.cache
def _validator(path: Path) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(path.read_text())
    return jsonschema.Draft7Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _errors(path: Path, obj: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(path).iter_errors(obj)]


def trainjob_errors(job: dict[str, Any]) -> list[str]:
    """The TrainJob CRD's schema plus its CEL rules and the webhook's env rule."""
    errors = _errors(TRAINJOB_CRD, job)
    name = job["metadata"]["name"]
    if not upstream.DNS_1035.match(name) or len(name) > 63:
        errors.append(f"metadata.name {name!r}: not an RFC 1035 label of at most 63 characters")
    patches = job["spec"].get("runtimePatches") or []
    managers = [p.get("manager") for p in patches]
    if len(set(managers)) != len(managers):
        errors.append(f"runtimePatches: managers {managers} are a list-map key and must be unique")
    for patch in patches:
        for container in pod_patch_containers(patch):
            if container["name"] in RESERVED_ENV and container.get("env"):
                errors.append(f"runtimePatches: env of container {container['name']} goes in spec.trainer")
    return errors


def runtime_errors(runtime: dict[str, Any]) -> list[str]:
    """The ClusterTrainingRuntime CRD's schema plus its one-ML-policy CEL rule."""
    errors = _errors(RUNTIME_CRD, runtime)
    policies = [
        k for k in ("torch", "mpi", "jax", "xgboost", "flux") if k in runtime["spec"].get("mlPolicy", {})
    ]
    if len(policies) > 1:
        errors.append(f"mlPolicy: only one of {policies}")
    return errors


def stock_runtime() -> dict[str, Any]:
    """Trainer's torch-distributed runtime: its Helm template without the template lines (labels)."""
    lines = [line for line in STOCK_RUNTIME.read_text().splitlines() if "{{" not in line]
    runtime: dict[str, Any] = yaml.safe_load("\n".join(lines))
    return runtime


def pod_patch_containers(patch: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for rjob in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
        out.extend(rjob["template"]["spec"]["template"]["spec"].get("containers") or [])
    return out


def trainer_pod(job: dict[str, Any], runtime: dict[str, Any], rjob_name: str = "node") -> dict[str, Any]:
    """The pod of replicated job `rjob_name` that `runtime` plus `job` make (see the module doc)."""
    assert job["spec"]["runtimeRef"]["name"] == runtime["metadata"]["name"]
    rjobs = {r["name"]: r for r in runtime["spec"]["template"]["spec"]["replicatedJobs"]}
    template = copy.deepcopy(rjobs[rjob_name]["template"]["spec"]["template"])
    spec = template["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    trainer = job["spec"]["trainer"]
    node = containers["node"]
    for key, field in (
        ("image", "image"),
        ("command", "command"),
        ("args", "args"),
        ("resourcesPerNode", "resources"),
    ):
        if key in trainer:
            node[field] = trainer[key]
    node["env"] = [*(node.get("env") or []), *(trainer.get("env") or [])]
    meta = template.setdefault("metadata", {})
    for patch in job["spec"].get("runtimePatches") or []:
        for prj in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
            if prj["name"] != rjob_name:
                continue
            pod = prj["template"]["spec"]["template"]
            for key in ("labels", "annotations"):
                meta.setdefault(key, {}).update((pod.get("metadata") or {}).get(key) or {})
            for key, value in pod["spec"].items():
                if key == "containers":
                    for c in value:
                        assert c["name"] in containers, f"runtime has no container {c['name']}"
                        target = containers[c["name"]]
                        target["volumeMounts"] = [
                            *(target.get("volumeMounts") or []),
                            *(c.get("volumeMounts") or []),
                        ]
                        if "securityContext" in c:
                            target["securityContext"] = c["securityContext"]
                elif key in ("volumes", "tolerations"):
                    spec[key] = [*(spec.get(key) or []), *value]
                else:
                    spec[key] = value
    meta["name"] = f"{job['metadata']['name']}-{rjob_name}-0-0-abcde"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def assert_valid(job: dict[str, Any], runtime: dict[str, Any]) -> dict[str, Any]:
    """The TrainJob, the runtime it references and the pod they make are all valid; the pod."""
    assert trainjob_errors(job) == []
    assert runtime_errors(runtime) == []
    ref = job["spec"]["runtimeRef"]
    assert (ref["apiGroup"], ref["kind"]) == ("trainer.kubeflow.org", runtime["kind"])
    pod = trainer_pod(job, runtime)
    upstream.validate_core(pod)
    return pod


def cond(
    type_: str, status: str = "True", message: str = "", at: str = "2026-12-07T20:00:00Z"
) -> dict[str, Any]:
    """A TrainJob status condition as Trainer v2 writes it (reason = type)."""
    return {"type": type_, "status": status, "reason": type_, "message": message, "lastTransitionTime": at}


def jobs_status(active: int = 0, ready: int = 0, succeeded: int = 0, failed: int = 0) -> list[dict[str, Any]]:
    """A TrainJob's status.jobsStatus for its one replicated job, `node`."""
    return [
        {
            "name": "node",
            "active": active,
            "ready": ready,
            "succeeded": succeeded,
            "failed": failed,
            "suspended": 0,
        }
    ]
