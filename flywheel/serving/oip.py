"""The Open Inference Protocol v2 (REST) beside the records API, for clients that speak it
(KServe's, Triton's tritonclient, ...). An ASGI middleware inside the guard, so the same route
set, request ids, body checks, bounded error replies and logging apply.

    GET  /v2                                  server metadata
    GET  /v2/health/live | /v2/health/ready   200 (ready: 503 until the models are loaded)
    GET  /v2/models/{name}[/versions/{v}]     model metadata: inputs and outputs from the card
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer

`name` is the Deployment's name. A version is a model version the server holds (the champion's or
the challenger's) and pins the request to it; without one the traffic settings route it, as on
/predict. Inputs, JSON tensors only (not Triton's binary extension):

- the numeric features as one FP32 (or FP64) tensor `input`, shape [N, F], in card order (an
  all-numeric model takes nothing else), or as one tensor each, named as in the card, shape [N];
- each categorical feature as a BYTES tensor named as in the card, shape [N] (or [N, 1]);
- for a model whose card declares named tensors (`inputs.kind: tensors`, e.g. an image), each
  declared tensor by name instead, shape [N, *shape] or [N, prod(shape)] (flywheel.serving.tensors).

Rows become the same records /predict validates (a bad value is a 400 naming the tensor, the
row and the problem), scored by FlywheelService.answer: the same routing, shadowing, traffic
log and metrics. Outputs: `predictions` ([N]: BYTES class labels, or FP32 values for
regression) and, for classification, `probabilities` ([N] FP32, the predicted class's). Errors
are the protocol's error object, {"error": "<message>"} (the guard adds request_id).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import pydantic

import flywheel
from flywheel.serving import guard, routing
from flywheel.serving import tensors as tensors_mod

if TYPE_CHECKING:
    from flywheel.serving.service import FlywheelService

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

INPUT = "input"  # the [N, F] tensor of an all-numeric model
PREDICTIONS, PROBABILITIES = "predictions", "probabilities"
_FLOATS = ("FP32", "FP64")
_REQUEST_KEYS = {"id", "parameters", "inputs", "outputs"}
_TENSOR_KEYS = {"name", "shape", "datatype", "data", "parameters"}
_PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<what>/ready|/infer)?$")

_service: FlywheelService | None = None


def serve(service: FlywheelService) -> None:
    """Called by the service once its models are loaded (in each worker)."""
    global _service
    _service = service


class Problem(Exception):
    """A request the protocol answers with an error object."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class OpenInference:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/v2" or path.startswith("/v2/")):
            await self.app(scope, receive, send)
            return
        try:
            status, body = await _handle(scope, receive, path)
        except Problem as exc:
            status, body = exc.status, {"error": exc.message}
        except Exception:  # a bug or a model failure: logged with its traceback, answered as JSON
            log.exception("Open Inference Protocol request %s failed", guard.request_id(scope))
            status, body = 500, {"error": "an unexpected error has occurred; see the server log"}
        data = b"" if scope["method"] == "HEAD" else json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


async def _handle(scope: Scope, receive: Receive, path: str) -> tuple[int, dict[str, Any]]:
    service = _service
    ready = service is not None and service.__is_ready__()
    if path == "/v2":
        return 200, {"name": "flywheel", "version": flywheel.__version__, "extensions": []}
    if path == "/v2/health/live":
        return 200, {"live": True}
    if path == "/v2/health/ready":
        return (200 if ready else 503), {"ready": ready}
    match = _PATH.match(path)
    if match is None:  # the guard let only known routes through; kept for safety
        raise Problem(404, "no such route")
    if service is None or not ready:
        raise Problem(503, "the models are still loading")
    role = _role(service, match["name"], match["version"])
    what = match["what"]
    if what is None:
        return 200, _metadata(service, role)
    if what == "/ready":
        return 200, {"name": match["name"], "ready": True}
    return 200, await _infer(service, scope, receive, role, match["version"] is not None)


def _role(service: FlywheelService, name: str, version: str | None) -> str:
    """The role whose model answers: champion for the name alone (routing decides at /infer)."""
    if name != service.config.name:
        raise Problem(404, f"model {name[:100]!r} not found; this server serves {service.config.name!r}")
    if version is None:
        return routing.CHAMPION
    for role, scorer in service.scorers.items():
        if scorer.model.version == version:
            return role
    held = sorted(s.model.version for s in service.scorers.values())
    raise Problem(404, f"model {name!r} has no version {version[:100]!r}; this server holds {held}")


