"""A fault-injecting HTTP proxy in front of the Kubernetes API emulator.

The operator under test talks to the proxy (its kubeconfig says so); the proxy forwards to the
emulator unless a rule claims the request. Faults, each as a `Rule(fault=...)`:

- "before": answer `status` without forwarding (the write did not happen);
- "after": forward (the write happened), then answer `status` instead of the server's answer;
- "lose": forward, then drop the connection without an answer (a lost response);
- "delay": wait `seconds`, then forward;
- "hang": never answer; the request ends only when the client gives up (`abandoned` counts them);
- "gone": answer a watch request with HTTP 410 (its resourceVersion is too old);
- "gone-event": forward a watch, pass `after` events, then send an ERROR event with code 410 and
  end the stream (the other form of the same news); "error-event": the same with code `status`;
- "throttle": 429 with Retry-After: 1 (a burst is `times` of them).

Deterministic: a rule hits the matching requests after its first `skip`, `times` of them (-1:
all), and with `probability` < 1 draws from the proxy's seeded random generator. Every request
is logged with the fault it got, so tests bound what the operator sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
from typing import Any

import aiohttp
import aiohttp.web

FAULTS = ("before", "after", "lose", "delay", "hang", "gone", "gone-event", "error-event", "throttle")
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclasses.dataclass
class Rule:
    fault: str
    method: str | None = None
    path: str = ""
    """A regular expression searched in the path (query string included)."""
    watch: bool | None = None
    """True: only watch requests; False: only others; None: both."""
    times: int = 1
    skip: int = 0
    status: int = 500
    seconds: float = 0.0
    after: int = 0
    probability: float = 1.0
    seen: int = 0
    hits: int = 0

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"Rule.fault={self.fault!r}: choose from {', '.join(FAULTS)}")


@dataclasses.dataclass
class Sent:
    method: str
    path: str
    fault: str | None


class FaultProxy:
    def __init__(self, upstream: str, seed: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.rng = random.Random(seed)
        self.rules: list[Rule] = []
        self.log: list[Sent] = []
        self.abandoned = 0
        self.url = ""
        self.process: Any = None
        """The operator process behind the proxy, when a test starts one."""
        self._runner: aiohttp.web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def sent(self, method: str | None = None, path: str = "", *, watch: bool | None = None) -> list[Sent]:
        return [
            s
            for s in self.log
            if (method is None or s.method == method)
            and re.search(path, s.path)
            and (watch is None or _is_watch(s.path) == watch)
        ]

    async def __aenter__(self) -> FaultProxy:
        app = aiohttp.web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = aiohttp.web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    def _match(self, request: aiohttp.web.Request) -> Rule | None:
        path = request.path_qs
        for rule in self.rules:
            if rule.times == 0 or (rule.method and rule.method != request.method):
                continue
            if not re.search(rule.path, path) or (rule.watch is not None and rule.watch != _is_watch(path)):
                continue
            rule.seen += 1
            if rule.seen <= rule.skip or self.rng.random() >= rule.probability:
                continue
            if rule.times > 0:
                rule.times -= 1
            rule.hits += 1
            return rule
        return None

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        rule = self._match(request)
        self.log.append(Sent(request.method, request.path_qs, rule.fault if rule else None))
        body = await request.read()
        if rule is None:
            return await self._forward(request, body)
        if rule.fault in ("before", "throttle", "gone"):
            code = {"throttle": 429, "gone": 410}.get(rule.fault, rule.status)
            return _status(code)
        if rule.fault == "delay":
            await asyncio.sleep(rule.seconds)
            return await self._forward(request, body)
        if rule.fault == "hang":
            while request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.05)
            self.abandoned += 1
            return aiohttp.web.Response(status=504)  # to nobody: the client left
        if rule.fault in ("gone-event", "error-event"):
            code = 410 if rule.fault == "gone-event" else rule.status
            return await self._forward(request, body, cut_after=rule.after, code=code)
        await self._forward_only(request, body)
        if rule.fault == "after":
            return _status(rule.status)
        assert rule.fault == "lose"
        if request.transport is not None:
            request.transport.abort()
        return aiohttp.web.Response(status=502)  # never sent: the connection is gone

    async def _upstream(self, request: aiohttp.web.Request, body: bytes) -> Any:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        return self._session.request(
            request.method, self.upstream + request.path_qs, data=body or None, headers=headers
        )

    async def _forward_only(self, request: aiohttp.web.Request, body: bytes) -> None:
        async with await self._upstream(request, body) as answer:
            await answer.read()

    async def _forward(
        self, request: aiohttp.web.Request, body: bytes, cut_after: int | None = None, code: int = 410
    ) -> aiohttp.web.StreamResponse:
        async with await self._upstream(request, body) as answer:
            if not _is_watch(request.path_qs) or answer.status != 200:
                data = await answer.read()
                return aiohttp.web.Response(
                    status=answer.status, body=data, content_type=answer.content_type or "application/json"
                )
            out = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await out.prepare(request)
            passed = 0
            try:
                while True:
                    if cut_after is not None and passed >= cut_after:
                        error = {"type": "ERROR", "object": _status_body(code)}
                        await out.write(json.dumps(error).encode() + b"\n")
                        break
                    line = await answer.content.readline()
                    if not line:
                        break
                    if line.strip():
                        await out.write(line)
                        passed += 1
            except (ConnectionResetError, aiohttp.ClientError):
                pass  # the operator or the emulator closed the stream
            return out


def _is_watch(path: str) -> bool:
    return "watch=true" in path or "watch=1" in path


def _status_body(code: int) -> dict[str, Any]:
    reason = {410: "Expired", 429: "TooManyRequests", 409: "Conflict"}.get(code, "InternalError")
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": f"injected {code}", "details": {"retryAfterSeconds": 1} if code == 429 else {}}  # fmt: skip


def _status(code: int) -> aiohttp.web.Response:
    headers = {"Retry-After": "1"} if code == 429 else {}
    return aiohttp.web.json_response(_status_body(code), status=code, headers=headers)
