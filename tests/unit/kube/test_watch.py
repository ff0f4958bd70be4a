"""flywheel.kube.watch's reflector loop without a server (client.request and the event stream
replaced): resume from the last resourceVersion, relist on 410 Gone, bookmarks only move the
version, errors back off and retry."""

from __future__ import annotations

import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest

from flywheel.kube import client, watch


def job(name: str, version: str) -> dict[str, Any]:
    return {"kind": "PyTorchJob", "metadata": {"name": name, "resourceVersion": version}}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Scripted answers: `lists` for each list request, `streams` (lists of events, or an
    exception) for each watch request; `asked` records the watch requests' query strings."""
    script: dict[str, list[Any]] = {"lists": [], "streams": [], "asked": []}

    def request(method: str, path: str, *args: Any) -> dict[str, Any]:
        return script["lists"].pop(0)

    def events(self: watch.Watch, path: str) -> Iterator[dict[str, Any]]:
        script["asked"].append(path.split("?", 1)[1])
        if not script["streams"]:
            self._stop.set()
            return
        answer = script["streams"].pop(0)
        if isinstance(answer, Exception):
            raise answer
        yield from answer

    monkeypatch.setattr(client, "request", request)
    monkeypatch.setattr(watch.Watch, "_events", events)
    monkeypatch.setattr(watch, "BACKOFF", 0.0)
    return script


def run(server: dict[str, list[Any]]) -> list[tuple[str | None, str]]:
    seen: list[tuple[str | None, str]] = []
    stream = watch.Watch("kubeflow.org/v1", "pytorchjobs", lambda t, o: seen.append((t, o["metadata"]["name"])),
                         label_selector="owner=TrainingRun")  # fmt: skip
    stream._run()  # in this thread: ends when the script does
    assert isinstance(stream._stop, threading.Event) and stream._stop.is_set()
    return seen


def test_resumes_from_the_last_version_and_relists_after_gone(server: dict[str, list[Any]]) -> None:
    server["lists"] = [
        {
            "kind": "PyTorchJobList",
            "metadata": {"resourceVersion": "10"},
            "items": [{"metadata": {"name": "a"}}],
        },
        {"kind": "PyTorchJobList", "metadata": {"resourceVersion": "30"}, "items": []},
    ]
    server["streams"] = [
        [{"type": "ADDED", "object": job("b", "11")}, {"type": "BOOKMARK", "object": job("", "15")}],
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}],
        [{"type": "DELETED", "object": job("b", "31")}],
    ]
    assert run(server) == [(None, "a"), ("ADDED", "b"), ("DELETED", "b")]
    versions = [q.split("resourceVersion=")[1].split("&")[0] for q in server["asked"][:3]]
    assert versions == ["10", "15", "30"]  # after the list, after the bookmark, after the relist
    assert all("labelSelector=owner%3DTrainingRun" in q for q in server["asked"])


def test_a_failed_stream_is_retried_from_the_same_version(server: dict[str, list[Any]]) -> None:
    server["lists"] = [{"kind": "PyTorchJobList", "metadata": {"resourceVersion": "5"}, "items": []}]
    server["streams"] = [
        client.ApiError(500, "Internal", "boom"),
        [{"type": "ADDED", "object": job("c", "6")}],
    ]
    assert run(server) == [("ADDED", "c")]
    assert ["resourceVersion=5" in q for q in server["asked"][:2]] == [True, True]


def test_an_http_410_on_the_watch_request_lists_again(server: dict[str, list[Any]]) -> None:
    server["lists"] = [
        {"kind": "PyTorchJobList", "metadata": {"resourceVersion": "5"}, "items": []},
        {"kind": "PyTorchJobList", "metadata": {"resourceVersion": "40"}, "items": [job("d", "39")]},
    ]
    server["streams"] = [
        client.ApiError(410, "Gone", "too old"),
        [{"type": "ADDED", "object": job("e", "41")}],
    ]
    assert run(server) == [(None, "d"), ("ADDED", "e")]
    assert ["resourceVersion=5" in server["asked"][0], "resourceVersion=40" in server["asked"][1]] == [
        True,
        True,
    ]


