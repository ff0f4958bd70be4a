"""The one connection to the Kubernetes API: configuration, paths, and raw JSON requests.

Why the official `kubernetes` client and not kopf's API helpers: kopf's helpers live in private
modules (`kopf._cogs.clients`) that change between releases and only work inside a running kopf
operator (they read its credentials vault from a context variable), so neither the CLI nor a test
could call them. The `kubernetes` client is public, already in the `operators` extra, brings no
torch, and reads the same in-cluster or kubeconfig credentials kopf uses. We call it generically (JSON dicts
on REST paths) instead of through its generated per-kind classes, so custom resources
(PyTorchJob, the Flywheel kinds) and core kinds take the same path.

The request itself skips `ApiClient.call_api`: for plain JSON dicts its body sanitizing and
response deserializing do nothing useful, and a 404 goes through an ApiException built from the
whole response; measured against the emulator, a GET cost 0.48 ms of CPU that way (0.94 ms for
a 404) and 0.29 ms straight through the client's own urllib3 pool. The pool (TLS, proxy, client
certificates, retries) and the auth header (bearer token, refreshed by the kubeconfig's exec
plugin through the client's api-key hook) still come from the official client.

Calls are synchronous; the operator glue runs them in a thread pool, off kopf's event loop.

Every call has a connect and a read timeout (watch streams have their own, in flywheel.kube.watch)
and goes through the client-side rate limit (flywheel.kube.throttle): a held request must not hold
its reconcile, and with it a worker thread, for as long as the server likes (measured before: a
status PATCH held for 75 s blocked its run for 75 s with nothing logged). A timeout or a broken
connection is raised as `Unavailable`, a retryable ApiError, so callers handle it as a 503. urllib3
retries nothing itself (`retries=False`): the reconcile retries, with backoff, the whole idempotent
step, which is also right for a POST whose answer was lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3

from flywheel import api
from flywheel.kube import throttle

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
POOL_SIZE = 64
"""HTTP connections kept open; at least the operator's worker threads plus execute's I/O threads,
or urllib3 drops them."""


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


class Unavailable(ApiError):
    """No answer: the request timed out or the connection failed (the write may or may not have
    happened). Retryable, like a 503."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(503, reason, message)


class _State:
    lock = threading.Lock()
    api_client: kubernetes.client.ApiClient | None = None
    limits = throttle.Limits()
    bucket = throttle.TokenBucket(limits.qps, limits.burst)
    timeout = urllib3.Timeout(connect=limits.connect_timeout, read=limits.read_timeout)


on_unavailable: list[Callable[[str, str], None]] = []
"""Called with (method, reason) for every Unavailable raised: the operators count them as a metric
(flywheel.kube does not own a metrics registry)."""


def configure(limits: throttle.Limits) -> None:
    """Set the timeouts and the rate limit of every later request."""
    with _State.lock:
        _State.limits = limits
        _State.bucket = throttle.TokenBucket(limits.qps, limits.burst)
        _State.timeout = urllib3.Timeout(connect=limits.connect_timeout, read=limits.read_timeout)


def limits() -> throttle.Limits:
    return _State.limits


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
    """(Re)connect, e.g. at operator start-up; later calls use this connection. The timeouts and
    rate limit are read from the environment (throttle.Limits.from_env) now: a bad value stops
    the start with a ValueError naming the variable."""
    configure(throttle.Limits.from_env(os.environ))
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


def manifest_path(manifest: Mapping[str, Any], *, collection: bool = False, sub: str | None = None) -> str:
    meta = manifest["metadata"]
    name = None if collection else meta["name"]
    return path(manifest["apiVersion"], manifest["kind"], meta.get("namespace") or "default", name, sub)


def request(method: str, url_path: str, body: Any = None, content_type: str | None = None) -> Any:
    """One API call with a JSON body; returns the decoded JSON answer (text when the answer is
    not JSON, e.g. a pod log) or raises ApiError (Unavailable: timed out or no connection)."""
    api_client = _api_client()
    headers = {"Accept": "application/json", "Content-Type": content_type or "application/json"}
    api_client.update_params_for_auth(headers, [], ["BearerToken"])
    data = None if body is None else json.dumps(body)
    pool = api_client.rest_client.pool_manager
    _State.bucket.acquire()
    try:
        answer = pool.request(
            method,
            api_client.configuration.host + url_path,
            body=data,
            headers=headers,
            timeout=_State.timeout,
            retries=False,
        )
    except urllib3.exceptions.HTTPError as exc:
        raise _unavailable(method, url_path, exc) from exc
    text = answer.data.decode("utf-8", errors="replace")
    if not 200 <= answer.status <= 299:
        raise _error(answer.status, answer.reason or "", text)
    try:
        return json.loads(text)
    except ValueError:
        return text


def open_stream(url_path: str, timeout: urllib3.Timeout) -> urllib3.BaseHTTPResponse:
    """A GET whose body is read as it arrives (a watch); raises ApiError on a non-2xx answer."""
    api_client = _api_client()
    headers = {"Accept": "application/json"}
    api_client.update_params_for_auth(headers, [], ["BearerToken"])
    pool = api_client.rest_client.pool_manager
    answer: urllib3.BaseHTTPResponse = pool.request(
        "GET",
        api_client.configuration.host + url_path,
        headers=headers,
        preload_content=False,
        timeout=timeout,
    )
    if not 200 <= answer.status <= 299:
        text = answer.read().decode("utf-8", errors="replace")
        answer.release_conn()
        raise _error(answer.status, answer.reason or "", text)
    return answer


def _unavailable(method: str, url_path: str, exc: urllib3.exceptions.HTTPError) -> Unavailable:
    # NewConnectionError subclasses ConnectTimeoutError in urllib3: a refusal is not a timeout.
    refused = isinstance(exc, urllib3.exceptions.NewConnectionError)
    timed_out = isinstance(exc, urllib3.exceptions.TimeoutError) and not refused
    reason = "Timeout" if timed_out else "ConnectionError"
    for hook in on_unavailable:
        with contextlib.suppress(Exception):  # a metric must not turn into a failed request
            hook(method, reason)
    what = f"no answer within {_State.limits.read_timeout:g}s" if timed_out else f"connection failed ({exc})"
    return Unavailable(reason, f"{method} {url_path.split('?', 1)[0]}: {what}")


def _error(status: int, reason: str, text: str) -> ApiError:
    message = text
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        message = json.loads(text).get("message", message)
    return ApiError(status, reason, message[:300])
