"""The one connection to the Kubernetes API: configuration, paths, and raw JSON requests.

Why the official `kubernetes` client and not kopf's API helpers: kopf's helpers live in private
modules (`kopf._cogs.clients`) that change between releases and only work inside a running kopf
operator (they read its credentials vault from a context variable), so neither the CLI nor a test
could call them. The `kubernetes` client is public, already in the `operators` extra, brings no
torch, and reads the same in-cluster or kubeconfig credentials kopf uses. We call it generically
(`ApiClient.call_api` with JSON dicts) instead of through its generated per-kind classes, so
custom resources (PyTorchJob, the Flywheel kinds) and core kinds take the same path.

Calls are synchronous; the operator glue runs them in a thread pool, off kopf's event loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from typing import Any

import kubernetes.client
import kubernetes.config
from kubernetes.client import exceptions as k8s_exceptions

from flywheel import api

# Plural names of the kinds Flywheel reads or writes; anything else falls back to `<kind>s`.
_PLURALS: dict[str, str] = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Pod": "pods",
    "Service": "services",
    "Event": "events",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "ServiceAccount": "serviceaccounts",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "PyTorchJob": "pytorchjobs",
    "NetworkPolicy": "networkpolicies",  # not kind + "s"
    "ServiceMonitor": "servicemonitors",
}
POOL_SIZE = 32
"""HTTP connections kept open; at least the operator's worker threads, or urllib3 drops them."""


class ApiError(Exception):
    """A non-2xx answer from the API server: HTTP status, reason and the server's message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        """Conflicts, throttling and server errors pass; anything else needs a different request."""
        return self.status in (409, 429) or self.status >= 500


class _State:
    lock = threading.Lock()
    api_client: kubernetes.client.ApiClient | None = None


def load_configuration() -> kubernetes.client.Configuration:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG or ~/.kube)."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        # $KUBECONFIG read now: the client library reads it once, at import time.
        kubernetes.config.load_kube_config(os.environ.get("KUBECONFIG"), client_configuration=configuration)
    configuration.connection_pool_maxsize = POOL_SIZE
    return configuration


def connect(configuration: kubernetes.client.Configuration | None = None) -> None:
    """(Re)connect, e.g. at operator start-up; later calls use this connection."""
    client = kubernetes.client.ApiClient(configuration or load_configuration())
    with _State.lock:
        old, _State.api_client = _State.api_client, client
    if old is not None:
        old.close()


def disconnect() -> None:
    with _State.lock:
        old, _State.api_client = _State.api_client, None
    if old is not None:
        old.close()


def _api_client() -> kubernetes.client.ApiClient:
    if _State.api_client is None:
        connect()
    assert _State.api_client is not None
    return _State.api_client


def plural(kind: str) -> str:
    if kind in api.KINDS:
        return api.KINDS[kind].PLURAL
    return _PLURALS.get(kind, kind.lower() + "s")


def path(api_version: str, kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    """The REST path of a namespaced object (or of its collection when name is None)."""
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [root, "namespaces", namespace, plural(kind)]
    parts += [p for p in (name, sub) if p]
    return "/".join(parts)


def manifest_path(manifest: dict[str, Any], *, collection: bool = False, sub: str | None = None) -> str:
    meta = manifest["metadata"]
    name = None if collection else meta["name"]
    return path(manifest["apiVersion"], manifest["kind"], meta.get("namespace") or "default", name, sub)


def request(method: str, url_path: str, body: Any = None, content_type: str | None = None) -> Any:
    """One API call with a JSON body; returns the decoded JSON answer or raises ApiError."""
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    try:
        return _api_client().call_api(
            url_path,
            method,
            header_params=headers,
            body=body,
            response_type="object",
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
    except k8s_exceptions.ApiException as exc:
        raise _api_error(exc) from None


def _api_error(exc: k8s_exceptions.ApiException) -> ApiError:
    message = str(exc.body or "")
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        message = json.loads(exc.body).get("message", message)
    return ApiError(int(exc.status or 0), str(exc.reason or ""), message[:300])
