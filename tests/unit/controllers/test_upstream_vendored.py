"""The vendored upstream PyTorchJob CRD is the published file, byte for byte (tests/upstream/README.md)."""

from __future__ import annotations

import hashlib

from tests.unit.controllers import upstream

PUBLISHED_SHA256 = (
    "8b8a8a719cc94173169290251e817f7ac2bb425c20b6c2fa813397bcf4e932ed"  # v1.9.4, per the README
)


def test_vendored_crd_is_the_published_v1_9_4_file() -> None:
    assert hashlib.sha256(upstream.CRD.read_bytes()).hexdigest() == PUBLISHED_SHA256
    assert PUBLISHED_SHA256 in (upstream.CRD.parent / "README.md").read_text()
