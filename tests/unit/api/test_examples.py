"""Every file in examples/ validates against its CRD schema (JSON schema and CEL) and the models."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from flywheel.api import crds, loading
from tests.unit.api import cel

ROOT = Path(__file__).resolve().parents[3]
# examples/*/ hold a whole loop each (e.g. custom-tabular: run with `flywheel run -f <folder>`).
EXAMPLES = sorted([*(ROOT / "examples").glob("*.yaml"), *(ROOT / "examples").glob("*/*.yaml")])
EXAMPLES = [p for p in EXAMPLES if p.name != "kustomization.yaml"]  # kustomize's, not a resource


def test_there_is_an_example_per_kind_and_rdma_trainingruns():
    kinds = {doc["kind"] for path in EXAMPLES for doc in loading.read_documents(path)}
    assert kinds == {"TrainingRun", "SelfPlayRun", "Deployment", "DriftMonitor"}
    rdma = [
        doc
        for path in EXAMPLES
        for doc in loading.read_documents(path)
        if doc["kind"] == "TrainingRun" and doc["spec"].get("networking", {}).get("rdma", {}).get("enabled")
    ]
    assert {d["spec"]["networking"]["rdma"]["mode"] for d in rdma} == {"infiniband", "roce"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT / "examples")) for p in EXAMPLES])
def test_example_validates(path):
    for doc in loading.read_documents(path):
        schema = crds.openapi_schema(doc["kind"])
        jsonschema.Draft4Validator(schema).validate(doc)
        assert cel.failures(schema, cel.defaulted(schema, doc)) == []
        resource = loading.parse(doc, str(path))
        # The SDK round-trip: the manifest the model writes is itself valid.
        again = loading.parse(resource.to_manifest(), str(path))
        assert again.to_manifest() == resource.to_manifest()
