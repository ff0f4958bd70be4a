"""A real S3 API for the s3:// artifact tests: moto's standalone server (an S3 emulator, not AWS or
MinIO) started once per session as a subprocess on a free loopback port and spoken to over real
HTTP by s3fs/aiobotocore, exactly as the workloads speak to MinIO on kind. The environment is what
a pod gets from the credentials Secret: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL.
Each test gets its own bucket."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

_BUCKETS = itertools.count()


@dataclasses.dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str

    @property
    def root(self) -> str:
        return f"s3://{self.bucket}"

    def client(self):  # type: ignore[no-untyped-def]
        """A plain boto3 client: another process's view of the same store."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clear_s3fs_instances() -> None:
    """fsspec reuses one S3FileSystem per arguments, not per environment: start from none."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if exe is None:
        pytest.fail("moto_server is not installed: pip install 'moto[server]' (the dev extra has it)")
    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto_server did not start (exit {proc.poll()}); see {log.name}")
            time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    """A fresh, empty bucket on the emulator, and the environment a pod gets from the credentials
    Secret (for this test only: other tests in the session never see it)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "flywheel-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "flywheel-test-secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)  # not the ~/.aws of whoever runs the tests
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    _clear_s3fs_instances()
    bucket = f"flywheel-test-{next(_BUCKETS)}"
    store = S3(moto_endpoint, bucket)
    store.client().create_bucket(Bucket=bucket)
    yield store
    _clear_s3fs_instances()
