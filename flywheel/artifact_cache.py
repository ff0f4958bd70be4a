"""The download cache: a folder on this filesystem for a folder in the artifact store (a model, for
ONNX Runtime or torch to open), bounded so a long-lived process does not fill its disk. The store
itself (URIs, put, get, publish) is flywheel.artifacts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from flywheel import artifacts, errors

logger = logging.getLogger(__name__)

# Where downloaded models are cached, in every process: FLYWHEEL_CACHE_DIR, else the temp dir (an
# emptyDir in the operator and serving pods). Serving keeps its models under "models" there, as the
# DriftMonitor operator does.
ROOT = Path(os.environ.get("FLYWHEEL_CACHE_DIR", Path(tempfile.gettempdir()) / "flywheel-cache"))
KEEP = 8  # models kept in a download cache: champion, challenger and recent candidates
MIN_AGE_S = 600.0  # an entry used this recently is never pruned (a reader may hold its path)


def local_dir(uri: str, cache_root: Path, keep: int = KEEP) -> Path:
    """A folder on this filesystem holding the complete folder at `uri` (a model, for ONNX Runtime).

    file:// and pvc://: the folder itself. S3: a copy under `cache_root` (one per URI, refreshed when
    the remote card changes). A remote folder without its card yields a path where nothing is, as a
    PVC would: readers then report the export as incomplete instead of the caller failing whole.

    The cache is bounded: each use marks its entry, and entries beyond the `keep` most recently used
    are removed once unused for MIN_AGE_S. A long-lived process (the DriftMonitor operator
    evaluates a new challenger after every retrain; a serving pod fetches each promoted model) would
    otherwise fill its emptyDir, and the kubelet evicts a pod over its ephemeral-storage limit."""
    store = artifacts.Store(uri)
    if store.local_root is not None:
        return store.local_path()
    dest = cache_root / hashlib.sha256(store.uri.encode()).hexdigest()[:24]
    try:
        found = store.fetch_dir("", dest)
    except errors.UserError as exc:
        logger.warning("%s: %s", uri, exc)
        return dest.with_name(dest.name + ".incomplete")  # never created
    os.utime(found)  # last use, for pruning
    prune(cache_root, keep, MIN_AGE_S)
    return found


def prune(cache_root: Path, keep: int, min_age_s: float = MIN_AGE_S) -> list[Path]:
    """Remove cache entries beyond the `keep` most recently used, if unused for `min_age_s`.

    Each removal holds that entry's fetch lock, so it never races a fetch of the same model in this
    process; the age floor protects readers that took a path a moment ago. Dot-named folders are a
    fetch's staging or its previous copy (see artifacts.staging_dir) and are left to it. Returns
    the removed."""
    try:
        entries = [p for p in cache_root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except FileNotFoundError:
        return []
    entries.sort(key=_mtime, reverse=True)
    cutoff = time.time() - min_age_s
    removed = []
    for entry in entries[keep:]:
        with artifacts.fetch_lock(entry):
            if _mtime(entry) < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # removed meanwhile: never picked again
