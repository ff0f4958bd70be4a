"""Resolve spec.data to a local file and its lineage, through DVC's Python API.

The revision is resolved to a commit (recorded: a tag can move, a commit cannot), the DVC-tracked
file's md5 is read from the committed .dvc metadata, and the file is fetched into a local cache
directory named by that md5, so a second resolve of the same content costs a git lookup and no
transfer. The file's md5 is checked after the fetch: the lineage must describe the bytes trained on.
spec.data.validation.file (expectations kept in git beside the data) is read at the same commit, so
the gate checks the data against the expectations of its own revision, locally and in a pod alike.

Every failure is a UserError naming the spec.data field at fault and the fix, with credentials
redacted (see credentials.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flywheel import artifacts, errors
from flywheel.api import trainingrun
from flywheel.data import credentials, dvcenv, frames

META_FILE = "meta.json"


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A fetched dataset: where it is on disk and exactly what it is."""

    local_path: Path
    lineage: trainingrun.DataLineage
    expectations: Path | None = None
    """spec.data.validation.file as committed at lineage.commit, when set."""


def resolve(data: trainingrun.Data, cache_dir: Path, env: Mapping[str, str] | None = None) -> Resolved:
    """Fetch `data` (repo at rev, DVC path, optional remote) into `cache_dir`/<md5>/ and return it.

    `env` supplies remote and git credentials (default: os.environ; see credentials.load)."""
    dvcenv.ensure_offline()
    creds = credentials.load(env)
    with credentials.redacting_logs(creds), dvcenv.quiet():
        try:
            return _resolve(data, Path(cache_dir), creds)
        except errors.UserError as exc:
            raise errors.UserError(creds.redact(str(exc))) from None
        except Exception as exc:  # any library failure becomes one redacted, actionable line
            raise errors.UserError(creds.redact(_explain(data, exc))) from None


def _resolve(data: trainingrun.Data, cache_dir: Path, creds: credentials.Credentials) -> Resolved:
    url = _repo_url(data.repo, creds)
    with _open(url, data) as repo:
        commit = repo.get_rev()
        remote_config = creds.remote_config(_check_remote(data, repo))
        md5, size = _tracked(data, repo)
        expectations = _expectations(data, repo, cache_dir / "expectations" / commit)
        target = cache_dir / md5 / Path(data.path).name
        cached = target.is_file() and (target.parent / META_FILE).is_file()
        if not cached and not remote_config:
            _fetch(data, repo, md5, target)
    if not cached and remote_config:
        # Credentials go in on a second open, once the remote's kind is known (a clone is reused).
        with _open(url, data, remote_config) as repo:
            _fetch(data, repo, md5, target)
    meta = json.loads((target.parent / META_FILE).read_text())
    lineage = trainingrun.DataLineage(
        repo=creds.redact(data.repo), rev=data.rev, commit=commit, path=data.path, hash=md5,
        size=size, rows=meta.get("rows"),
    )  # fmt: skip
    return Resolved(local_path=target, lineage=lineage, expectations=expectations)


def _expectations(data: trainingrun.Data, repo: Any, folder: Path) -> Path | None:
    """spec.data.validation.file from git at the opened commit, copied to `folder`."""
    name = data.validation.file
    if not name:
        return None
    inside = "/" + Path(name).as_posix().lstrip("/")
    if not repo.fs.isfile(inside):
        raise errors.UserError(
            f"spec.data.validation.file: {name!r} is not in {data.repo}@{data.rev}; "
            "commit it there (a path relative to the repository root) or unset it"
        )
    target = folder / Path(name).name
    artifacts.atomic_write_text(target, repo.fs.read_text(inside))
    return target


def _repo_url(repo: str, creds: credentials.Credentials) -> str:
    local = Path(repo).expanduser()
    if "://" not in repo and local.exists():
        return str(local.resolve())
    return creds.git_url(repo)


def _open(url: str, data: trainingrun.Data, remote_config: dict[str, str] | None = None) -> Any:
    import dvc.repo

    return dvc.repo.Repo.open(
        url, rev=data.rev, subrepos=False, uninitialized=False, remote=data.remote,
        remote_config=remote_config or None,
    )  # fmt: skip


