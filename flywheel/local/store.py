"""The local backend's state: Flywheel resources and their events in SQLite (<home>/state.db).

The CLI can be killed at any moment and several `flywheel` processes may share one home, so every
change is one SQLite transaction (WAL journal, `BEGIN IMMEDIATE` for read-modify-write, so two
writers never interleave a read and a write). A killed writer leaves the previous committed state.

Resources keep the Kubernetes shape (apiVersion, kind, metadata, spec, status) so the same
controller helpers and printers work on both backends. As on the API server, `metadata.generation`
moves only when the spec changes, `metadata.resourceVersion` moves on every write (one counter for
the whole home); status is written through `patch_status` (JSON merge patch).

The children an operator would create (a PyTorchJob, its ConfigMap, the Master Pod, an apps/v1
Deployment...) live here too, keyed the same way by kind/namespace/name, with their apiVersion and
their other top-level fields (a ConfigMap's `data`) kept as written. `list()` without a kind lists
the Flywheel resources only; children are listed by kind.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flywheel import api
from flywheel.api import common
from flywheel.api.common import Manifest
from flywheel.controllers import plans

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    uid TEXT NOT NULL,
    generation INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_object ON events (kind, namespace, name, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
# Columns added after the first release: a home made by an older version gets them on open.
_ADDED_COLUMNS = (
    ("api_version", "TEXT NOT NULL DEFAULT ''"),
    ("resource_version", "INTEGER NOT NULL DEFAULT 0"),
    ("body", "TEXT NOT NULL DEFAULT '{}'"),
)
# A constant, never user input: the f-strings below that name it are not an injection (noqa S608).
_COLUMNS = (
    "kind, namespace, name, uid, generation, metadata, spec, status, created, "
    "api_version, resource_version, body"
)
_ENVELOPE = ("apiVersion", "kind", "metadata", "spec", "status")

# Metadata the store owns; a manifest's values for these are ignored on put.
_SERVER_FIELDS = ("uid", "generation", "creationTimestamp", "resourceVersion")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Store:
    """Resources and events of one local home. Cheap to create; each call opens its own connection,
    so a Store can be shared by threads and used from several processes at once."""

    def __init__(self, home: str | Path, timeout: float = 30.0) -> None:
        self.home = Path(home)
        self.path = self.home / "state.db"
        self.timeout = timeout
        self.home.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            have = {row[1] for row in conn.execute("PRAGMA table_info(resources)")}
            for column, decl in _ADDED_COLUMNS:
                if column not in have:
                    conn.execute(f"ALTER TABLE resources ADD COLUMN {column} {decl}")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly one call.
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable enough with WAL; never corrupt
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # --- resources ------------------------------------------------------------------------------
    def put(self, manifest: Manifest) -> Manifest:
        """Create or update a resource from a manifest (apply). Generation starts at 1 and moves
        only when the spec (or, for a child without one, its other fields) changes; labels and
        annotations follow the manifest; status is kept."""
        kind = manifest["kind"]
        meta = dict(manifest.get("metadata") or {})
        name = meta["name"]
        namespace = meta.get("namespace") or "default"
        spec = manifest.get("spec") or {}
        body = {k: v for k, v in manifest.items() if k not in _ENVELOPE}
        api_version = manifest.get("apiVersion") or common.API_VERSION
        user_meta = {k: v for k, v in meta.items() if k not in _SERVER_FIELDS}
        user_meta["namespace"] = namespace
        now = _now()
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT generation, spec, body FROM resources WHERE kind=? AND namespace=? AND name=?",
                (kind, namespace, name),
            ).fetchone()
            version = _next_version(conn)
            if row is None:
                conn.execute(
                    f"INSERT INTO resources ({_COLUMNS}, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
                    (
                        kind,
                        namespace,
                        name,
                        str(uuid.uuid4()),
                        1,
                        _dumps(user_meta),
                        _dumps(spec),
                        "{}",
                        now,
                        api_version,
                        version,
                        _dumps(body),
                        now,
                    ),
                )
            else:
                changed = json.loads(row[1]) != spec or json.loads(row[2]) != body
                conn.execute(
                    "UPDATE resources SET generation=?, metadata=?, spec=?, body=?, api_version=?, "
                    "resource_version=?, updated=? WHERE kind=? AND namespace=? AND name=?",
                    (
                        row[0] + int(changed),
                        _dumps(user_meta),
                        _dumps(spec),
                        _dumps(body),
                        api_version,
                        version,
                        now,
                        kind,
                        namespace,
                        name,
                    ),
                )
        out = self.get(kind, name, namespace)
        assert out is not None  # just written; deletes of it would need another process's race
        return out

    def get(self, kind: str, name: str, namespace: str = "default") -> Manifest | None:
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM resources WHERE kind=? AND namespace=? AND name=?",  # noqa: S608
                (kind, namespace, name),
            ).fetchone()
        return _manifest(row) if row else None

    def list(
        self, kind: str | None = None, namespace: str | None = None, api_version: str | None = None
    ) -> list[Manifest]:
        """Resources sorted by kind, namespace, name; optionally of one kind and namespace. Without
        a kind: the Flywheel resources only (children are listed by their kind). A kind two API
        groups share (Deployment: Flywheel's and apps/v1's serving child) lists Flywheel's unless
        `api_version` names the other."""
        query, args = f"SELECT {_COLUMNS} FROM resources WHERE 1=1", builtins.list[str]()  # noqa: S608
        if kind is not None:
            query, args = query + " AND kind=?", [*args, kind]
            if api_version is not None:
                query, args = query + " AND api_version=?", [*args, api_version]
            elif kind in api.KINDS:
                query, args = query + " AND api_version IN ('', ?)", [*args, common.API_VERSION]
        else:
            query, args = query + " AND api_version IN ('', ?)", [*args, common.API_VERSION]
        if namespace is not None:
            query, args = query + " AND namespace=?", [*args, namespace]
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY kind, namespace, name", args).fetchall()
        return [_manifest(r) for r in rows]

    def patch_status(
        self, kind: str, name: str, patch: dict[str, Any], namespace: str = "default"
    ) -> Manifest:
        """Merge-patch .status in one transaction; KeyError when the resource does not exist."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT status FROM resources WHERE kind=? AND namespace=? AND name=?",
                (kind, namespace, name),
            ).fetchone()
            if row is None:
                raise KeyError(f"{kind}/{name} not found in namespace {namespace}")
            status = plans.merge_patch(json.loads(row[0]), patch)
            conn.execute(
                "UPDATE resources SET status=?, resource_version=?, updated=? "
                "WHERE kind=? AND namespace=? AND name=?",
                (_dumps(status), _next_version(conn), _now(), kind, namespace, name),
            )
        out = self.get(kind, name, namespace)
        assert out is not None
        return out

    def delete(self, kind: str, name: str, namespace: str = "default") -> bool:
        """Delete a resource and its events, and (as Kubernetes' garbage collector does) every
        object in its namespace whose ownerReferences name it, theirs in turn; True when it existed."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT uid FROM resources WHERE kind=? AND namespace=? AND name=?", (kind, namespace, name)
            ).fetchone()
            if row is None:
                return False
            doomed = [(kind, name, row[0])]
            while doomed:
                kind_, name_, uid = doomed.pop()
                conn.execute(
                    "DELETE FROM resources WHERE kind=? AND namespace=? AND name=?", (kind_, namespace, name_)
                )
                conn.execute(
                    "DELETE FROM events WHERE kind=? AND namespace=? AND name=?", (kind_, namespace, name_)
                )
                owned = conn.execute(
                    "SELECT kind, name, uid, metadata FROM resources WHERE namespace=? AND metadata LIKE ?",
                    (namespace, f"%{uid}%"),
                ).fetchall()
                for child_kind, child_name, child_uid, metadata in owned:
                    refs = json.loads(metadata).get("ownerReferences") or []
                    if any(ref.get("uid") == uid for ref in refs):
                        doomed.append((child_kind, child_name, child_uid))
        return True

    # --- events ---------------------------------------------------------------------------------
    def add_event(
        self,
        kind: str,
        name: str,
        reason: str,
        message: str,
        type_: str = "Normal",
        namespace: str = "default",
    ) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO events (kind, namespace, name, type, reason, message, time) "
                "VALUES (?,?,?,?,?,?,?)",
                (kind, namespace, name, type_, reason, message, _now()),
            )

    def events(self, kind: str, name: str, namespace: str = "default") -> builtins.list[dict[str, str]]:
        """Events of one resource, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT type, reason, message, time FROM events WHERE kind=? AND namespace=? AND name=? "
                "ORDER BY id",
                (kind, namespace, name),
            ).fetchall()
        return [{"type": r[0], "reason": r[1], "message": r[2], "time": r[3]} for r in rows]


def _next_version(conn: sqlite3.Connection) -> int:
    """The home's next resourceVersion (monotonic across every object, like etcd's revision)."""
    conn.execute(
        "INSERT INTO counters VALUES ('resourceVersion', 1) ON CONFLICT(name) DO UPDATE SET value = value + 1"
    )
    value: int = conn.execute("SELECT value FROM counters WHERE name='resourceVersion'").fetchone()[0]
    return value


def _manifest(row: tuple[Any, ...]) -> Manifest:
    kind, namespace, name, uid, generation, metadata, spec, status, created, api_version, version, body = row
    meta = json.loads(metadata)
    meta.update(name=name, namespace=namespace, uid=uid, generation=generation, creationTimestamp=created)
    if version:
        meta["resourceVersion"] = str(version)
    out: Manifest = {"apiVersion": api_version or common.API_VERSION, "kind": kind, "metadata": meta}
    spec_value = json.loads(spec)
    if spec_value or not json.loads(body):  # a child without spec (a ConfigMap) shows none
        out["spec"] = spec_value
    out.update(json.loads(body))
    out["status"] = json.loads(status)
    return out
