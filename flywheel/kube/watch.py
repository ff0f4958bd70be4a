"""A watch of one resource (cluster-wide, or in one namespace), label-selected, in a thread: each
event to a callback.

Why the operators watch their children with this and not kopf's `@kopf.on.event`: a child event
mostly says nothing new (our own create or patch coming back, see operators/reconcile.py), yet
kopf spends on each one a worker task per object, its cause detection, handler invocation and
patch machinery, on the one event loop where the owners' own events wait. Measured with the
operator benchmark (bench/operator_throughput.py), the kopf child watch cost ~1.3 ms of operator
CPU per TrainingRun; here an event costs a JSON decode and a dict lookup, off kopf's loop. The
label selector goes to the server, so children of other owners never reach the operator.

What it does, a reduced client-go reflector: list, then watch from the list's resourceVersion with
bookmarks; a stream that ends or breaks resumes from the last resourceVersion seen (kept per event,
so a connection cut mid-stream does not replay or skip); 410 Gone, as the watch request's HTTP
status or as an ERROR event, and any other ERROR event list again (retrying a version the server
has dropped can only fail again: before, a stale version was retried 21 times in 20 s and a job's
change went unseen); connection and API errors back off exponentially with jitter, reset by the
next event. Nothing here ends the thread but stop(): the operator's process outlives any answer
of the server. Listed objects are delivered
with type None (as kopf does), so after every (re)list the callback has seen the whole state;
objects deleted while no stream was open are not reported (kopf does not either).

It also keeps what it watches (`cached`, a client-go store): each list replaces the store (so an
object deleted while no stream was open goes from it too), each event updates it before the
callback runs. The operators read from it only the first time they reconcile an owner after a
start (operators/reconcile.py): a restart then lists the children once instead of reading each.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import urllib3

from flywheel.kube import client, throttle

logger = logging.getLogger("flywheel.kube.watch")
BACKOFF = 1.0
"""Seconds before the first retry after a failed list or watch; doubles per failure up to
BACKOFF_CAP, with jitter."""
BACKOFF_CAP = 30.0
SERVER_TIMEOUT = 290
"""timeoutSeconds asked of the server: it ends the stream, the watch resumes at once."""
READ_TIMEOUT = 330.0
"""A stream silent this long (no event, no bookmark) is taken as dead and resumed."""

Callback = Callable[[str | None, dict[str, Any]], None]


class Watch:
    """Watch `plural` of `api_version` in all namespaces, or in `namespace` only (an operator whose
    RBAC is a Role per watched namespace may not list cluster-wide); `on_event(type, object)` in
    the thread."""

    def __init__(
        self,
        api_version: str,
        plural: str,
        on_event: Callback,
        label_selector: str = "",
        namespace: str | None = None,
    ) -> None:
        root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        self.path = f"{root}/namespaces/{namespace}/{plural}" if namespace else f"{root}/{plural}"
        self.api_version = api_version
        self.kind = ""
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        """The watched objects by (namespace, name), as the last list and the events since say."""
        self.synced = threading.Event()
        """Set once the first list is in the store."""
        self.label_selector = label_selector
        self.on_event = on_event
        self.version: str | None = None
        """The last resourceVersion seen (None: list first)."""
        self._delivered = 0
        """Events delivered so far: progress, which resets the backoff."""
        self._stop = threading.Event()
        self._response: urllib3.BaseHTTPResponse | None = None
        name = f"watch-{plural}" + (f"-{namespace}" if namespace else "")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (a read in progress is cut short) and wait for it."""
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()  # urllib3 >= 2.3: unblocks a read in progress
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        backoff = throttle.Backoff(base=BACKOFF, cap=BACKOFF_CAP)
        while not self._stop.is_set():
            delivered = self._delivered
            try:
                if self.version is None:
                    self.version = self._list()
                self._stream()
                failures = 0
            except Gone as exc:
                # The first relist goes at once; a server that keeps answering 410 without a
                # single event in between gets the same growing pause as any other failure.
                failures = 0 if self._delivered != delivered else failures + 1
                delay = backoff.delay(failures - 1)
                logger.info("Watch of %s: %s, listing again in %.1fs", self.path, exc, delay)
                self.version = None
                self._stop.wait(delay)
            except (client.ApiError, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if self._stop.is_set():
                    break
                failures = 1 if self._delivered != delivered else failures + 1
                delay = backoff.delay(failures)
                logger.warning("Watch of %s failed, retrying in %.1fs: %s", self.path, delay, exc)
                self._stop.wait(delay)
            except Exception:  # the callback's bug: say so, keep watching
                logger.exception("Watch of %s: the event callback failed", self.path)
                self._stop.wait(BACKOFF)

    def _query(self, **params: str) -> str:
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        return self.path + "?" + urllib.parse.urlencode(params)

    def cached(self, namespace: str, name: str) -> tuple[bool, dict[str, Any] | None]:
        """(known, object): known is False until the first list is in; then object None means
        the object does not exist (as far as the last list and the events since say)."""
        if not self.synced.is_set():
            return False, None
        return True, self.store.get((namespace, name))

    def _keep(self, type_: str | None, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or "default", meta.get("name", ""))
        if type_ == "DELETED":
            self.store.pop(key, None)
        else:
            self.store[key] = obj

    def _list(self) -> str:
        listing = client.request("GET", self._query())
        self.kind = str(listing.get("kind") or "").removesuffix("List")
        items = listing.get("items") or []
        for item in items:
            item.setdefault("kind", self.kind)  # list items carry no kind of their own
        fresh: dict[tuple[str, str], dict[str, Any]] = {}
        self.store = fresh  # one swap: readers see the old store or the new one, never half
        for item in items:
            self._keep(None, item)
        self.synced.set()
        for item in items:
            self.on_event(None, item)
        version = (listing.get("metadata") or {}).get("resourceVersion")
        return str(version) if version else ""

    def _stream(self) -> None:
        """One watch request from self.version, until the server ends it; self.version follows
        every event, so whatever ends the stream, the next one resumes where this one stopped."""
        params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(SERVER_TIMEOUT)}
        if self.version:
            params["resourceVersion"] = self.version
        try:
            events = self._events(self._query(**params))
            for event in events:
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    # 410: our version is too old. Any other ERROR event ends this watch with
                    # nothing that retrying the same version would fix: list again too.
                    raise Gone(f"ERROR event {obj.get('code')} {obj.get('reason')}: {obj.get('message')}")
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if kind != "BOOKMARK":
                    self._keep(kind, {**obj, "kind": obj.get("kind") or self.kind})
                    self.on_event(kind, obj)
                self._delivered += 1
                if version:
                    self.version = str(version)
        except client.ApiError as exc:
            if exc.status == 410:
                raise Gone(f"watch answered {exc}") from exc
            raise

    def _events(self, url_path: str) -> Iterator[dict[str, Any]]:
        timeout = urllib3.Timeout(connect=client.limits().connect_timeout, read=READ_TIMEOUT)
        response = client.open_stream(url_path, timeout)
        self._response = response
        try:
            buffer = b""
            for chunk in response.stream(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
                if self._stop.is_set():
                    return
        except urllib3.exceptions.ReadTimeoutError:
            return  # silent too long: resume from the last version
        finally:
            self._response = None
            response.close()  # a stream cut short cannot serve another request
            response.release_conn()


class Gone(Exception):
    """The server no longer has the resourceVersion we watched from: list again."""
