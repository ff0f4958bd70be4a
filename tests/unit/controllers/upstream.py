"""Checks of rendered PyTorchJobs against the real upstream definitions, shared by the tests.

Three independent sources, none written by us:
- the Training Operator v1.9.4 CRD schema (tests/upstream/kubeflow.org_pytorchjobs.yaml, vendored
  byte for byte with its provenance in tests/upstream/README.md, so a clone stands alone),
- the operator's validating-webhook rules the schema does not express (listed in its README),
- the kubeflow-training 1.9.4 SDK's typed models (every field name and type must exist there),
plus the official Kubernetes 1.30 schemas (kubernetes-validate, strict) for core objects.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[3]
CRD = REPO / "tests" / "upstream" / "kubeflow.org_pytorchjobs.yaml"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
K8S_VERSION = "1.30"


@functools.cache
def _crd_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(CRD.read_text())
    return jsonschema.Draft7Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def schema_errors(job: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in _crd_validator().iter_errors(job)]


def webhook_errors(job: dict[str, Any]) -> list[str]:
    """The Training Operator v1 validating webhook (pkg/webhooks/pytorch/pytorchjob_webhook.go)."""
    errors = []
    name = job["metadata"]["name"]
    if not DNS_1035.match(name) or len(name) > 63:
        errors.append(f"name {name!r} is not a DNS-1035 label")
    specs = job["spec"]["pytorchReplicaSpecs"]
    if set(specs) - {"Master", "Worker"}:
        errors.append(f"replica types {sorted(specs)}: only Master and Worker")
    if specs.get("Master", {}).get("replicas") != 1:
        errors.append("Master.replicas must be set to 1")
    if "Worker" in specs and specs["Worker"].get("replicas", 1) < 1:
        errors.append("Worker.replicas must be >= 1")
    for rtype, spec in specs.items():
        containers = spec["template"]["spec"].get("containers") or []
        if not containers:
            errors.append(f"{rtype}: no containers")
        if any(not c.get("image") for c in containers):
            errors.append(f"{rtype}: a container without image")
        if not any(c.get("name") == "pytorch" for c in containers):
            errors.append(f"{rtype}: no container named pytorch")
    if job["spec"].get("elasticPolicy") is not None and "Worker" not in specs:
        errors.append("elasticPolicy needs a Worker")
    return errors


class _Response:
    def __init__(self, obj: dict[str, Any]) -> None:
        self.data = json.dumps(obj)


def sdk_round_trip(job: dict[str, Any]) -> dict[str, Any]:
    """Deserialize into KubeflowOrgV1PyTorchJob and serialize back: unknown keys are dropped and
    mistyped values coerced, so equality with the input proves every field exists upstream."""
    from kubeflow.training import ApiClient, models

    client = ApiClient()
    typed = client.deserialize(_Response(job), "KubeflowOrgV1PyTorchJob")
    assert isinstance(typed, models.KubeflowOrgV1PyTorchJob)
    out: dict[str, Any] = client.sanitize_for_serialization(typed)
    return out


def validate_core(obj: dict[str, Any]) -> None:
    """Official Kubernetes schema, strict (unknown fields rejected); raises on a problem."""
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def template_as_pod(job: dict[str, Any], rtype: str) -> dict[str, Any]:
    template = copy.deepcopy(job["spec"]["pytorchReplicaSpecs"][rtype]["template"])
    meta = {"name": f"{job['metadata']['name']}-{rtype.lower()}-0", **template.get("metadata", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}


def assert_upstream_valid(job: dict[str, Any]) -> None:
    assert schema_errors(job) == []
    assert webhook_errors(job) == []
    assert sdk_round_trip(job) == job
    validate_core(template_as_pod(job, "Master"))


def trainingrun(name: str = "iris", namespace: str = "ml", **spec: Any) -> dict[str, Any]:
    """A TrainingRun manifest as the API server would hand it to the operator."""
    body: dict[str, Any] = {
        "data": {"repo": "https://example.com/data.git", "path": "data/iris.csv"},
        "model": {"task": "classification", "target": "species"},
    }
    body.update(spec)
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": namespace, "uid": "uid-1", "generation": 1},
        "spec": body,
    }
