"""Credentials for a DVC remote and a private git repository, and keeping them out of every output.

They come from the environment (a Kubernetes Secret mapped with envFrom) or from files in a mounted
Secret directory (one file per key, as Kubernetes mounts them). They are handed to DVC as remote
config and to git inside the clone URL, never written to disk, and every message that leaves the
data layer (exceptions, log records) is passed through `redact` first: libraries echo URLs and
configs in their errors, and a token in a TrainingRun's status or events is readable by anyone
who can `kubectl get` it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path

SECRET_DIR_ENV = "FLYWHEEL_DATA_SECRET_DIR"  # noqa: S105 - an env var name, not a secret
DEFAULT_SECRET_DIR = Path("/var/run/secrets/flywheel/data")
# Env name -> DVC remote option. The S3 names match what MinIO and AWS tooling already use.
REMOTE_OPTIONS = {
    "AWS_ACCESS_KEY_ID": "access_key_id",
    "AWS_SECRET_ACCESS_KEY": "secret_access_key",
    "AWS_SESSION_TOKEN": "session_token",
    "AWS_ENDPOINT_URL": "endpointurl",
    "AZURE_STORAGE_CONNECTION_STRING": "connection_string",
    "GOOGLE_APPLICATION_CREDENTIALS": "credentialpath",
}
_SCHEME_PREFIX = {"s3": "AWS_", "azure": "AZURE_", "gs": "GOOGLE_", "gcs": "GOOGLE_"}
REMOTE_PREFIX = "DVC_REMOTE_"  # DVC_REMOTE_<OPTION>=value for any other remote option
GIT_USERNAME = "GIT_USERNAME"
GIT_PASSWORD = "GIT_PASSWORD"  # noqa: S105 - env name; a password or an access token for an https:// git URL
NOT_SECRET = {"AWS_ENDPOINT_URL", GIT_USERNAME}  # shown in messages: they help a person debug
_MIN_SECRET = 4  # shorter values would redact ordinary words
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Credentials:
    """The credential values found, by env name."""

    values: dict[str, str] = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:  # a stray repr() in a log must not print the values
        return f"Credentials(keys={sorted(self.values)})"

    def remote_config(self, remote_url: str) -> dict[str, str]:
        """Options for DVC's `remote_config` (merged over the repository's remote config), only those
        that the remote's kind accepts: DVC rejects an S3 key on a local or SSH remote."""
        scheme = urllib.parse.urlsplit(remote_url).scheme
        prefix = _SCHEME_PREFIX.get(scheme, "\0")
        config = {
            opt: self.values[name]
            for name, opt in REMOTE_OPTIONS.items()
            if name in self.values and name.startswith(prefix)
        }
        for name, value in self.values.items():
            if name.startswith(REMOTE_PREFIX):
                config[name.removeprefix(REMOTE_PREFIX).lower()] = value
        return config

    def git_url(self, url: str) -> str:
        """`url` with the git username/password filled in (https:// URLs only)."""
        password = self.values.get(GIT_PASSWORD)
        parsed = urllib.parse.urlsplit(url)
        if not password or parsed.scheme not in ("https", "http") or "@" in parsed.netloc:
            return url
        user = urllib.parse.quote(self.values.get(GIT_USERNAME, "git"), safe="")
        netloc = f"{user}:{urllib.parse.quote(password, safe='')}@{parsed.netloc}"
        return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))

    def secrets(self) -> list[str]:
        """Every form of every secret value that could appear in a message, longest first."""
        forms: set[str] = set()
        for name, value in self.values.items():
            if name in NOT_SECRET or len(value) < _MIN_SECRET:
                continue
            forms.update({value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)})
        return sorted(forms, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with every secret value and every URL userinfo replaced by ***."""
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return _URL_USERINFO.sub(r"\g<scheme>***@", text)


def load(env: Mapping[str, str] | None = None, secret_dir: Path | None = None) -> Credentials:
    """Credentials from `env` (default: os.environ) and the mounted Secret directory.

    The directory is `secret_dir`, else $FLYWHEEL_DATA_SECRET_DIR, else DEFAULT_SECRET_DIR; a file
    wins over an env var of the same name (the mount is the newer mechanism)."""
    env = os.environ if env is None else env
    wanted = set(REMOTE_OPTIONS) | {GIT_USERNAME, GIT_PASSWORD}
    values = {k: v for k, v in env.items() if v and (k in wanted or k.startswith(REMOTE_PREFIX))}
    directory = secret_dir or Path(env.get(SECRET_DIR_ENV, str(DEFAULT_SECRET_DIR)))
    if directory.is_dir():
        for item in sorted(directory.iterdir()):
            # Kubernetes mounts keys as symlinks into a ..data dir; dotfiles are its bookkeeping.
            if item.name.startswith(".") or not item.is_file():
                continue
            if item.name in wanted or item.name.startswith(REMOTE_PREFIX):
                values[item.name] = item.read_text().strip()
    return Credentials(values)


@contextlib.contextmanager
def redacting_logs(creds: Credentials) -> Iterator[None]:
    """While active, every log record created in this process has its message redacted.

    A record factory (not a handler filter) is used because the libraries' loggers have their own
    handlers, and records are formatted only at emit time, long after we could catch them."""
    previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)  # type: ignore[arg-type]
        with contextlib.suppress(Exception):  # a bad format string must not kill the logging call
            record.msg, record.args = creds.redact(record.getMessage()), None
        if record.exc_info and record.exc_info[1] is not None:
            # The traceback would print the exception text unredacted; keep only a redacted line.
            exc = record.exc_info[1]
            record.msg = f"{record.msg} ({type(exc).__name__}: {creds.redact(str(exc))})"
            record.exc_info, record.exc_text = None, None
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)