def test_a_stream_cut_mid_way_resumes_after_the_last_event(server: dict[str, list[Any]]) -> None:
    def cut() -> Iterator[dict[str, Any]]:
        yield {"type": "ADDED", "object": job("f", "7")}
        raise OSError("connection reset")

    server["lists"] = [{"kind": "PyTorchJobList", "metadata": {"resourceVersion": "5"}, "items": []}]
    server["streams"] = [cut(), [{"type": "MODIFIED", "object": job("f", "8")}]]
    assert run(server) == [("ADDED", "f"), ("MODIFIED", "f")]
    assert "resourceVersion=7" in server["asked"][1]  # not 5: the ADDED is not replayed


def test_any_error_event_lists_again(server: dict[str, list[Any]]) -> None:
    server["lists"] = [
        {"kind": "PyTorchJobList", "metadata": {"resourceVersion": "5"}, "items": []},
        {"kind": "PyTorchJobList", "metadata": {"resourceVersion": "9"}, "items": []},
    ]
    server["streams"] = [[{"type": "ERROR", "object": {"code": 500, "reason": "InternalError"}}], []]
    assert run(server) == []
    assert "resourceVersion=9" in server["asked"][1]


def test_a_server_that_keeps_answering_410_gets_a_growing_pause(
    server: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(watch, "BACKOFF", 1.0)

    class Recorded(threading.Event):  # the watch's pauses, recorded instead of waited
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0.0)
            return False

    monkeypatch.setattr(watch, "threading", types.SimpleNamespace(Event=Recorded, Thread=threading.Thread))
    listing = {"kind": "PyTorchJobList", "metadata": {"resourceVersion": "5"}, "items": []}
    server["lists"] = [dict(listing) for _ in range(5)]
    gone = client.ApiError(410, "Gone", "too old")
    server["streams"] = [gone, gone, gone, gone]
    run(server)
    assert waits[0] == 0.0 and 0.5 <= waits[1] <= 1.0 and 1.0 <= waits[2] <= 2.0 and 2.0 <= waits[3] <= 4.0


def test_the_store_follows_lists_and_events_and_a_relist_replaces_it(server: dict[str, list[Any]]) -> None:
    """What operators.reconcile reads on a restart: nothing known before the first list; after
    it, present and absent objects alike; an object gone while no stream was open leaves the store
    at the relist (its DELETED event was never seen)."""
    server["lists"] = [
        {
            "kind": "PyTorchJobList",
            "metadata": {"resourceVersion": "10"},
            "items": [job("a", "9"), job("b", "9")],
        },
        {"kind": "PyTorchJobList", "metadata": {"resourceVersion": "30"}, "items": [job("c", "29")]},
    ]
    server["streams"] = [
        [{"type": "MODIFIED", "object": {"metadata": {"name": "a", "resourceVersion": "11"}}},
         {"type": "DELETED", "object": job("b", "12")}],
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}],
    ]  # fmt: skip
    stream = watch.Watch("kubeflow.org/v1", "pytorchjobs", lambda t, o: None)
    assert stream.cached("default", "a") == (False, None)
    snapshots: list[dict[str, str]] = []
    original = stream._keep

    def keep(type_: str | None, obj: dict[str, Any]) -> None:
        original(type_, obj)
        snapshots.append({n: o["metadata"]["resourceVersion"] for (_, n), o in stream.store.items()})

    stream._keep = keep  # type: ignore[method-assign]
    stream._run()
    assert {"a": "11"} in snapshots  # a updated, b deleted, before the relist
    known, a = stream.cached("default", "a")
    assert known and a is None  # gone at the relist, with no DELETED event
    known, c = stream.cached("default", "c")
    assert known and c is not None and c["kind"] == "PyTorchJob"
