"""The local SQLite store: apply semantics, merge-patched status, events, concurrent writers."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from flywheel.controllers import plans
from flywheel.local import store

MANIFEST = {
    "apiVersion": "flywheel.dev/v1alpha1",
    "kind": "TrainingRun",
    "metadata": {"name": "iris", "labels": {"team": "a"}},
    "spec": {"data": {"repo": "r", "path": "p.csv"}, "model": {"task": "classification", "target": "y"}},
}


def test_put_creates_with_generation_one_and_server_fields(tmp_path):
    s = store.Store(tmp_path)
    got = s.put(MANIFEST)
    meta = got["metadata"]
    assert meta["generation"] == 1
    assert meta["namespace"] == "default"
    assert len(meta["uid"]) == 36
    assert meta["creationTimestamp"].endswith("Z")
    assert meta["labels"] == {"team": "a"}
    assert got["spec"] == MANIFEST["spec"]
    assert got["status"] == {}
    assert s.get("TrainingRun", "iris") == got


def test_generation_moves_only_when_spec_changes(tmp_path):
    s = store.Store(tmp_path)
    uid = s.put(MANIFEST)["metadata"]["uid"]
    relabelled = {**MANIFEST, "metadata": {"name": "iris", "labels": {"team": "b"}}}
    again = s.put(relabelled)
    assert again["metadata"]["generation"] == 1
    assert again["metadata"]["labels"] == {"team": "b"}
    changed = {**MANIFEST, "spec": {**MANIFEST["spec"], "training": {"epochs": 3}}}
    assert s.put(changed)["metadata"]["generation"] == 2
    assert s.put(changed)["metadata"]["generation"] == 2
    assert s.get("TrainingRun", "iris")["metadata"]["uid"] == uid


def test_put_keeps_status_and_ignores_server_fields_in_the_manifest(tmp_path):
    s = store.Store(tmp_path)
    s.put(MANIFEST)
    s.patch_status("TrainingRun", "iris", {"phase": "Running"})
    forged = {**MANIFEST, "metadata": {"name": "iris", "generation": 99, "uid": "x"}}
    got = s.put(forged)
    assert got["metadata"]["generation"] == 1
    assert got["metadata"]["uid"] != "x"
    assert got["status"] == {"phase": "Running"}


def test_patch_status_is_a_json_merge_patch(tmp_path):
    s = store.Store(tmp_path)
    s.put(MANIFEST)
    s.patch_status(
        "TrainingRun", "iris", {"phase": "Running", "data": {"rows": 10, "commit": "abc"}, "message": "m"}
    )
    got = s.patch_status(
        "TrainingRun", "iris", {"data": {"rows": 12}, "message": None, "conditions": [{"type": "Ready"}]}
    )
    assert got["status"] == {
        "phase": "Running",
        "data": {"rows": 12, "commit": "abc"},
        "conditions": [{"type": "Ready"}],
    }
    # lists are replaced whole, as in RFC 7386
    got = s.patch_status("TrainingRun", "iris", {"conditions": []})
    assert got["status"]["conditions"] == []


def test_patch_status_of_a_missing_resource_raises(tmp_path):
    with pytest.raises(KeyError, match="TrainingRun/nope"):
        store.Store(tmp_path).patch_status("TrainingRun", "nope", {"phase": "x"})


def test_list_filters_and_sorts_and_delete_removes_events(tmp_path):
    s = store.Store(tmp_path)
    for name in ("b", "a"):
        s.put({**MANIFEST, "metadata": {"name": name}})
    s.put({**MANIFEST, "kind": "DriftMonitor", "metadata": {"name": "dm", "namespace": "ops"}})
    assert [m["metadata"]["name"] for m in s.list("TrainingRun")] == ["a", "b"]
    assert [m["kind"] for m in s.list()] == ["DriftMonitor", "TrainingRun", "TrainingRun"]
    assert [m["metadata"]["name"] for m in s.list(namespace="ops")] == ["dm"]
    s.add_event("TrainingRun", "a", "JobCreated", "started", "Normal")
    s.add_event("TrainingRun", "a", "Failed", "boom", "Warning")
    assert [(e["reason"], e["type"]) for e in s.events("TrainingRun", "a")] == [
        ("JobCreated", "Normal"),
        ("Failed", "Warning"),
    ]
    assert s.delete("TrainingRun", "a") is True
    assert s.delete("TrainingRun", "a") is False
    assert s.get("TrainingRun", "a") is None
    assert s.events("TrainingRun", "a") == []


def test_database_is_in_wal_mode(tmp_path):
    store.Store(tmp_path)
    with sqlite3.connect(tmp_path / "state.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_transaction_leaves_the_previous_state(tmp_path):
    s = store.Store(tmp_path)
    s.put(MANIFEST)
    s.patch_status("TrainingRun", "iris", {"phase": "Running"})
    with pytest.raises(TypeError), s._transaction() as conn:
        conn.execute('UPDATE resources SET status=\'{"phase": "half"}\'')
        raise TypeError("the process dies mid-transaction")
    assert s.get("TrainingRun", "iris")["status"] == {"phase": "Running"}


def _bump(home: str, worker: int, n: int) -> None:
    s = store.Store(home)
    for i in range(n):
        current = s.get("TrainingRun", "iris")["status"].get("counts", {})
        s.patch_status("TrainingRun", "iris", {"counts": {f"w{worker}": current.get(f"w{worker}", 0) + 1}})
        s.add_event("TrainingRun", "iris", "Tick", f"{worker}-{i}")


def test_concurrent_writers_in_separate_processes_lose_nothing(tmp_path):
    s = store.Store(tmp_path)
    s.put(MANIFEST)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_bump, args=(str(tmp_path), w, 40)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    status = s.get("TrainingRun", "iris")["status"]
    # each worker's key is written only by that worker, and merge patches never clobber other keys
    assert status["counts"] == {"w0": 40, "w1": 40, "w2": 40}
    assert len(s.events("TrainingRun", "iris")) == 120


def test_merge_patch_rfc7386_examples():
    assert plans.merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert plans.merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert plans.merge_patch({"a": "b"}, {"a": None}) == {}
    assert plans.merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert plans.merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert plans.merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


CONFIG_MAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "iris-config", "labels": {"flywheel.dev/owner-kind": "TrainingRun"}},
    "data": {"config.json": "{}"},
}


def test_children_keep_their_api_version_and_fields_and_stay_out_of_the_kindless_list(tmp_path):
    s = store.Store(tmp_path)
    s.put(MANIFEST)
    got = s.put(CONFIG_MAP)
    assert got["apiVersion"] == "v1" and got["data"] == {"config.json": "{}"} and "spec" not in got
    job = s.put({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "iris"},
                 "spec": {"nprocPerNode": "2"}})  # fmt: skip
    assert job["apiVersion"] == "kubeflow.org/v1" and job["spec"] == {"nprocPerNode": "2"}
    assert [m["kind"] for m in s.list()] == ["TrainingRun"]  # `flywheel get` shows resources, not children
    assert [m["metadata"]["name"] for m in s.list("ConfigMap")] == ["iris-config"]
    changed = {**CONFIG_MAP, "data": {"config.json": '{"a": 1}'}}
    assert s.put(changed)["metadata"]["generation"] == 2  # no spec: its other fields count


def test_resource_version_moves_on_every_write_across_objects(tmp_path):
    s = store.Store(tmp_path)
    first = int(s.put(MANIFEST)["metadata"]["resourceVersion"])
    second = int(s.put(CONFIG_MAP)["metadata"]["resourceVersion"])
    third = int(s.patch_status("TrainingRun", "iris", {"phase": "Running"})["metadata"]["resourceVersion"])
    assert first < second < third
    assert s.get("ConfigMap", "iris-config")["metadata"]["resourceVersion"] == str(second)


def test_a_home_from_before_children_gains_the_new_columns(tmp_path):
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.executescript(
        "CREATE TABLE resources (kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, "
        "uid TEXT NOT NULL, generation INTEGER NOT NULL, metadata TEXT NOT NULL, spec TEXT NOT NULL, "
        "status TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL, PRIMARY KEY (kind, namespace, name));"
        "INSERT INTO resources VALUES ('TrainingRun','default','old','u',3,'{}','{\"a\":1}','{}','t','t');"
    )
    conn.commit()
    conn.close()
    old = store.Store(tmp_path).get("TrainingRun", "old")
    assert old["apiVersion"] == "flywheel.dev/v1alpha1" and old["spec"] == {"a": 1}
    assert old["metadata"]["generation"] == 3


def test_delete_collects_what_the_resource_owns_like_the_garbage_collector(tmp_path):
    s = store.Store(tmp_path)
    run = s.put(MANIFEST)
    owner = {"apiVersion": "flywheel.dev/v1alpha1", "kind": "TrainingRun", "name": "iris",
             "uid": run["metadata"]["uid"], "controller": True}  # fmt: skip
    job = s.put({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                 "metadata": {"name": "iris", "ownerReferences": [owner]}, "spec": {}})  # fmt: skip
    by_job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "name": "iris",
        "uid": job["metadata"]["uid"],
    }
    s.put(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "iris-master-0", "ownerReferences": [by_job]},
        }
    )
    s.put({**CONFIG_MAP, "metadata": {"name": "someone-elses"}})
    assert s.delete("TrainingRun", "iris") is True
    assert s.get("PyTorchJob", "iris") is None and s.get("Pod", "iris-master-0") is None
    assert s.get("ConfigMap", "someone-elses") is not None
    assert s.delete("TrainingRun", "iris") is False
