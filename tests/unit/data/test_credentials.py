"""Credential loading and redaction (pure; no DVC)."""

from __future__ import annotations

import logging
from pathlib import Path

from flywheel.data import credentials

SECRET = "s3cr3t/Value+with=chars"


def test_env_and_secret_dir_are_merged_and_mapped_to_remote_options(tmp_path: Path) -> None:
    (tmp_path / "AWS_SECRET_ACCESS_KEY").write_text(SECRET + "\n")
    (tmp_path / "..data").mkdir()  # Kubernetes' bookkeeping entries are skipped
    (tmp_path / "UNRELATED").write_text("x")
    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_ENDPOINT_URL": "http://minio:9000", "HOME": "/root"}
    creds = credentials.load(env, secret_dir=tmp_path)
    assert creds.remote_config("s3://bucket/data") == {
        "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": SECRET,
        "endpointurl": "http://minio:9000",
    }
    assert SECRET not in repr(creds)


def test_secret_dir_comes_from_env_when_not_given(tmp_path: Path) -> None:
    (tmp_path / "DVC_REMOTE_PASSWORD").write_text("hunter22")
    creds = credentials.load({credentials.SECRET_DIR_ENV: str(tmp_path)})
    assert creds.remote_config("ssh://host/dvc") == {"password": "hunter22"}
    assert credentials.load({"AWS_SECRET_ACCESS_KEY": "x" * 8}).remote_config("/srv/remote") == {}


def test_redact_hides_values_their_url_encodings_and_url_userinfo() -> None:
    creds = credentials.Credentials({"GIT_PASSWORD": SECRET, "AWS_ENDPOINT_URL": "http://minio:9000"})
    url = creds.git_url("https://github.com/org/data.git")
    assert "s3cr3t" in url  # the token does reach git
    text = f"clone {url} failed; raw {SECRET}; endpoint http://minio:9000; other https://u:p@host/x"
    red = creds.redact(text)
    assert "s3cr3t" not in red and "u:p@" not in red
    assert "http://minio:9000" in red  # an endpoint is not a secret and helps debugging


def test_redacting_logs_rewrites_records_and_drops_raw_tracebacks(caplog) -> None:  # type: ignore[no-untyped-def]
    creds = credentials.Credentials({"AWS_SECRET_ACCESS_KEY": SECRET})
    log = logging.getLogger("dvc.test")
    with caplog.at_level(logging.DEBUG), credentials.redacting_logs(creds):
        log.warning("auth with %s failed", SECRET)
        try:
            raise RuntimeError(f"denied for {SECRET}")
        except RuntimeError:
            log.exception("fetch failed")
    assert SECRET not in caplog.text
    assert "auth with *** failed" in caplog.text
    assert "RuntimeError: denied for ***" in caplog.text
    log.warning("after %s", SECRET)  # the factory is restored on exit
    assert SECRET in caplog.records[-1].getMessage()
