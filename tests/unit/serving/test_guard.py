"""The request guard as an ASGI app around a stand-in for BentoML: routes, ids, bodies, error replies."""

from __future__ import annotations

import gzip
import json
import logging
from typing import Any

import pytest

from flywheel.serving import bentoml_hooks, guard, routes

TOKEN_ENV = "TEST_GUARD_ADMIN_TOKEN"
JS = {"content-type": "application/json"}


class Reply:
    def __init__(self, sent: list[dict[str, Any]]) -> None:
        self.status = sent[0]["status"]
        self.headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
        self.body = b"".join(m.get("body", b"") for m in sent[1:])

    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    app: Any, path: str, headers: dict[str, str], chunks: list[bytes] | None = None, method: str = "POST"
) -> Reply:
    chunks = chunks if chunks is not None else [b""]
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return Reply(sent)


class Inner:
    """Stands in for BentoML: records what reached it and answers `status` with `body`."""

    def __init__(self, status: int = 200, body: bytes = b"ok", content_type: bytes = b"text/plain") -> None:
        self.status, self.body, self.content_type = status, body, content_type
        self.seen: list[tuple[dict[str, Any], bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = (await receive())["body"] if scope["method"] == "POST" else b""
        self.seen.append((scope, body))
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [(b"content-type", self.content_type)],
            }
        )
        await send({"type": "http.response.body", "body": self.body})


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    return "s3cret"


def make(inner: Any, limit: int = 100) -> guard.RequestGuard:
    return guard.RequestGuard(inner, max_body_bytes=limit, admin_token_env=TOKEN_ENV)


async def test_refuses_wrong_type_and_big_bodies_and_replays_good_ones() -> None:
    inner = Inner()
    app = make(inner, limit=10)
    assert (await call(app, "/predict", {"content-type": "text/csv"}, [b"{}"])).status == 415
    assert (await call(app, "/predict", {**JS, "content-length": "11"}, [b"x" * 11])).status == 413
    assert (await call(app, "/predict", JS, [b"x" * 6, b"x" * 6])).status == 413  # streamed, no length
    ok = await call(app, "/predict", {"content-type": "application/json; charset=utf-8"}, [b"{", b"}"])
    assert (ok.status, ok.body) == (200, b"ok")
    assert [body for _, body in inner.seen] == [b"{}"]


async def test_gzip_bodies_are_inflated_within_the_limit_and_other_encodings_named() -> None:
    inner = Inner()
    app = make(inner, limit=100)
    data = b'{"records": [1, 2, 3]}'
    packed = gzip.compress(data)
    zipped = {**JS, "content-encoding": "gzip", "content-length": str(len(packed))}
    assert (await call(app, "/predict", zipped, [packed[:5], packed[5:]])).status == 200
    scope, body = inner.seen[-1]
    assert body == data
    assert (b"content-length", str(len(data)).encode()) in scope["headers"]
    assert all(k != b"content-encoding" for k, _ in scope["headers"])
    bomb = gzip.compress(b" " * 100_000)  # ~100 bytes that inflate to 100 KB
    assert (await call(app, "/predict", {**JS, "content-encoding": "gzip"}, [bomb])).status == 413
    assert (await call(app, "/predict", {**JS, "content-encoding": "gzip"}, [b"not gzip"])).status == 400
    assert (await call(app, "/predict", {**JS, "content-encoding": "gzip"}, [packed[:-4]])).status == 400
    br = await call(app, "/predict", {**JS, "content-encoding": "br"}, [b"{}"])
    assert br.status == 415 and "Content-Encoding 'br'" in br.json()["error"]
    assert len(inner.seen) == 1


async def test_unknown_paths_and_methods_are_json_404_and_405() -> None:
    inner = Inner()
    app = make(inner)
    missing = await call(app, "/predictX", JS, [b"{}"])
    assert missing.status == 404 and "/predictX" in missing.json()["error"]
    assert missing.headers["content-type"] == "application/json"
    wrong = await call(app, "/predict", {}, method="GET")
    assert wrong.status == 405 and wrong.headers["allow"] == "POST" and "GET" in wrong.json()["error"]
    long_path = await call(app, "/" + "x" * 5000, {}, method="GET")
    assert long_path.status == 404 and len(long_path.body) < 400
    assert (await call(app, "/metrics", {}, method="GET")).status == 200
    assert (await call(app, "/v2/models/wine/versions/3/ready", {}, method="GET")).status == 200
    assert inner.seen[-1][0]["path"] == "/v2/models/wine/versions/3/ready"


async def test_request_ids_checked_echoed_and_in_every_error_body() -> None:
    inner = Inner()
    app = make(inner)
    ok = await call(app, "/readyz", {"x-request-id": "caller-1:a/b+c=d"}, method="GET")
    assert ok.headers["x-request-id"] == "caller-1:a/b+c=d"
    assert guard.request_id(inner.seen[-1][0]) == "caller-1:a/b+c=d"
    made = await call(app, "/readyz", {}, method="GET")
    assert len(made.headers["x-request-id"]) == 32 and int(made.headers["x-request-id"], 16) >= 0
    for bad in ("x" * (guard.REQUEST_ID_MAX + 1), "has space", "new\nline", ""):
        refused = await call(app, "/readyz", {"x-request-id": bad}, method="GET")
        assert refused.status == 400 and "x-request-id" in refused.json()["error"], bad
        assert len(refused.body) < 400
    for reply in (
        await call(app, "/nope", {"x-request-id": "r-9"}),
        await call(app, "/predict", {"x-request-id": "r-9"}, method="PUT"),
        await call(app, "/predict", {"x-request-id": "r-9", "content-type": "text/csv"}),
    ):
        assert reply.json()["request_id"] == "r-9" and reply.headers["x-request-id"] == "r-9"


