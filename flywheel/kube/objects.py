"""Object verbs on top of the client: get, apply, delete, status and spec patches, events.

Every write is idempotent: apply creates, and when the object is already there (409) it patches
only if the live object differs from the desired one, so a second apply of the same manifest
writes nothing. Patches are JSON merge patches (RFC 7386): the one patch type both built-in
kinds and custom resources accept.
"""

from __future__ import annotations

import datetime
import hashlib
import urllib.parse
from collections.abc import Mapping
from typing import Any

from flywheel.api import contract
from flywheel.controllers import plans
from flywheel.kube import client

MERGE_PATCH = "application/merge-patch+json"
COMPONENT = contract.MANAGED_BY


def get(ref: plans.Ref) -> plans.Manifest | None:
    """The live object, or None when it does not exist. A list ref (plans.list_ref) answers a
    `List` of the matching objects, each with its kind (list answers carry it only at the top)."""
    if ref.selector is not None:
        url = client.path(ref.api_version, ref.kind, ref.namespace)
        listed = client.request("GET", f"{url}?labelSelector={urllib.parse.quote(ref.selector)}")
        found = [
            {"apiVersion": ref.api_version, "kind": ref.kind, **o}
            for o in listed.get("items") or []
            if matches(o, ref.selector)  # the server filtered; a stand-in server may not have
        ]
        return {"apiVersion": "v1", "kind": "List", "items": found}
    try:
        obj: plans.Manifest = client.request(
            "GET", client.path(ref.api_version, ref.kind, ref.namespace, ref.name)
        )
    except client.ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def matches(obj: Mapping[str, Any], selector: str) -> bool:
    """Whether `obj`'s labels satisfy an equality selector ("k=v,k2=v2"; other terms pass)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    terms = [term.split("=", 1) for term in selector.split(",") if "=" in term and "!" not in term]
    return all(labels.get(key.strip()) == value.strip() for key, value in terms)


def ref_of(manifest: Mapping[str, Any]) -> plans.Ref:
    meta = manifest["metadata"]
    return plans.Ref(
        manifest["apiVersion"], manifest["kind"], meta["name"], meta.get("namespace") or "default"
    )


contains = plans.contains
"""Whether `live` already says everything `desired` says (shared with flywheel.local.execute)."""


def apply(manifest: plans.Manifest, live: plans.Manifest | None = None) -> str:
    """Create the object, or bring the existing one to `manifest`. Returns what was done:
    "created", "patched" or "unchanged".

    `live` is an already observed copy; when it contains the manifest nothing is sent at all.
    """
    return apply_live(manifest, live)[0]


def apply_live(manifest: plans.Manifest, live: plans.Manifest | None = None) -> tuple[str, plans.Manifest]:
    """apply(), also returning the object as the API server last showed it (the answer to our
    write, or the live copy when nothing was sent): a caller can plan on from it without a GET."""
    if live is not None and contains(live, manifest):
        return "unchanged", live
    if live is None:
        try:
            created = client.request("POST", client.manifest_path(manifest, collection=True), body=manifest)
            return "created", _answer(created, manifest)
        except client.ApiError as exc:
            if exc.status != 409:  # 409 AlreadyExists: someone (our last run) created it
                raise
        live = get(ref_of(manifest))
        if live is None:  # deleted between the 409 and the get; the next reconcile creates it
            raise client.ApiError(409, "Conflict", f"{manifest['kind']} vanished while being applied")
        if contains(live, manifest):
            return "unchanged", live
    patched = client.request(
        "PATCH", client.manifest_path(manifest), body=_patchable(manifest), content_type=MERGE_PATCH
    )
    return "patched", _answer(patched, manifest)


def create(manifest: plans.Manifest) -> plans.Manifest | None:
    """POST the object; the server's answer, or None when it exists already (409)."""
    try:
        created = client.request("POST", client.manifest_path(manifest, collection=True), body=manifest)
    except client.ApiError as exc:
        if exc.status == 409:
            return None
        raise
    return _answer(created, manifest)


def _answer(answer: Any, manifest: plans.Manifest) -> plans.Manifest:
    """The server's answer to a write; the manifest itself if the answer is not an object."""
    return answer if isinstance(answer, dict) and answer.get("metadata") else manifest


def _patchable(manifest: Mapping[str, Any]) -> plans.Manifest:
    """The manifest minus what a patch must not touch (status belongs to the child's controller)."""
    return {key: value for key, value in manifest.items() if key != "status"}


def delete(manifest: Mapping[str, Any]) -> bool:
    """Delete (foreground, so children of the child go first); False when it was already gone."""
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"}
    try:
        client.request("DELETE", client.manifest_path(manifest), body=body)
    except client.ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def patch_status(resource: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    """Merge `patch` into .status through the status subresource; False when it was a no-op or
    the resource is gone (deleted while we reconciled: there is nobody left to report to)."""
    if contains(resource.get("status") or {}, patch):
        return False
    path = client.manifest_path(resource, sub="status")
    try:
        client.request("PATCH", path, body={"status": dict(patch)}, content_type=MERGE_PATCH)
    except client.ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def patch_spec(patch: Mapping[str, Any]) -> bool:
    """Merge a patch (apiVersion, kind, metadata name/namespace, spec/labels/annotations/
    ownerReferences) into a Flywheel resource; False when it already said so."""
    live = get(ref_of(patch))
    if live is None:
        raise client.ApiError(404, "NotFound", f"{patch['kind']} {patch['metadata']['name']} does not exist")
    body = {key: value for key, value in patch.items() if key in ("metadata", "spec")}
    meta = {
        k: v for k, v in body.get("metadata", {}).items() if k in ("labels", "annotations", "ownerReferences")
    }
    body = {**body, "metadata": meta} if meta else {k: v for k, v in body.items() if k != "metadata"}
    if contains(live, body):
        return False
    client.request("PATCH", client.manifest_path(patch), body=body, content_type=MERGE_PATCH)
    return True


def event_manifest(resource: Mapping[str, Any], event: plans.Event, now: datetime.datetime) -> plans.Manifest:
    """A core/v1 Event about `resource`. Its name is derived from the resource's uid and
    generation and the event's text and occurrence, so re-sending the same event is a 409, not a
    duplicate, while a second occurrence of the same text is a new event."""
    meta = resource["metadata"]
    key = f"{meta.get('uid')}/{meta.get('generation')}/{event.type}/{event.reason}/{event.message}"
    if event.occurrence:  # absent from the key when empty: names of existing events stay
        key += f"/{event.occurrence}"
    stamp = plans.now_rfc3339(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{hashlib.sha256(key.encode()).hexdigest()[:16]}",
            "namespace": meta.get("namespace") or "default",
        },
        "involvedObject": {
            "apiVersion": resource["apiVersion"],
            "kind": resource["kind"],
            "name": meta["name"],
            "namespace": meta.get("namespace") or "default",
            "uid": meta.get("uid", ""),
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def post_event(resource: Mapping[str, Any], event: plans.Event, now: datetime.datetime | None = None) -> bool:
    """Record an event for people; False when this very event was already recorded."""
    manifest = event_manifest(resource, event, now or datetime.datetime.now(datetime.UTC))
    try:
        client.request("POST", client.manifest_path(manifest, collection=True), body=manifest)
    except client.ApiError as exc:
        if exc.status == 409:
            return False
        raise
    return True
