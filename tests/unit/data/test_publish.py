"""The DVC config the in-cluster publisher commits for an s3 remote (the kind MinIO).

An s3 remote against MinIO cannot run here (no MinIO, no cluster), so this checks what is written
into git instead: the committed .dvc/config names the bucket and the in-cluster endpoint and holds
no credentials (the pod pushes with AWS_* env from a Secret; the trainer pod reads the same keys
through spec.data.credentialsSecret). The live push and fetch belong to a tests/e2e kind test.
"""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import pytest

from flywheel.data import examples, publish

URL = "s3://flywheel-dvc/shuttle"
ENDPOINT = "http://minio.flywheel-system.svc:9000"


def test_remote_options_carry_location_only() -> None:
    assert publish.remote_options(URL, ENDPOINT) == {"url": URL, "endpointurl": ENDPOINT}
    assert publish.remote_options(URL) == {"url": URL}
    assert publish.remote_options(None) is None
    with pytest.raises(ValueError, match="--remote-url"):
        publish.remote_options(None, ENDPOINT)


def test_committed_dvc_config_names_bucket_and_endpoint_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "flywheel")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "flywheel-dev-only")
    root = tmp_path / "repo"
    examples.init_repo(root, publish.remote_options(URL, ENDPOINT))
    committed = subprocess.run(
        ["git", "show", "HEAD:.dvc/config"], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    conf = configparser.ConfigParser()
    conf.read_string(committed)
    assert conf["core"]["remote"] == "storage"
    assert dict(conf["'remote \"storage\"'"]) == {"url": URL, "endpointurl": ENDPOINT}
    assert "flywheel-dev-only" not in committed and "access_key" not in committed
    assert not (root / ".dvc" / "config.local").exists()


def test_cli_refuses_an_endpoint_without_a_remote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert publish.main([str(tmp_path), "--endpoint-url", ENDPOINT]) == 2
    assert "--remote-url" in capsys.readouterr().err
    assert not (tmp_path / publish.PUBLIC).exists()
