"""An ASGI middleware between the caller and BentoML: what every request and every error reply obeys.

- Routes: a path outside routes.ROUTES is a 404, a known path with another method a 405 (with
  Allow), both JSON, before BentoML sees them.
- Request ids: `x-request-id` is at most REQUEST_ID_MAX characters of [A-Za-z0-9._:/+=-] (else a
  400 naming the header); without one the guard makes one (a random per-process prefix and a
  counter: 32 hex digits). The id is echoed as a response header on every reply, is in every
  error body, and is what the service logs (request_id(scope)).
- Bodies of POST routes: declared application/json (else 415), Content-Encoding gzip inflated here
  (any other encoding is a 415 naming it), at most maxBodyBytes, inflated size included (else
  413), each piece within BODY_TIMEOUT_S of the last (else 408), read whole before the app
  starts so it never sees half a request.
- Error replies (status >= 400, from here or downstream): JSON `{"error", ..., "request_id"}`,
  every string cut to ERROR_TEXT_MAX characters and every list to ERROR_ITEMS_MAX items, so a
  1 MB key sent by a caller is not echoed back whole; a 4xx is logged once, at INFO, without
  traceback, with its request id, at most LOG_BURST lines at once and LOG_PER_SECOND after.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import os
import re
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from flywheel.serving import bentoml_hooks, routes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_MAX = 128
REQUEST_ID_PATTERN = rf"^[A-Za-z0-9._:/+=-]{{1,{REQUEST_ID_MAX}}}$"
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
STATE_KEY = "flywheel_request_id"  # scope["state"] key the service reads the id from
ERROR_TEXT_MAX = 300
ERROR_ITEMS_MAX = 20
# An error body longer than this is cut before it is parsed (and then replied as cut text): BentoML's
# echo of a request within the body limit (4 MiB by default) fits.
_ERROR_BODY_KEEP = 16 * 1024 * 1024
BODY_TIMEOUT_S = 30.0  # longest wait for the next piece of a request body
LOG_BURST = 20
LOG_PER_SECOND = 2.0

log = logging.getLogger("flywheel.serving.requests")


def valid_request_id(value: str) -> bool:
    return _REQUEST_ID.fullmatch(value) is not None


def request_id(scope: Scope) -> str | None:
    """The id the guard gave this request (None when the app runs without the guard)."""
    state = scope.get("state")
    return state.get(STATE_KEY) if isinstance(state, dict) else None


class RequestGuard:
    def __init__(
        self, app: App, max_body_bytes: int, admin_token_env: str, body_timeout_s: float = BODY_TIMEOUT_S
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        # Admin routes check the token before anything of the request is read (a body BentoML
        # would refuse must not tell an unauthenticated caller more than "send the token").
        self._admin_token = os.environ.get(admin_token_env, "")
        self._admin_token_env = admin_token_env
        self._ids = _Ids()
        self._limiter = _Limiter(LOG_BURST, LOG_PER_SECOND)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bentoml_hooks.restore_path(scope)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        sent_id = headers.get("x-request-id")
        valid_id = sent_id is not None and valid_request_id(sent_id)
        rid = sent_id if valid_id and sent_id else self._ids.next()
        scope.setdefault("state", {})[STATE_KEY] = rid
        reply = _Replier(send, rid, scope, self._limiter)
        if sent_id is not None and not valid_id:
            await reply.error(
                400,
                f"x-request-id: at most {REQUEST_ID_MAX} characters of letters, digits and ._:/+=- "
                f"(got {len(sent_id)} characters)",
            )
            return
        path, method = scope["path"], scope["method"]
        route = routes.template(path)
        if route is None:
            await reply.error(404, f"no route {_cut(path, 100)!r}; this server serves /predict and /v2")
            return
        allowed = routes.ROUTES[route]
        if method not in allowed:
            message = f"{method} is not allowed on {route}; use {' or '.join(sorted(allowed))}"
            await reply.error(405, message, [(b"allow", ", ".join(sorted(allowed)).encode())])
            return
        if route.startswith("/admin/") and (problem := self._admin_problem(headers)) is not None:
            await reply.error(*problem)
            return
        if route not in routes.BODY_ROUTES:
            await reply.run(self.app, scope, receive)
            return
        problem, body = await self._read_body(headers, receive, route.startswith("/v2/"))
        if body is None:
            if problem is not None:
                await reply.error(*problem)
            return  # the caller went away
        if "content-encoding" in headers:  # the app sees the inflated body, as sent uncompressed
            scope["headers"] = [
                (k, v)
                for k, v in scope["headers"]
                if k.lower() not in (b"content-encoding", b"content-length")
            ] + [(b"content-length", str(len(body)).encode())]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await reply.run(self.app, scope, replay)

    def _admin_problem(self, headers: dict[str, str]) -> tuple[int, str] | None:
        if not self._admin_token:
            return 403, f"admin endpoints are disabled: set {self._admin_token_env} on the server"
        sent = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), self._admin_token.encode()):
            return 401, "send the admin token as 'Authorization: Bearer <token>'"
        return None

    async def _read_body(
        self, headers: dict[str, str], receive: Receive, inference_protocol: bool = False
    ) -> tuple[tuple[int, str] | None, bytes | None]:
        """(problem, None) for a refused body, (None, None) when the caller left, else (None, body).
        `inference_protocol`: an OIP v2 route, whose body is JSON by definition (clients such as
        tritonclient send no Content-Type); its binary tensor extension is refused by name."""
        if inference_protocol and "inference-header-content-length" in headers:
            return (
                415,
                "the binary tensor extension (Inference-Header-Content-Length) is not supported: "
                "send JSON tensors (tritonclient: binary_data=False)",
            ), None
        default = "application/json" if inference_protocol else ""
        media_type = (headers.get("content-type") or default).split(";")[0].strip().lower()
        if media_type != "application/json":
            return (
                415,
                f"Content-Type must be application/json, got {_cut(media_type, 60) or 'none'!r}",
            ), None
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            return (415, f"Content-Encoding {_cut(encoding, 40)!r} is not supported; send gzip or none"), None
        declared = headers.get("content-length", "")
        limit = self.max_body_bytes
        if declared.isdigit() and int(declared) > limit:
            return (413, f"request body is {declared} bytes; the limit is {limit}"), None
        # Read the whole body here (bounded), then replay it: a streamed body past the limit is
        # refused before the app has started, so the app never sees a half-read request.
        inflate = zlib.decompressobj(wbits=31) if encoding == "gzip" else None
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            try:
                # A client that stops sending mid-body would hold this request (and its buffer)
                # for as long as it keeps the connection open.
                async with asyncio.timeout(self.body_timeout_s):
                    message = await receive()
            except TimeoutError:
                return (
                    408,
                    f"the request body stalled: nothing received for {self.body_timeout_s:g} s",
                ), None
            if message["type"] == "http.disconnect":
                return None, None
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            if inflate is not None:
                try:
                    # max_length: a small gzip body that inflates past the limit stops here.
                    chunk = inflate.decompress(chunk, limit + 1 - size)
                except zlib.error:
                    return (400, "Content-Encoding gzip: the body is not valid gzip data"), None
                if inflate.unconsumed_tail:
                    return (413, f"request body inflates past the limit of {limit} bytes"), None
            size += len(chunk)
            if size > limit:
                return (413, f"request body exceeds the limit of {limit} bytes"), None
            chunks.append(chunk)
        if inflate is not None and not inflate.eof:
            return (400, "Content-Encoding gzip: the body is truncated gzip data"), None
        return None, b"".join(chunks)


class _Replier:
    """The guard's `send` for one request: adds x-request-id, and makes error replies bounded JSON."""

    def __init__(self, send: Send, rid: str, scope: Scope, limiter: _Limiter) -> None:
        self._send = send
        self._rid = rid
        self._scope = scope
        self._limiter = limiter
        self._start: Message | None = None  # an error reply's start, held until its body is whole
        self._body: list[bytes] = []
        self._kept = 0
        self._started = False

    async def run(self, app: App, scope: Scope, receive: Receive) -> None:
        """Call the app; an exception it lets out becomes a logged 500 JSON reply (when nothing
        was sent yet) instead of a connection left without an answer."""
        try:
            await app(scope, receive, self.send)
        except Exception:
            log.exception(
                "%s %s request_id=%s failed", scope.get("method"), routes.label(scope["path"]), self._rid
            )
            if not self._started:
                await self._finish(
                    {"status": 500, "headers": []}, b'{"error": "an unexpected error has occurred"}'
                )

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._started = True
            if message["status"] >= 400:
                self._start = message
                return
            message["headers"] = [*message.get("headers", []), (b"x-request-id", self._rid.encode())]
            await self._send(message)
            return
        if self._start is None or message["type"] != "http.response.body":
            await self._send(message)
            return
        chunk = message.get("body", b"")
        if self._kept < _ERROR_BODY_KEEP:
            self._body.append(chunk[: _ERROR_BODY_KEEP - self._kept])
            self._kept += len(self._body[-1])
        if not message.get("more_body", False):
            start, self._start = self._start, None
            await self._finish(start, b"".join(self._body))

    async def error(
        self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """The guard's own refusal (BentoML never saw the request)."""
        _count_error(status)
        body = json.dumps({"error": message}).encode()
        await self._finish({"status": status, "headers": headers or []}, body)

    async def _finish(self, start: Message, body: bytes) -> None:
        status = int(start["status"])
        payload = _bounded(_as_object(body, status))
        payload["request_id"] = self._rid
        data = json.dumps(payload).encode()
        kept = [
            (k, v)
            for k, v in start.get("headers", [])
            if k.lower() not in (b"content-length", b"content-type", b"x-request-id")
        ]
        self._started = True
        start = {
            **start,
            "type": "http.response.start",
            "headers": [
                *kept,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"x-request-id", self._rid.encode()),
            ],
        }
        if status < 500:
            self._log_user_error(status, payload)
        await self._send(start)
        await self._send({"type": "http.response.body", "body": data})

    def _log_user_error(self, status: int, payload: dict[str, Any]) -> None:
        allowed, suppressed = self._limiter.take()
        if not allowed:
            return
        path = self._scope.get("path", "")
        where = routes.template(path) or _cut(path, 80)
        more = f" ({suppressed} more client errors not logged)" if suppressed else ""
        log.info(
            "%s %s -> %d request_id=%s: %s%s",
            self._scope.get("method"),
            where,
            status,
            self._rid,
            _cut(str(payload.get("error", "")), 200),
            more,
        )


