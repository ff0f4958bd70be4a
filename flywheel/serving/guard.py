"""An ASGI middleware that turns transport-level mistakes into clear 4xx JSON before BentoML.

BentoML parses any body it does not recognise as JSON and reads bodies of any size. For the API
routes this guard answers 415 unless the body is declared application/json, and 413 when the body
is larger than maxBodyBytes (declared or streamed), so no oversized request reaches the parser.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

GUARDED_PREFIXES = ("/predict", "/admin/")


class RequestGuard:
    def __init__(self, app: App, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith(GUARDED_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            await _reply(send, 415, f"Content-Type must be application/json, got {media_type or 'none'!r}")
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await _reply(send, 413, f"request body is {declared} bytes; the limit is {self.max_body_bytes}")
            return
        # Read the whole body here (bounded), then replay it: a streamed body past the limit is
        # refused before the app has started, so the app never sees a half-read request.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _reply(send, 413, f"request body exceeds the limit of {self.max_body_bytes} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _reply(send: Send, status: int, message: str) -> None:
    from flywheel.serving import metrics

    metrics.error("none", {413: "body_too_large", 415: "unsupported_media_type"}.get(status, str(status)))
    payload = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