def _check_remote(data: trainingrun.Data, repo: Any) -> str:
    """The URL of the remote to use. A misspelt remote would go unnoticed while the file is in a
    local cache, so it is checked here."""
    remotes = repo.config.get("remote", {})
    if data.remote and data.remote not in remotes:
        raise errors.UserError(
            f"spec.data.remote: {data.repo}@{data.rev} has no DVC remote {data.remote!r}; "
            f"use one of {sorted(remotes)} or leave it unset for the default"
        )
    name = data.remote or repo.config.get("core", {}).get("remote")
    return str(remotes.get(name, {}).get("url", ""))


def _tracked(data: trainingrun.Data, repo: Any) -> tuple[str, int]:
    """The md5 and size DVC recorded for the file at this commit."""
    try:
        info = repo.dvcfs.info(data.path)
    except FileNotFoundError:
        raise errors.UserError(
            f"spec.data.path: {data.path!r} does not exist in {data.repo}@{data.rev}; "
            f"use a path relative to the repository root that `dvc add` tracks ({_listing(repo)})"
        ) from None
    md5 = info.get("md5") or (info.get("dvc_info") or {}).get("md5")
    if info.get("type") != "file" or not md5:
        kind = "a directory" if info.get("type") == "directory" else "not tracked by DVC (plain git)"
        raise errors.UserError(
            f"spec.data.path: {data.path!r} in {data.repo}@{data.rev} is {kind}; "
            f"point it at one DVC-tracked CSV or Parquet file ({_listing(repo)})"
        )
    return str(md5), int(info["size"])


def _listing(repo: Any) -> str:
    """The DVC-tracked files at this revision, to put the right path in front of the person."""
    try:
        paths = sorted(str(out.fs_path).removeprefix(repo.root_dir).lstrip("/") for out in repo.index.outs)
    except Exception:
        return "run `dvc list --dvc-only <repo>` to see them"
    return "tracked: " + ", ".join(paths[:10]) if paths else "no DVC-tracked files at this revision"


def _fetch(data: trainingrun.Data, repo: Any, md5: str, target: Path) -> None:
    """Download into a staging directory, check the md5, count rows, then rename into place."""
    with artifacts.staging_dir(target.parent) as staging:
        local = staging / target.name
        try:
            repo.dvcfs.get_file(data.path, str(local))
        except Exception as exc:
            where = f"remote {data.remote!r}" if data.remote else "the default DVC remote"
            raise errors.UserError(
                f"spec.data.remote: cannot fetch {data.path!r} (md5 {md5}) of {data.repo}@{data.rev} "
                f"from {where} ({type(exc).__name__}: {exc}); run `dvc push` in the repository, "
                "or set spec.data.remote / spec.data.credentialsSecret"
            ) from None
        got = _md5(local)
        if got != md5:
            raise errors.UserError(
                f"spec.data.remote: the fetched {data.path!r} has md5 {got}, DVC recorded {md5}; "
                "the remote holds a corrupt copy: re-run `dvc push` from a good checkout"
            )
        meta = {"md5": md5, "path": data.path, "rows": frames.count_rows(local)}
        artifacts.atomic_write_text(staging / META_FILE, json.dumps(meta))


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _explain(data: trainingrun.Data, exc: Exception) -> str:
    """One line for a failure from DVC/scmrepo: which field, why, what to do."""
    name = type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    detail = f"{exc}" + (f": {cause}" if cause and str(cause) not in str(exc) else "")
    if name in ("RevError", "UnknownRevError") or "revision" in detail.lower():
        return (
            f"spec.data.rev: {data.rev!r} is not a branch, tag or commit of {data.repo} ({detail}); "
            "use one that exists (`git ls-remote` lists them)"
        )
    if "Remote" in name or "remote" in detail.lower():
        return f"spec.data.remote: {detail}; use a remote defined in the repository's .dvc/config"
    if name in ("CloneError", "SCMError", "NotDvcRepoError", "NoSCMError") or isinstance(exc, OSError):
        return (
            f"spec.data.repo: cannot open {data.repo!r} as a git repository with DVC ({name}: {detail}); "
            "use a reachable git URL or a local path of a repository where `dvc init` was run"
        )
    return f"spec.data: resolving {data.repo}@{data.rev}:{data.path} failed ({name}: {detail})"