def _as_object(body: bytes, status: int) -> dict[str, Any]:
    """An error body as a JSON object with `error` (plain text, or BentoML's tuple, wrapped)."""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body.decode("utf-8", "replace").strip()
    if isinstance(parsed, list) and len(parsed) == 1:  # BentoML 1.4 replies ({"error": ...},)
        parsed = parsed[0]
    if isinstance(parsed, dict):
        out = dict(parsed)
        out.setdefault("error", f"HTTP {status}")
        return out
    return {"error": str(parsed) if parsed else f"HTTP {status}"}


def _bounded(value: Any, depth: int = 0) -> Any:
    """`value` with strings cut to ERROR_TEXT_MAX, lists/dicts to ERROR_ITEMS_MAX items, depth 6."""
    if isinstance(value, str):
        return _cut(value, ERROR_TEXT_MAX)
    if depth > 6:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())
        out = {_cut(str(k), ERROR_TEXT_MAX): _bounded(v, depth + 1) for k, v in items[:ERROR_ITEMS_MAX]}
        return out
    if isinstance(value, list | tuple):
        out_list = [_bounded(v, depth + 1) for v in value[:ERROR_ITEMS_MAX]]
        if len(value) > ERROR_ITEMS_MAX:
            out_list.append(f"... {len(value) - ERROR_ITEMS_MAX} more")
        return out_list
    return value


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _count_error(status: int) -> None:
    from flywheel.serving import metrics

    reasons = {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "no_route",
        405: "method",
        408: "body_timeout",
        413: "body_too_large",
        415: "unsupported_media_type",
    }
    metrics.error("none", reasons.get(status, str(status)))


class _Ids:
    """Request ids: a random 16-hex prefix per process (drawn on first use, in the worker, after
    any fork) and a 16-hex counter: unique like a uuid4 at a fraction of its cost."""

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._seq = itertools.count()

    def next(self) -> str:
        if self._pid != os.getpid():
            self._pid, self._prefix, self._seq = os.getpid(), secrets.token_hex(8), itertools.count()
        return f"{self._prefix}{next(self._seq):016x}"


class _Limiter:
    """A token bucket: `burst` lines at once, `rate` a second after; counts what it refused."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._refused = 0

    def take(self) -> tuple[bool, int]:
        """(allowed, how many were refused since the last allowed one)."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            self._refused += 1
            return False, 0
        self._tokens -= 1
        refused, self._refused = self._refused, 0
        return True, refused
