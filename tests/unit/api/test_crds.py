"""crds/ is generated from the models, passes the official Kubernetes schema, and is structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from flywheel import api
from flywheel.api import crds

ROOT = Path(__file__).resolve().parents[3]


def test_crds_dir_matches_the_models():
    generated = crds.render_all()
    on_disk = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert on_disk == generated, "crds/ is stale: run `make crds`"


@pytest.mark.parametrize("kind", sorted(api.KINDS))
def test_crd_passes_strict_kubernetes_validation(kind):
    kubernetes_validate.validate(crds.crd(kind), "1.30", strict=True)


def _walk(node: Any, path: str = "$"):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


@pytest.mark.parametrize("kind", sorted(api.KINDS))
def test_schema_is_structural(kind):
    schema = crds.openapi_schema(kind)
    for path, node in _walk(schema):
        if path.endswith(".properties") or path.endswith("x-kubernetes-validations"):
            continue
        assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
        if "properties" in node or "items" in node or "additionalProperties" in node:
            assert "type" in node, f"{path} has no type"
        if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(
            node.get("exclusiveMinimum"), bool
        ):
            pytest.fail(f"{path}: exclusiveMinimum must be boolean in OpenAPI v3.0")


@pytest.mark.parametrize("kind", sorted(api.KINDS))
def test_crd_has_printer_columns_shortnames_category_and_status(kind):
    version = crds.crd(kind)["spec"]["versions"][0]
    names = crds.crd(kind)["spec"]["names"]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:2] == ["Ready", "Phase"] and columns[-1] == "Age"
    assert names["shortNames"] and names["categories"] == ["flywheel"]
    assert version["subresources"] == {"status": {}}
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_descriptions_come_from_docstrings():
    spec = crds.openapi_schema("TrainingRun")["properties"]["spec"]
    rdma = spec["properties"]["networking"]["properties"]["rdma"]
    assert "NCCL" in rdma["description"]
    assert rdma["properties"]["gidIndex"]["description"].startswith("RoCE GID index")


def test_deployment_kind_is_disambiguated_by_shortname():
    names = crds.crd("Deployment")["spec"]["names"]
    assert names["plural"] == "deployments" and "mdep" in names["shortNames"]
    assert yaml.safe_load(crds.render_all()["flywheel.dev_deployments.yaml"])["metadata"]["name"] == (
        "deployments.flywheel.dev"
    )


@pytest.mark.parametrize("kind", crds.RUN_KINDS)
def test_run_spec_is_refused_once_running_or_succeeded(kind):
    """The root transition rule, evaluated with cel-python as the API server would on an update
    (self = the new object, oldSelf = the stored one; not evaluated on create)."""
    import celpy

    [rule] = crds.openapi_schema(kind)["x-kubernetes-validations"]
    env = celpy.Environment()
    program = env.program(env.compile(rule["rule"]))

    def allowed(old: dict[str, Any], new: dict[str, Any]) -> bool:
        names = {"self": celpy.json_to_cel(new), "oldSelf": celpy.json_to_cel(old)}
        return bool(program.evaluate(names))

    spec = {"training": {"epochs": 3}}
    edited = {"spec": {"training": {"epochs": 50}}}
    for phase in ("Running", "Succeeded"):
        stored = {"spec": spec, "status": {"phase": phase}}
        assert not allowed(stored, edited)
        assert allowed(stored, {"spec": spec, "status": {"phase": phase, "message": "a status write"}})
    for stored in ({"spec": spec}, {"spec": spec, "status": {}}, {"spec": spec, "status": {"phase": "Pending"}},
                   {"spec": spec, "status": {"phase": "Failed"}}):  # fmt: skip
        assert allowed(stored, edited), stored
    assert "create a new run" in rule["message"]