def _metadata(service: FlywheelService, role: str) -> dict[str, Any]:
    card = service.scorers[role].model.card
    numeric = [f.name for f in card.features if f.type == "numeric"]
    inputs = [{"name": INPUT, "datatype": "FP32", "shape": [-1, len(numeric)]}] if numeric else []
    inputs += [
        {"name": f.name, "datatype": "BYTES", "shape": [-1]} for f in card.features if f.type != "numeric"
    ]
    if card.tensors:
        inputs = [{"name": t.name, "datatype": t.datatype, "shape": [-1, *t.shape]} for t in card.tensors]
    classification = card.task == "classification"
    outputs = [{"name": PREDICTIONS, "datatype": "BYTES" if classification else "FP32", "shape": [-1]}]
    if classification:
        outputs.append({"name": PROBABILITIES, "datatype": "FP32", "shape": [-1]})
    return {
        "name": service.config.name,
        "versions": sorted(s.model.version for s in service.scorers.values()),
        "platform": "flywheel",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {"features": card.feature_names, "classes": list(card.classes)},
    }


async def _infer(
    service: FlywheelService, scope: Scope, receive: Receive, role: str, pinned: bool
) -> dict[str, Any]:
    from flywheel.serving import service as service_mod

    request = _json(await _body(receive))
    card = service.card
    rows = _records(request["inputs"], card, service.config.max_request_rows)
    _validate(service, rows, request["inputs"])
    wanted = _outputs(request.get("outputs"), card.task)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    # The caller's x-request-id, else the request's `id` (what OIP clients set), else the guard's.
    body_id = request.get("id")
    if "x-request-id" not in headers and isinstance(body_id, str) and guard.valid_request_id(body_id):
        request_id = body_id
    else:
        request_id = guard.request_id(scope) or headers.get("x-request-id") or ""
    try:
        answered, result = await service.answer(rows, headers, request_id, role if pinned else None)
    except service_mod.Refused as exc:
        raise Problem(exc.status, exc.message) from exc
    n = len(rows)
    outputs = []
    if PREDICTIONS in wanted:
        labels = card.task == "classification"
        data = [str(p) for p in result.predictions] if labels else result.predictions
        outputs.append(
            {"name": PREDICTIONS, "datatype": "BYTES" if labels else "FP32", "shape": [n], "data": data}
        )
    if PROBABILITIES in wanted:
        outputs.append(
            {"name": PROBABILITIES, "datatype": "FP32", "shape": [n], "data": result.probabilities}
        )
    reply: dict[str, Any] = {
        "model_name": service.config.name,
        "model_version": result.version,
        "outputs": outputs,
        "parameters": {"role": answered, "request_id": request_id},
    }
    reply["id"] = body_id if isinstance(body_id, str) else request_id
    return reply


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:  # the guard has read and bounded the body already: this is its replay
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Problem(400, "the client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _json(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body)
    except ValueError as exc:
        raise Problem(400, f"invalid JSON: {exc}") from exc
    except RecursionError as exc:  # [[[[...: nesting deeper than the parser's stack, not a bug
        raise Problem(400, "invalid JSON: nested too deeply") from exc
    if not isinstance(request, dict):
        raise Problem(400, "the request must be a JSON object with `inputs`")
    unknown = sorted(set(request) - _REQUEST_KEYS)
    if unknown:
        raise Problem(400, f"unknown request keys {unknown}; the protocol allows {sorted(_REQUEST_KEYS)}")
    if not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise Problem(400, "inputs: a non-empty list of tensors is required")
    return request


def _outputs(requested: Any, task: str) -> set[str]:
    available = {PREDICTIONS, PROBABILITIES} if task == "classification" else {PREDICTIONS}
    if requested is None:
        return available
    if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
        raise Problem(400, 'outputs: a list of {"name": ...} objects')
    names = {str(o.get("name")) for o in requested}
    unknown = sorted(names - available)
    if unknown:
        raise Problem(400, f"outputs: no output named {unknown}; this model has {sorted(available)}")
    return names


def _records(inputs: list[Any], card: Any, max_rows: int) -> list[dict[str, Any]]:
    """The tensors as one record per row, keyed by feature name (checked by _validate)."""
    tensors: dict[str, dict[str, Any]] = {}
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise Problem(400, f"inputs[{i}]: a tensor object with name, shape, datatype and data")
        unknown = sorted(set(tensor) - _TENSOR_KEYS)
        missing = sorted({"name", "shape", "datatype", "data"} - set(tensor))
        if unknown or missing:
            raise Problem(400, f"inputs[{i}]: missing keys {missing}, unknown keys {unknown[:10]}")
        name = tensor["name"]
        if not isinstance(name, str):
            raise Problem(400, f"inputs[{i}].name: a string")
        if name in tensors:
            raise Problem(400, f"inputs[{i}]: tensor {name[:60]!r} sent twice; send each tensor once")
        tensors[name] = tensor
    if card.tensors:
        try:
            return tensors_mod.records(tensors, card, max_rows)
        except tensors_mod.Refused as exc:
            raise Problem(400, str(exc)) from exc
    names = card.feature_names
    numeric = [f.name for f in card.features if f.type == "numeric"]
    rows: list[dict[str, Any]] | None = None
    if INPUT in tensors and INPUT not in names:
        rows = _matrix(tensors.pop(INPUT), numeric, max_rows)
    covered = set(numeric) if rows is not None else set()
    unknown = sorted(set(tensors) - (set(names) - covered))
    missing = [f.name for f in card.features if f.name not in set(tensors) | covered and not f.nullable]
    if unknown or missing:
        raise Problem(
            400,
            f"inputs: unknown tensors {[u[:60] for u in unknown[:10]]}, missing {missing}: send the numeric "
            f"features {numeric} as one FP32 tensor {INPUT!r} [N, {len(numeric)}] (or one tensor each, "
            f"shape [N]) and each categorical feature as a BYTES tensor [N] named after it",
        )
    n = len(rows) if rows is not None else None
    columns = {}
    for f in card.features:
        if f.name not in tensors:
            continue
        tensor = tensors[f.name]
        kinds = _FLOATS if f.type == "numeric" else ("BYTES",)
        if tensor["datatype"] not in kinds:
            got = str(tensor["datatype"])[:20]
            raise Problem(400, f"input {f.name}: datatype {got!r}; expected {' or '.join(kinds)}")
        shape = _shape(f.name, tensor["shape"])
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise Problem(400, f"input {f.name}: shape {shape}; expected [N] or [N, 1]")
        if n is not None and shape[0] != n:
            raise Problem(400, f"input {f.name}: {shape[0]} rows where the other inputs have {n}")
        n = shape[0]
        columns[f.name] = _flat(f.name, tensor["data"], n)
    if n is None or not 1 <= n <= max_rows:
        raise Problem(400, f"inputs: 1 to {max_rows} rows per request, got {n}")
    base = rows if rows is not None else [{} for _ in range(n)]
    return [{**base[r], **{name: values[r] for name, values in columns.items()}} for r in range(n)]


def _matrix(tensor: dict[str, Any], numeric: list[str], max_rows: int) -> list[dict[str, Any]]:
    """The numeric features of every row from one [N, F] tensor (features in card order)."""
    if tensor["datatype"] not in _FLOATS:
        raise Problem(400, f"input {INPUT}: datatype {str(tensor['datatype'])[:20]!r}; expected FP32")
    width = len(numeric)
    shape = _shape(INPUT, tensor["shape"])
    if len(shape) != 2 or shape[1] != width:
        raise Problem(400, f"input {INPUT}: shape {shape}; expected [N, {width}] (features {numeric})")
    if not 1 <= shape[0] <= max_rows:
        raise Problem(400, f"input {INPUT}: 1 to {max_rows} rows per request, got {shape[0]}")
    values = _flat(INPUT, tensor["data"], shape[0] * width)
    return [dict(zip(numeric, values[r * width : (r + 1) * width], strict=True)) for r in range(shape[0])]


def _shape(name: str, shape: Any) -> list[int]:
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise Problem(400, f"input {name}: shape must be a list of non-negative integers")
    return shape[:4]


def _flat(name: str, data: Any, count: int) -> list[Any]:
    if not isinstance(data, list):
        raise Problem(400, f"input {name}: data must be a list")
    values: list[Any] = data
    if values and isinstance(values[0], list):  # nested by row, as the protocol also allows
        values = [v for row in values for v in (row if isinstance(row, list) else [row])]
    if len(values) != count:
        raise Problem(400, f"input {name}: {len(values)} values where its shape says {count}")
    return values


def _validate(service: FlywheelService, rows: list[dict[str, Any]], inputs: list[Any]) -> None:
    """The records /predict would accept, or a 400 naming the tensor, the row and the problem."""
    try:
        service.records_adapter.validate_python(rows)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        loc = first["loc"]
        row, feature = (loc[0], str(loc[1])) if len(loc) >= 2 else (loc[0] if loc else 0, "?")
        sent = {t.get("name") for t in inputs if isinstance(t, dict)}
        tensor = INPUT if feature not in sent and INPUT in sent else feature
        tensor = next((t.name for t in service.card.tensors if feature in t.columns), tensor)
        where = f"input {tensor} row {row}" + (f" ({feature})" if tensor != feature else "")
        raise Problem(400, f"{where}: {first['msg']}") from exc