async def test_downstream_errors_become_bounded_json_with_the_request_id() -> None:
    key = "k" * 1_000_000
    detail = [{"loc": ["records", i, key if i < 5 else "k"], "msg": "Extra inputs"} for i in range(100)]
    inner = Inner(
        400, json.dumps({"error": "100 validation errors", "detail": detail}).encode(), b"application/json"
    )
    reply = await call(make(inner, limit=10**9), "/predict", {**JS, "x-request-id": "r-1"}, [b"{}"])
    assert reply.status == 400 and len(reply.body) < 50_000
    out = reply.json()
    assert out["request_id"] == "r-1" and out["error"] == "100 validation errors"
    assert len(out["detail"]) == guard.ERROR_ITEMS_MAX + 1 and out["detail"][-1] == "... 80 more"
    assert out["detail"][0]["loc"][2].startswith("kkk") and len(out["detail"][0]["loc"][2]) < 400
    plain = await call(make(Inner(500, b"Internal Server Error")), "/readyz", {}, method="GET")
    assert plain.status == 500 and plain.json()["error"] == "Internal Server Error"
    assert plain.headers["content-type"] == "application/json"
    tupled = await call(make(Inner(400, b'[{"error": "Invalid JSON"}]')), "/predict", JS, [b"{"])
    assert tupled.json()["error"] == "Invalid JSON"  # BentoML 1.4 replies a one-item list


async def test_admin_token_is_checked_before_the_body(token: str) -> None:
    inner = Inner()
    app = make(inner)
    assert (await call(app, "/admin/promote", JS, [b"not even json"])).status == 401
    wrong = {**JS, "authorization": "Bearer nope"}
    assert (await call(app, "/admin/promote", wrong, [b"{}"])).status == 401
    assert inner.seen == []
    right = {**JS, "authorization": f"Bearer {token}"}
    assert (await call(app, "/admin/promote", right, [b"{}"])).status == 200


async def test_admin_is_off_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    reply = await call(make(Inner()), "/admin/promote", {**JS, "authorization": "Bearer "}, [b"{}"])
    assert reply.status == 403 and TOKEN_ENV in reply.json()["error"]


async def test_client_errors_are_logged_once_each_without_traceback_and_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make(Inner())
    with caplog.at_level(logging.INFO, logger="flywheel.serving.requests"):
        for i in range(guard.LOG_BURST + 30):
            await call(app, f"/nope-{i}", {"x-request-id": f"id-{i}"}, method="GET")
    lines = [r for r in caplog.records if r.name == "flywheel.serving.requests"]
    assert len(lines) == guard.LOG_BURST  # the rest of the burst is counted, not written
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in lines)
    assert "404 request_id=id-0" in lines[0].getMessage()


def test_route_labels_are_a_fixed_set() -> None:
    assert routes.label("/predict") == "/predict"
    assert routes.label("/v2/models/anything/infer") == "/v2/models/{name}/infer"
    assert routes.label("/v2/models/a/versions/b/infer") == "/v2/models/{name}/versions/{version}/infer"
    labels = {routes.label(f"/unknown/{i}") for i in range(1000)} | {routes.label("/v2/models/" + "x" * 300)}
    assert labels == {routes.OTHER}


async def test_the_metrics_middleware_sees_the_label_and_the_guard_the_real_path() -> None:
    seen: list[str] = []

    class Metrics:  # stands in for BentoML's middleware: records the path it labels with
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["path"])
            await self.app(scope, receive, send)

    inner = Inner()
    labelled = type("Labelled", (bentoml_hooks._Labelled, Metrics), {})(make(inner))
    await call(labelled, "/v2/models/wine/ready", {}, method="GET")
    await call(labelled, "/no/such/path", {}, method="GET")
    assert seen == ["/v2/models/{name}/ready", routes.OTHER]
    assert [scope["path"] for scope, _ in inner.seen] == ["/v2/models/wine/ready"]


async def test_an_exception_from_the_app_is_a_logged_500_json_reply(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("bug")

    with caplog.at_level(logging.ERROR, logger="flywheel.serving.requests"):
        reply = await call(make(broken), "/v2/models/m/infer", {**JS, "x-request-id": "b-1"}, [b"{}"])
    assert (
        reply.status == 500 and reply.json()["request_id"] == "b-1" and "unexpected" in reply.json()["error"]
    )
    assert any(r.exc_info for r in caplog.records)


async def test_a_stalled_body_is_a_408_not_a_request_held_forever() -> None:
    import asyncio

    inner = Inner()
    app = guard.RequestGuard(inner, max_body_bytes=100, admin_token_env=TOKEN_ENV, body_timeout_s=0.05)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "headers": [(b"content-type", b"application/json")],
    }
    parts = [{"type": "http.request", "body": b'{"rec', "more_body": True}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if parts:
            return parts.pop(0)
        await asyncio.Event().wait()  # the client sends nothing more and keeps the connection
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    reply = Reply(sent)
    assert reply.status == 408 and "stalled" in reply.json()["error"] and inner.seen == []
