"""CRDs generated from the pydantic models, so the schema the API server enforces and the one the
SDK and the operators use cannot drift apart (a test compares crds/ with this output).

Pydantic emits JSON Schema (2020-12 flavour); Kubernetes wants a structural OpenAPI v3.0 subset:
no $ref, no anyOf-with-null, no titles, boolean exclusive bounds, and Kubernetes extensions for
free-form maps, list semantics and CEL rules.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import yaml

from flywheel.api import KINDS, common

Schema = dict[str, Any]

CATEGORY = "flywheel"

READY_COLUMN = {
    "name": "Ready",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
}
PHASE_COLUMN = {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}
AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KEY_COLUMNS: dict[str, list[dict[str, str]]] = {
    "TrainingRun": [
        {"name": "Job", "type": "string", "jsonPath": ".status.jobName"},
        {"name": "Model", "type": "string", "jsonPath": ".status.model.version"},
    ],
    "SelfPlayRun": [
        {"name": "Step", "type": "integer", "jsonPath": ".status.step"},
        {"name": "Job", "type": "string", "jsonPath": ".status.jobName"},
    ],
    "Deployment": [
        {"name": "Champion", "type": "string", "jsonPath": ".status.championVersion"},
        {"name": "Challenger", "type": "string", "jsonPath": ".status.challengerVersion"},
        {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint", "priority": 1},  # type: ignore[dict-item]
    ],
    "DriftMonitor": [
        {"name": "Deployment", "type": "string", "jsonPath": ".spec.deploymentRef"},
        {"name": "Drift", "type": "number", "jsonPath": ".status.datasetDriftShare"},
        {"name": "Decision", "type": "string", "jsonPath": ".status.lastDecision.decision"},
    ],
}


def to_structural(node: Any, defs: dict[str, Schema], *, in_status: bool = False) -> Any:
    """Turn one pydantic JSON-schema node into a structural OpenAPI v3 node."""
    if isinstance(node, list):
        return [to_structural(n, defs, in_status=in_status) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return to_structural(merged, defs, in_status=in_status)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            optional = rest.get("default", ...) is None
            if optional:
                rest.pop("default")
            single = to_structural({**options[0], **rest}, defs, in_status=in_status)
            if optional:  # null by default: absent stays absent (no `default: {}` from the parent)
                single[_OPTIONAL] = True
            return single
    out: Schema = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "properties":
            out["properties"] = {k: to_structural(v, defs, in_status=in_status) for k, v in value.items()}
        elif key == "additionalProperties":
            if value is False:
                continue  # structural schemas prune unknown fields; validate rejects them
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out["additionalProperties"] = to_structural(value, defs, in_status=in_status)
        elif key == "items":
            out["items"] = to_structural(value, defs, in_status=in_status)
        elif key == "default" and in_status:
            continue
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("type") == "object" and "properties" in out:
        for name, prop in out["properties"].items():
            optional = prop.pop(_OPTIONAL, False)
            if _defaultable(prop) and not optional and name not in out.get("required", []) and not in_status:
                prop.setdefault("default", {})
    return out


_OPTIONAL = "x-flywheel-optional"  # a marker removed before output


def _defaultable(prop: Schema) -> bool:
    """An object property whose fields are all optional gets `default: {}`, so the API server fills
    in its nested defaults and CEL rules can rely on them being present."""
    return prop.get("type") == "object" and "properties" in prop and not prop.get("required")


RUN_KINDS = ("TrainingRun", "SelfPlayRun")
SPEC_FIXED_ONCE_STARTED = {
    # A transition rule at the root (only it sees both spec and status): once the status says the
    # job runs or succeeded, its pods and its result cannot take a new spec, so the edit is
    # refused at admission, as batch/v1 Job refuses template edits. Not for Pending (the job is
    # recreated from the new spec) nor Failed (which also means "invalid spec: fix it"). An edit
    # that slips in before the status says so is reported by the operator (condition
    # SpecDiverged, flywheel.controllers.jobstatus). Status writes keep the spec: they pass.
    "rule": "!has(oldSelf.status) || !has(oldSelf.status.phase) "
    "|| !(oldSelf.status.phase in ['Running', 'Succeeded']) || self.spec == oldSelf.spec",
    "message": "spec cannot change once the run is Running or Succeeded (its job keeps the spec it "
    "started with): create a new run with a new name, or delete this one and apply it again",
    "fieldPath": ".spec",
}


def openapi_schema(kind: str) -> Schema:
    """The openAPIV3Schema of one kind."""
    cls = KINDS[kind]
    raw = cls.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    spec = to_structural(raw["properties"]["spec"], defs)
    status = to_structural(raw["properties"]["status"], defs, in_status=True)
    status.pop("default", None)
    status.pop(_OPTIONAL, None)
    _condition_list_semantics(status)
    if kind == "SelfPlayRun":
        spec["properties"]["selfPlay"]["properties"]["taskTypes"]["x-kubernetes-list-type"] = "set"
    schema: Schema = {
        **({"x-kubernetes-validations": [SPEC_FIXED_ONCE_STARTED]} if kind in RUN_KINDS else {}),
        "type": "object",
        "description": (cls.__doc__ or "").strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return schema


def _condition_list_semantics(status: Schema) -> None:
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    conditions.pop("default", None)


def crd(kind: str) -> Schema:
    """The CustomResourceDefinition of one kind."""
    cls = KINDS[kind]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{cls.PLURAL}.{common.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "flywheel"},
        },
        "spec": {
            "group": common.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": cls.PLURAL,
                "singular": kind.lower(),
                "shortNames": list(cls.SHORT_NAMES),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": common.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema(kind)},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [READY_COLUMN, PHASE_COLUMN, *KEY_COLUMNS[kind], AGE_COLUMN],
                }
            ],
        },
    }


def file_name(kind: str) -> str:
    return f"{common.GROUP}_{KINDS[kind].PLURAL}.yaml"


def render_all() -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    header = "# Generated by `flywheel crds` from flywheel.api; do not edit by hand.\n"
    return {
        file_name(kind): header + yaml.safe_dump(crd(kind), sort_keys=False, width=100)
        for kind in sorted(KINDS)
    }


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = out / name
        path.write_text(text)
        written.append(path)
    return written


def cli(args: argparse.Namespace) -> int:
    for path in write(Path(args.out)):
        print(path)
    return 0
