"""The artifact store: one small interface over file://, pvc:// and s3:// roots (URIs, put, get,
publish). Where downloaded folders are kept on this machine is flywheel.artifact_cache; where a
resource's artifacts live below a root is contract.run_root (a pure path rule).

Writers never leave a half-written object that looks complete: local writes go to a temp file in
the same directory and are renamed into place (atomic on POSIX); a directory that must appear whole
(a model) is written under a temp name and renamed, with its manifest file written last.
pvc://claim/sub is the claim mounted at contract.ARTIFACTS_MOUNT in pods (FLYWHEEL_PVC_ROOT
overrides the mount point, e.g. for tests).

s3:// goes through fsspec and s3fs (in the trainer, serving and drift extras). Credentials and the
endpoint come from the environment as botocore reads it (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL for MinIO and other S3 services, or ambient IRSA / workload identity). One S3 PUT is
atomic per object, so a single file needs no temp name; a folder is published with its completion
marker (the model card) removed first and uploaded last (put_dir), and read back into a local cache
only when that marker is there (fetch_dir), because S3 has no directory rename.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from flywheel import errors
from flywheel.api import contract

logger = logging.getLogger(__name__)


class ChangedWhileRead(RuntimeError):
    """A folder was republished while fetch_dir copied it: nothing was kept; try again."""


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
        """Names directly below `rel`, sorted ([] when nothing is there, as for a new traffic sink)."""
        if self.local_root is not None:
            path = self.local_path(rel)
            return sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        try:
            listed = _fs().ls(self.join(rel), detail=False)
        except FileNotFoundError:
            return []
        return sorted(Path(p).name for p in listed)

    def put_dir(self, rel: str, source: Path, marker: str = contract.MODEL_CARD) -> str:
        """Publish a finished local directory at `rel` whole, replacing any previous one.

        Local: copied beside the target, then one rename. S3: the old `marker` is deleted first (from
        then on readers see an incomplete folder, never a mix of old and new files), the other files
        are uploaded, leftovers of the old folder deleted, and `marker` uploaded last."""
        if self.local_root is not None:
            with staging_dir(self.local_path(rel)) as staging:
                shutil.copytree(source, staging, dirs_exist_ok=True)
            return self.join(rel)
        files = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
        fs, base = _fs(), self.join(rel)
        if fs.exists(f"{base}/{marker}"):
            fs.rm_file(f"{base}/{marker}")
        body = [f for f in files if f != marker]
        if body:  # one call: s3fs uploads the files concurrently
            fs.put([str(source / f) for f in body], [f"{base}/{f}" for f in body])
        stale = set(_remote_files(self.join(rel))) - set(files)
        if stale:
            fs.rm([f"{base}/{f}" for f in sorted(stale)])
        if marker in files:
            fs.put_file(str(source / marker), f"{base}/{marker}")
        return base

    def fetch_dir(self, rel: str, dest: Path, marker: str = contract.MODEL_CARD) -> Path:
        """A local directory holding the folder at `rel`, e.g. a model for ONNX Runtime to open.

        file:// and pvc://: the folder itself, nothing copied. S3: downloaded into `dest` (a cache
        path owned by the caller) under a temp name and renamed into place, so `dest` is complete or
        absent. Skipped when `dest` already holds the same `marker` as the store: a model's card is
        written last and names its version, so an equal card means an equal folder. Raises UserError
        when the remote folder has no `marker` (not written yet, or being rewritten), and
        ChangedWhileRead when the marker changed during the download (a retry gets the new one)."""
        if self.local_root is not None:
            return self.local_path(rel)
        card_uri = self.child(rel).join(marker)
        with fetch_lock(dest):
            card = _read_marker(card_uri)
            if (dest / marker).is_file() and (dest / marker).read_bytes() == card:
                return dest
            with staging_dir(dest) as staging:
                body = [f for f in _remote_files(self.join(rel)) if f != marker]
                for f in body:  # a key such as "a/../../x" must not land outside the staging folder
                    if any(part in ("", ".", "..") for part in f.split("/")):
                        raise errors.UserError(f"{self.join(rel, f)}: refusing to fetch a key with '..'")
                if body:  # one call: s3fs downloads the files concurrently
                    base = self.join(rel)
                    _fs().get([f"{base}/{f}" for f in body], [str(staging / f) for f in body])
                if _read_marker(card_uri) != card:  # rewritten while we read: do not mix
                    raise ChangedWhileRead(f"{self.join(rel)} changed while it was read; try again")
                (staging / marker).write_bytes(card)
            return dest


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


_FETCH_LOCKS: dict[Path, threading.Lock] = {}
_FETCH_LOCKS_GUARD = threading.Lock()


def fetch_lock(dest: Path) -> threading.Lock:
    """One lock per cache folder: two threads fetching the same model must not rename over each
    other (the second rename would pull the folder from under the first's reader); the cache's
    prune (flywheel.artifact_cache) holds it too."""
    with _FETCH_LOCKS_GUARD:
        return _FETCH_LOCKS.setdefault(Path(dest).resolve(), threading.Lock())


def _read_marker(uri: str) -> bytes:
    """The bytes of a folder's completion marker (S3); UserError when it is not there."""
    try:
        data: bytes = _fs().cat_file(uri)
    except FileNotFoundError:
        folder, name = uri.rsplit("/", 1)
        raise errors.UserError(
            f"{folder}: no {name}, so the folder is incomplete (not written yet, or being rewritten)"
        ) from None
    return data


def _remote_files(uri: str) -> list[str]:
    """Every object below the S3 folder `uri`, as '/'-separated paths relative to it."""
    base = uri.removeprefix("s3://")
    try:
        found = _fs().find(base)
    except FileNotFoundError:
        return []
    return sorted(p.removeprefix(base + "/") for p in found if p.startswith(base + "/"))


def _fs() -> Any:
    """The S3 filesystem. Listings are never cached: other processes (serving replicas, trainers)
    add files all the time, and s3fs's default cache would hide them from a long-lived process,
    such as the DriftMonitor operator, forever. fsspec reuses one instance per arguments."""
    try:
        import fsspec
    except ModuleNotFoundError as exc:  # pragma: no cover - fsspec comes with dvc
        raise errors.UserError("s3:// artifacts need fsspec and s3fs: pip install s3fs") from exc
    try:
        return fsspec.filesystem("s3", use_listings_cache=False)
    except ImportError as exc:
        raise errors.UserError("s3:// artifacts need s3fs: pip install s3fs") from exc
