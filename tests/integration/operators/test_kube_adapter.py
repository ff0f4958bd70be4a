"""flywheel.kube against the emulator over HTTP: every verb is idempotent, and no-ops send nothing."""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

from flywheel.controllers import plans
from flywheel.kube import execute, objects, watch
from tests.integration.operators import conftest

NS = conftest.NAMESPACE
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def owner() -> dict[str, Any]:
    return {"apiVersion": "flywheel.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": "owner", "namespace": NS}, "spec": {"a": 1}}  # fmt: skip


def config_map(value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": NS},
            "data": {"key": value}}  # fmt: skip


async def test_apply_creates_then_skips_then_patches_only_on_difference(emulator: Any) -> None:
    assert await asyncio.to_thread(objects.apply, config_map("1")) == "created"
    writes = len(emulator.writes())
    # Unobserved re-apply: the POST meets 409, the live copy already matches, so no PATCH.
    assert await asyncio.to_thread(objects.apply, config_map("1")) == "unchanged"
    assert [r.method for r in emulator.writes()[writes:]] == ["POST"]
    live = emulator.live("v1/configmaps", NS)[0]
    assert live["metadata"]["uid"]  # server-added fields do not count as a difference
    writes = len(emulator.writes())
    assert await asyncio.to_thread(objects.apply, config_map("1"), live) == "unchanged"
    assert len(emulator.writes()) == writes  # observed and equal: not a single request
    assert await asyncio.to_thread(objects.apply, config_map("2"), live) == "patched"
    assert emulator.live("v1/configmaps", NS)[0]["data"] == {"key": "2"}


async def test_delete_is_idempotent(emulator: Any) -> None:
    await asyncio.to_thread(objects.apply, config_map("1"))
    assert await asyncio.to_thread(objects.delete, config_map("1")) is True
    assert await asyncio.to_thread(objects.delete, config_map("1")) is False
    assert emulator.live("v1/configmaps", NS) == []


async def test_execute_writes_status_with_observed_generation_and_events_once(emulator: Any) -> None:
    await asyncio.to_thread(objects.apply, owner())
    live = emulator.live("flywheel.dev/v1alpha1/trainingruns", NS)[0]
    plan = plans.Plan(
        apply=[config_map("1")], status={"phase": "Pending"}, events=[plans.Event("Hello", "hi")]
    )
    first = await asyncio.to_thread(execute.execute, live, plan, None, NOW)
    assert first.writes == ["created ConfigMap/cm", "status TrainingRun/owner", "event Hello"]
    live = emulator.live("flywheel.dev/v1alpha1/trainingruns", NS)[0]
    assert live["status"] == {"phase": "Pending", "observedGeneration": 1}
    observed = await asyncio.to_thread(execute.observe, [objects.ref_of(config_map("1"))])
    second = await asyncio.to_thread(execute.execute, live, plan, observed, NOW)
    assert second.writes == []  # same plan, same world: nothing written (the event is a 409 no-op)
    (event,) = emulator.live("v1/events", NS)
    assert event["involvedObject"]["uid"] == live["metadata"]["uid"]
    assert (event["reason"], event["type"], event["message"]) == ("Hello", "Normal", "hi")


async def test_patch_spec_bumps_generation_only_when_different(emulator: Any) -> None:
    await asyncio.to_thread(objects.apply, owner())
    patch = {**owner(), "spec": {"a": 2}}
    assert await asyncio.to_thread(objects.patch_spec, patch) is True
    assert await asyncio.to_thread(objects.patch_spec, patch) is False
    live = emulator.live("flywheel.dev/v1alpha1/trainingruns", NS)[0]
    assert live["spec"] == {"a": 2} and live["metadata"]["generation"] == 2


def test_contains_ignores_server_defaults_but_not_list_shape() -> None:
    live = {"spec": {"containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}]}}
    assert objects.contains(live, {"spec": {"containers": [{"name": "a", "image": "x"}]}})
    assert not objects.contains(live, {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}})
    assert not objects.contains(live, {"spec": {"containers": [{"name": "a", "image": "y"}]}})
    assert objects.contains({"a": 1}, {"b": None})  # None means "absent"
    assert not objects.contains({"a": 1}, {"a": None})


async def test_watch_lists_then_streams_changes_and_stops_at_once(emulator: Any) -> None:
    """flywheel.kube.watch over real HTTP: listed objects (type None, kind filled in), then each
    change; stop() cuts the open stream short."""
    await asyncio.to_thread(objects.apply, config_map("1"))
    seen: list[tuple[str | None, str, str]] = []

    def on_event(type_: str | None, obj: dict[str, Any]) -> None:
        seen.append((type_, obj["kind"], obj["data"]["key"]))

    stream = watch.Watch("v1", "configmaps", on_event)
    stream.start()
    try:
        await conftest.eventually(lambda: seen, what="the listed ConfigMap")
        await asyncio.to_thread(objects.apply, config_map("2"), emulator.live("v1/configmaps", NS)[0])
        await conftest.eventually(lambda: any(s[2] == "2" for s in seen), what="the change")
    finally:
        started = time.monotonic()
        await asyncio.to_thread(stream.stop)
        assert time.monotonic() - started < 2  # not waiting for the read timeout
    assert seen[0] == (None, "ConfigMap", "1")
    assert seen[-1] == ("MODIFIED", "ConfigMap", "2")


async def test_a_list_ref_reads_the_labelled_objects_with_their_kind(emulator: Any) -> None:
    """plans.list_ref (a Job's pods, a monitor's challengers): one GET with the label selector."""
    for name, job in (("a-x1", "a"), ("b-x1", "b")):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS,
               "labels": {"job-name": job}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}  # fmt: skip
        await asyncio.to_thread(objects.create, pod)
    found = await asyncio.to_thread(objects.get, plans.list_ref("v1", "Pod", "a", NS, "job-name=a"))
    assert found is not None and found["kind"] == "List"
    assert [(o["kind"], o["metadata"]["name"]) for o in found["items"]] == [("Pod", "a-x1")]
    observed = await asyncio.to_thread(execute.observe, [plans.list_ref("v1", "Pod", "a", NS, "job-name=a")])
    assert [o["metadata"]["name"] for o in plans.items(observed, "Pod", "a")] == ["a-x1"]


async def test_a_namespaced_watch_sees_only_its_namespace(emulator: Any) -> None:
    """What an operator with a Role per watched namespace (Helm watchNamespaces) runs: the list and
    the stream ask the namespaced path, and another namespace's objects never arrive."""
    other = {**config_map("elsewhere"), "metadata": {"name": "other", "namespace": "other-ns"}}
    await asyncio.to_thread(objects.apply, other)
    await asyncio.to_thread(objects.apply, config_map("mine"))
    seen: list[tuple[str, str]] = []
    stream = watch.Watch("v1", "configmaps", lambda t, o: seen.append((o["metadata"]["namespace"], o["data"]["key"])),
                         namespace=NS)  # fmt: skip
    assert stream.path == f"/api/v1/namespaces/{NS}/configmaps"
    stream.start()
    try:
        await conftest.eventually(lambda: seen, what="the listed ConfigMap")
        await asyncio.to_thread(
            objects.apply,
            {**other, "data": {"key": "changed"}},
            emulator.live("v1/configmaps", "other-ns")[0],
        )
        await asyncio.to_thread(objects.apply, config_map("mine-2"), emulator.live("v1/configmaps", NS)[0])
        await conftest.eventually(lambda: (NS, "mine-2") in seen, what="the change")
    finally:
        await asyncio.to_thread(stream.stop)
    assert {ns for ns, _ in seen} == {NS}
