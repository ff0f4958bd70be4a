"""A Kubernetes API emulator for operator tests: kmock plus the fidelity our operators rely on.

kmock (by kopf's author) serves a stateful Kubernetes API over real HTTP, with watch streams, on
loopback. It is young, so this subclass adds what a real API server does and our code depends on:

- create: metadata.uid, generation=1, resourceVersion, creationTimestamp; `status` is dropped when
  the resource has a status subresource (as the real server does);
- patch: resourceVersion on every write, generation +1 only when `spec` changes; patches of the main
  resource cannot change `status`, and patches of `/status` change only `status`;
- list responses carry `kind: <Kind>List` and `apiVersion`, and honour an equality
  `labelSelector` (kmock 0.8 ignores it; the TrainJob rank 0 pod is observed by labels);
- garbage collection, emulated: after every write, objects whose ownerReferences name a uid that
  no longer exists are deleted (kube-controller-manager's job in a real cluster; kmock has none);
- fault injection: `fail(method, plural, times=1)` answers the next matching requests with a 500
  before they are stored (an API server that falls over mid-reconcile).

Cost per request, made constant (the operator benchmark runs on this emulator): kmock 0.8 finds
the reaction for a request by re-filtering every request it ever served (`request in view`
walks the whole history), finds an object by scanning every stored object, and formats a
traceback into every error answer. A request then cost O(all requests so far): quadratic over a
run, harsher on an operator that makes more requests, and a 404 (an observe of a child not yet
created) cost more than a 200, none of which holds for a real API server. Here the reaction match
sees only the request being served, named objects are found by their key, and API errors are a
plain Status. `requests()`/`writes()` keep the whole history for assertions; kmock's own request
views (`len(emulator)`, `emulator['get']`) see only requests in flight.

Discovery is declared from flywheel.api (the four kinds, with shortNames and the status
subresource) plus the core and Kubeflow kinds the operators touch, so no CRD files are needed.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime
import itertools
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from flywheel import api


def _children(kind: str, status: bool = True) -> kmock.ResourceInfo:
    """A namespaced kind the operators create and update (singular: the kind in lower case)."""
    return kmock.ResourceInfo(
        kind=kind,
        singular=kind.lower(),
        namespaced=True,
        subresources={"status"} if status else set(),
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    )


RESOURCES: dict[str, kmock.ResourceInfo] = {
    **{
        f"{api.API_VERSION}/{cls.PLURAL}": kmock.ResourceInfo(
            kind=cls.KIND,
            singular=cls.KIND.lower(),
            namespaced=True,
            shortnames=set(cls.SHORT_NAMES),
            categories={"flywheel"},
            subresources={"status"},
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        )
        for cls in api.KINDS.values()
    },
    "kubeflow.org/v1/pytorchjobs": _children("PyTorchJob"),
    "trainer.kubeflow.org/v1alpha1/trainjobs": _children("TrainJob"),
    "networking.k8s.io/v1/networkpolicies": _children("NetworkPolicy", status=False),  # a SelfPlayRun's fence
    "batch/v1/jobs": _children("Job"),
    "v1/configmaps": kmock.ResourceInfo(
        kind="ConfigMap",
        singular="configmap",
        namespaced=True,
        verbs={"get", "list", "watch", "create", "patch", "delete"},
    ),
    "v1/pods": kmock.ResourceInfo(
        kind="Pod",
        singular="pod",
        namespaced=True,
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "delete"},
    ),
    "v1/events": kmock.ResourceInfo(
        kind="Event",
        singular="event",
        namespaced=True,
        verbs={"get", "list", "watch", "create", "patch", "delete"},
    ),
    # Discovery only: kopf waits for it; listing /api/v1/namespaces is a path kmock 0.8 cannot parse.
    "v1/namespaces": kmock.ResourceInfo(
        kind="Namespace", singular="namespace", namespaced=False, verbs={"get", "list", "watch"}
    ),
}
_SERVING: contextvars.ContextVar[kmock.Request | None] = contextvars.ContextVar("serving", default=None)
WRITES = (kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE)
KEPT_ON_PATCH = ("uid", "generation", "creationTimestamp", "resourceVersion")


@dataclasses.dataclass
class Fault:
    method: str
    plural: str
    times: int


def _merge(base: Any, patch: Any) -> Any:
    """RFC 7386 merge patch (only to decide whether spec changed)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator with uids, generations, resourceVersions, list kinds, GC and faults."""

    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)
    _faults: list[Fault] = attrs.field(factory=list, init=False)
    _history: list[kmock.Request] = attrs.field(factory=list, init=False)
    _in_flight: dict[int, kmock.Request] = attrs.field(factory=dict, init=False)
    gc: bool = True
    """Emulate the garbage collector (off in the benchmark, which deletes nothing)."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, info in RESOURCES.items():
            self.resources[key] = info

    def fail(self, method: str, plural: str, times: int = 1) -> None:
        self._faults.append(Fault(method.upper(), plural, times))

    def requests(self) -> list[kmock.Request]:
        """Every request served so far, in arrival order."""
        return list(self._history)

    def writes(self) -> list[kmock.Request]:
        """Every create/patch/delete request served so far (what "no extra writes" counts)."""
        return [r for r in self.requests() if r.method in ("POST", "PATCH", "PUT", "DELETE")]

    def __iter__(self) -> Iterator[kmock.Request]:
        # What kmock re-filters to match a reaction: only the request being served (each request
        # is served in its own task, which sees its own context); outside, the ones in flight.
        current = _SERVING.get()
        yield from [current] if current is not None else list(self._in_flight.values())

    def _KubernetesEmulator__get_objs(self, request: kmock.Request, strict: bool) -> list[Any]:
        """kmock's object lookup (a private, name-mangled method), by key when the request names
        one object instead of scanning them all."""
        if request.name is not None and request.resource is not None and (strict or request.namespace):
            obj = self.objects._objects.get((request.resource, request.namespace, request.name))
            return [] if obj is None else [obj]
        return kmock.KubernetesEmulator._KubernetesEmulator__get_objs(self, request, strict)  # type: ignore[attr-defined,no-any-return]

    def live(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The live (not deleted) objects of a resource, e.g. live("kubeflow.org/v1/pytorchjobs")."""
        res = kmock.resource(resource)
        return [
            obj.raw
            for (r, ns, _), obj in list(self.objects.items())
            if r == res and not obj.deleted and (namespace is None or ns == namespace)
        ]

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        """API errors as a real server sends them: a Status without kmock's formatted traceback
        (formatting one cost more than serving the request, on every 404 of every observe)."""
        if not isinstance(exc, kmock.KubernetesError):
            return await super()._render_error(exc)  # a bug in the emulator: keep the traceback
        status = {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": exc.status,
                  "reason": exc.reason or type(exc).__name__, "message": exc.message or repr(exc),
                  "details": exc.details or {}}  # fmt: skip
        return aiohttp.web.json_response(status, status=exc.status)

    def _info(self, request: kmock.Request) -> kmock.ResourceInfo | None:
        for key, info in RESOURCES.items():
            if kmock.resource(key) == request.resource:
                return info
        return None

    def _next_version(self) -> str:
        return str(next(self._versions))

    def _inject_fault(self, request: kmock.Request) -> None:
        for fault in self._faults:
            resource = request.resource
            if (
                fault.times > 0
                and fault.method == request.method
                and resource
                and resource.plural == fault.plural
            ):
                fault.times -= 1
                raise kmock.KubernetesError(status=500, reason="InternalError", message="injected fault")

    def _before_write(self, request: kmock.Request) -> None:
        data = request.data
        if not isinstance(data, dict):
            return
        info = self._info(request)
        has_status = info is not None and "status" in info.subresources
        if request.action == kmock.action.CREATE:
            meta = data.setdefault("metadata", {})
            meta.setdefault("namespace", request.namespace)
            meta.update(uid=str(uuid.uuid4()), generation=1, resourceVersion=self._next_version())
            meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if has_status:
                data.pop("status", None)
        elif request.action == kmock.action.UPDATE and request.name is not None:
            key = (request.resource, request.namespace, request.name)
            current = self.objects[key].raw if key in self.objects and not self.objects[key].deleted else {}
            if request.subresource == "status":
                for extra in [k for k in data if k != "status"]:
                    del data[extra]
            elif has_status:
                data.pop("status", None)
            meta = data.setdefault("metadata", {})
            for kept in KEPT_ON_PATCH:
                meta.pop(kept, None)
            meta["resourceVersion"] = self._next_version()
            if "spec" in data and _merge(current.get("spec"), data["spec"]) != current.get("spec"):
                meta["generation"] = int(current.get("metadata", {}).get("generation") or 1) + 1

    async def _handle(self, request: kmock.Request) -> Any:
        self._history.append(request)
        self._in_flight[id(request)] = request
        _SERVING.set(request)
        try:
            writing = request.resource is not None and request.action in WRITES
            if writing:
                self._inject_fault(request)
                self._before_write(request)
            response = await super()._handle(request)
            if writing and self.gc:  # also after creates: a child of an owner deleted meanwhile goes too
                await self._collect_garbage()
            return response
        finally:
            del self._in_flight[id(request)]

    async def _collect_garbage(self) -> None:
        """Delete objects whose controller owner is gone, until nothing more goes."""
        while True:
            items = [(key, obj) for key, obj in list(self.objects.items()) if not obj.deleted]
            uids = {obj.raw.get("metadata", {}).get("uid") for _, obj in items}
            orphans = [
                (key, obj)
                for key, obj in items
                if any(
                    ref.get("uid") not in uids
                    for ref in obj.raw.get("metadata", {}).get("ownerReferences", [])
                )
            ]
            if not orphans:
                return
            for (resource, _, _), obj in orphans:
                raw = obj.raw
                obj.delete()
                await self._buses[resource].put({"type": "DELETED", "object": raw})

    async def _serve_list(self, request: kmock.Request) -> Any:
        payload = await super()._serve_list(request)
        selector = (request.params or {}).get("labelSelector")
        if selector and isinstance(payload.get("items"), list):  # equality terms, as the operators send
            terms = dict(term.split("=", 1) for term in selector.split(","))
            payload["items"] = [
                item
                for item in payload["items"]
                if all((item.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in terms.items())
            ]
        info = self._info(request)
        if info is not None and request.resource is not None:
            group, version = request.resource.group, request.resource.version
            payload["apiVersion"] = f"{group}/{version}" if group else version
            payload["kind"] = f"{info.kind}List"
            payload["metadata"] = {"resourceVersion": str(next(self._versions))}
        return payload


def write_kubeconfig(path: pathlib.Path, url: str) -> pathlib.Path:
    """A kubeconfig for the emulator: what kopf's login and flywheel.kube both read."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "kmock", "user": {"token": "kmock"}}],
        "contexts": [
            {"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": "default"}}
        ],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def serve_forever(port: int, kubeconfig: pathlib.Path, *, gc: bool = True) -> None:
    """Run the emulator alone (the benchmark runs it in its own process)."""
    async with Emulator(gc=gc) as emulator:
        await serve(emulator, port, kubeconfig)


async def serve(emulator: Emulator, port: int, kubeconfig: pathlib.Path) -> None:
    """Serve `emulator` on `port` until cancelled, with a kubeconfig for it."""
    async with kmock.Server(emulator, port=port) as server:
        write_kubeconfig(kubeconfig, str(server.url).rstrip("/"))
        await asyncio.Event().wait()
