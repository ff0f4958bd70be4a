"""The artifact store: one small interface over file://, pvc:// and s3:// roots.

Writers never leave a half-written object that looks complete: local writes go to a temp file in
the same directory and are renamed into place (atomic on POSIX); a directory that must appear whole
(a model) is written under a temp name and renamed, with its manifest file written last.
pvc://claim/sub is the claim mounted at contract.ARTIFACTS_MOUNT in pods (FLYWHEEL_PVC_ROOT
overrides the mount point, e.g. for tests). s3:// goes through fsspec (needs s3fs installed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from flywheel import errors
from flywheel.api import contract


class Store:
    """A root URI plus helpers; paths below it are '/'-separated and relative."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        parsed = urlparse(self.uri)
        self.scheme = parsed.scheme
        if self.scheme == "file":
            self.local_root: Path | None = Path(parsed.path)
        elif self.scheme == "pvc":
            mount = Path(os.environ.get("FLYWHEEL_PVC_ROOT", contract.ARTIFACTS_MOUNT))
            self.local_root = mount / parsed.path.lstrip("/")
        elif self.scheme == "s3":
            self.local_root = None
        else:
            raise errors.UserError(
                f"artifacts.uri {uri!r}: use file:///path, pvc://claim/path or s3://bucket/prefix"
            )

    # --- naming ---------------------------------------------------------------------------------
    def child(self, *parts: str) -> Store:
        return Store("/".join([self.uri, *[p.strip("/") for p in parts if p]]))

    def join(self, *parts: str) -> str:
        """The URI of a path below the root."""
        return "/".join([self.uri, *[p.strip("/") for p in parts if p]])

    def local_path(self, *parts: str) -> Path:
        """The filesystem path of a file:// or pvc:// location (s3 has none)."""
        if self.local_root is None:
            raise errors.UserError(f"{self.uri} is not on a local filesystem")
        return self.local_root.joinpath(*[p.strip("/") for p in parts if p])

    # --- bytes ----------------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> str:
        """Write atomically; return the object's URI."""
        if self.local_root is not None:
            atomic_write_bytes(self.local_path(rel), data)
        else:
            with _fs().open(self.join(rel), "wb") as fh:  # S3 PUT is atomic per object
                fh.write(data)
        return self.join(rel)

    def read_bytes(self, rel: str) -> bytes:
        if self.local_root is not None:
            return self.local_path(rel).read_bytes()
        with _fs().open(self.join(rel), "rb") as fh:
            data: bytes = fh.read()
            return data

    def exists(self, rel: str) -> bool:
        if self.local_root is not None:
            return self.local_path(rel).exists()
        return bool(_fs().exists(self.join(rel)))

    def remove(self, rel: str) -> None:
        """Delete one object (a file); missing is fine."""
        if self.local_root is not None:
            self.local_path(rel).unlink(missing_ok=True)
        elif _fs().exists(self.join(rel)):
            _fs().rm(self.join(rel))

    def list(self, rel: str = "") -> list[str]:
        """Names directly below `rel`, sorted."""
        if self.local_root is not None:
            path = self.local_path(rel)
            return sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        return sorted(Path(p).name for p in _fs().ls(self.join(rel), detail=False))

    def put_dir(self, rel: str, source: Path) -> str:
        """Publish a finished local directory at `rel` whole, replacing any previous one."""
        if self.local_root is not None:
            with staging_dir(self.local_path(rel)) as staging:
                shutil.copytree(source, staging, dirs_exist_ok=True)
        else:
            _fs().put(str(source), self.join(rel), recursive=True)
        return self.join(rel)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes 0600 files; artifacts are read by other users (the serving pod, the monitor).
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield a temp directory beside `final`; on success it is renamed to `final` in one step."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes 0700 directories; published artifacts must be readable
    try:
        yield tmp
        # Two renames: the old directory steps aside, the new one takes its name. Readers see the
        # old model or the new one; a crash in between leaves `.name.old`, never a partial model.
        old = final.with_name(f".{final.name}.old")
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fs() -> Any:
    try:
        import fsspec
    except ModuleNotFoundError as exc:  # pragma: no cover - fsspec comes with dvc
        raise errors.UserError("s3:// artifacts need fsspec and s3fs: pip install s3fs") from exc
    try:
        return fsspec.filesystem("s3")
    except ImportError as exc:
        raise errors.UserError("s3:// artifacts need s3fs: pip install s3fs") from exc


def run_root(artifacts_uri: str, namespace: str, plural: str, name: str) -> Store:
    """<root>/<namespace>/<plural>/<name>: where one resource's artifacts live."""
    return Store(artifacts_uri).child(namespace, plural, name)
