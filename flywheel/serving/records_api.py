"""POST /predict answered without BentoML's API layer: the same contract, less CPU per request.

BentoML's API endpoint builds an IO descriptor from the request, calls the method through its
caller machinery and serialises the reply model: measured by bench.serving, a /predict request
cost ~1.9 ms of server CPU where the Open Inference Protocol route (oip.py, plain ASGI over the
same FlywheelService.answer) cost ~1.1 ms, and KServe ~1.5. This middleware, inside the guard,
answers /predict the same plain way: pydantic validates the body in one step from JSON (with the
model BentoML would build, so errors have the same `error`, `detail[].loc` and messages), the
service routes, scores, logs and counts it, and the reply is written with json.dumps.

The @bentoml.api route stays declared (OpenAPI schema, and the path used before the models load).

POST /feedback (flywheel.serving.feedback) is answered here too, the same plain way; it has no
BentoML route, so before the models load it is a 503 rather than BentoML's 404.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import pydantic

from flywheel.serving import feedback, guard

if TYPE_CHECKING:
    from flywheel.serving.service import FlywheelService

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_service: FlywheelService | None = None
_input: Any = None  # the request model: {"records": [...]}, nothing else


def serve(service: FlywheelService, records_type: Any) -> None:
    """Called by the service once its models are loaded (in each worker)."""
    global _service, _input
    # Named "Input", as BentoML names its model: error messages say "... validation error for Input".
    _input = pydantic.create_model(
        "Input", __config__=pydantic.ConfigDict(extra="forbid"), records=(records_type, ...)
    )
    _service = service


class RecordsApi:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = _service
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if scope["path"] == feedback.ROUTE:
            status, body, headers = await _feedback(service, scope, receive)
        elif scope["path"] == "/predict" and service is not None:
            status, body, headers = await _predict(service, scope, receive)
        else:
            await self.app(scope, receive, send)
            return
        data = json.dumps(body, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


async def _predict(
    service: FlywheelService, scope: Scope, receive: Receive
) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    from flywheel.serving import service as service_mod

    body = await _body(receive)
    try:
        # An empty body reads as {}: BentoML's answer was "records: Field required", not bad JSON.
        records = _input.model_validate_json(body or b"{}").records
    except pydantic.ValidationError as exc:
        detail = exc.errors(include_context=False, include_input=False)
        return 400, {"error": f"{exc.error_count()} validation error for {exc.title}", "detail": detail}, []
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    request_id = guard.request_id(scope) or headers.get("x-request-id") or ""
    try:
        role, result = await service.answer(records, headers, request_id)
    except service_mod.Refused as exc:
        return exc.status, {"error": exc.message, "request_id": request_id}, []
    except Exception:  # the model failed: logged with its traceback, a 500 as BentoML answered it
        log.exception("Scoring request %s failed", request_id)
        return 500, {"error": "An unexpected error has occurred, please check the server log."}, []
    reply = {
        "request_id": request_id,
        "model": {"role": role, "version": result.version},
        "predictions": result.predictions,
        "probabilities": result.probabilities,
    }
    headers_out = [
        (b"x-flywheel-model-role", role.encode()),
        (b"x-flywheel-model-version", result.version.encode("latin-1", "replace")),
    ]
    return 200, reply, headers_out


async def _feedback(
    service: FlywheelService | None, scope: Scope, receive: Receive
) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
    import anyio

    request_id = guard.request_id(scope) or ""
    if service is None or service.feedback is None:
        return 503, {"error": "the server is starting: send the feedback again shortly"}, []
    body = await _body(receive)
    try:
        labels = feedback.Feedback.model_validate_json(body or b"{}").labels
    except pydantic.ValidationError as exc:
        detail = exc.errors(include_context=False, include_input=False)
        return 400, {"error": f"{exc.error_count()} validation error for Feedback", "detail": detail}, []
    try:
        await anyio.to_thread.run_sync(service.feedback.write, labels)
    except Exception:  # the store refused the write: nothing was kept, the caller may retry
        log.exception("Storing feedback of request %s failed", request_id)
        return 503, {"error": "the labels could not be stored; nothing was kept, send them again"}, []
    service.feedback_received(len(labels))
    return 200, {"accepted": len(labels), "request_id": request_id}, []


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:  # the guard has read and bounded the body already: this is its replay
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
