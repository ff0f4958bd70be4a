"""The vendored Trainer v2.3.0 files are the copies recorded in tests/upstream/README.md, byte for byte."""

from __future__ import annotations

import hashlib

import pytest

from tests.unit.controllers import upstream_trainjob as v2

SHA256 = {
    "trainer.kubeflow.org_trainjobs.yaml": "a742cafc5b5582640c7e0b7467c024fc237256fbca5ba0a9f0531dfb66d64416",
    "trainer.kubeflow.org_clustertrainingruntimes.yaml": "ec84dc3388fcdbe8c61d3c247a773d14458dd9438e995bea8e50d2a18080eef9",
    "torch-distributed.runtime.helm-template.yaml": "996f8ec7e94e631d68bdcd96328c009304a21bdc5b7181c15cd3b817a52d5cde",
}


@pytest.mark.parametrize("name", sorted(SHA256))
def test_vendored_file_is_the_recorded_one(name: str) -> None:
    assert hashlib.sha256((v2.DIR / name).read_bytes()).hexdigest() == SHA256[name]
    assert SHA256[name] in (v2.DIR.parent / "README.md").read_text()
