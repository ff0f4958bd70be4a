"""FlywheelService: the BentoML service of a Deployment (champion, optional challenger).

    bentoml serve flywheel.serving.service:FlywheelService --port 3000

The serving config (flywheel.serving.config) is read once when this module is imported: the
champion's model card types the request (a bad row is a 400 naming the field), batching settings
size the adaptive batcher. Models load once, in __init__; /readyz turns 200 only after that.

POST /predict   {"records": [{<feature>: value, ...}, ...]}
             -> {"request_id", "model": {"role", "version"}, "predictions", "probabilities"}
                (answered by records_api, which skips BentoML's API layer once the models are loaded)
POST /feedback  {"labels": [{"request_id", "record_index", "label"}, ...]}: ground truth for earlier
                requests, stored beside the traffic log (flywheel.serving.feedback)
POST /admin/promote {"uri": <model dir>, "quantized": true}   (Bearer token; see config)
/v2/...         the Open Inference Protocol v2 (REST): flywheel.serving.oip
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hmac
import itertools
import logging
import os
import random
import secrets
import time
from typing import Any

import anyio
import bentoml
import pydantic
from starlette import responses

from flywheel import errors
from flywheel.api import contract
from flywheel.serving import (
    bentoml_hooks,
    config,
    feedback,
    guard,
    metrics,
    models,
    numbers,
    oip,
    records_api,
    routing,
    schema,
    scoring,
    traffic,
)

log = logging.getLogger(__name__)

# Read once at import: BentoML builds the API's input type and batcher from the class definition.
_CONFIG = (
    config.load()
    if os.environ.get(contract.ENV_SERVING_CONFIG) or os.environ.get(contract.ENV_CHAMPION_URI)
    else None
)
_CARD = models.read_card(_CONFIG.champion.uri) if _CONFIG else None
Records: Any = (
    schema.records_type(_CARD, _CONFIG.max_request_rows) if _CONFIG and _CARD else (schema.GenericRecords)
)
_WORKERS = _CONFIG.workers if _CONFIG else 1
_ACCESS_LOG = bool(_CONFIG and _CONFIG.access_log)
# BentoML always wraps requests in OpenTelemetry's ASGI middleware (a span per request, even with
# no exporter and sample rate 0); an excluded URL skips it. Other endpoints keep their spans.
_TRACING: dict[str, Any] = (
    {} if _CONFIG is None or _CONFIG.tracing else {"excluded_urls": ["/predict$", "/v2/models/.*/infer$"]}
)


class ModelInfo(pydantic.BaseModel):
    role: str
    version: str


class Prediction(pydantic.BaseModel):
    """The /predict reply. A declared model, not dict[str, Any]: BentoML wraps a dict reply in a
    root model whose JSON schema it rebuilds on every reply (~11% of a worker's CPU, py-spy)."""

    request_id: str
    model: ModelInfo
    predictions: list[Any]
    probabilities: list[float | None]  # None: regression; never NaN (numbers.bad_rows refuses it)


@bentoml.service(
    name="flywheel",
    workers=_WORKERS,
    traffic={"timeout": 60},
    # The Parquet traffic log already records every request; see config.ServingConfig.access_log.
    logging={"access": {"enabled": _ACCESS_LOG}},
    tracing=_TRACING,
)
class FlywheelService:
    """Serves the champion; routes canary traffic to, or shadows requests on, the challenger."""

    def __init__(self) -> None:
        self._ready = False
        _enable_our_logs()
        self.config = _CONFIG or config.load()
        cfg = self.config
        metrics.init()
        champion = models.load(cfg.champion.uri, cfg.champion.quantized, cfg.loader)
        self.card = champion.card
        _check_reserved(self.card)
        # The records type of /predict, for requests that arrive another way (oip's tensors).
        self.records_adapter = pydantic.TypeAdapter(schema.records_type(self.card, cfg.max_request_rows))
        self.scorers = {routing.CHAMPION: scoring.Scorer(champion, cfg.batching)}
        if cfg.challenger is not None:
            challenger = models.load(cfg.challenger.uri, cfg.challenger.quantized, cfg.loader)
            _check_same_schema(champion, challenger)
            self.scorers[routing.CHALLENGER] = scoring.Scorer(challenger, cfg.batching)
        self.logger = (
            traffic.TrafficLogger(cfg.sink_uri(), cfg.logging.flush_rows, cfg.logging.flush_seconds)
            if cfg.logging.enabled
            else None
        )
        if self.logger is not None:
            self.logger.features = tuple(self.card.feature_names)
        self.feedback: feedback.FeedbackWriter | None = feedback.FeedbackWriter(cfg.sink_uri())
        self._rng = random.Random()
        # Request ids without a caller's x-request-id: a random prefix per process (drawn here, in
        # the worker, after any fork) and a counter; unique across workers and restarts like a
        # uuid4, at a fraction of its cost (os.urandom per request, ~3% of a worker's CPU).
        self._id_prefix = secrets.token_hex(8)
        self._id_seq = itertools.count()
        self._background: set[asyncio.Task[None]] = set()
        self._swap_lock = asyncio.Lock()
        log.info("Loaded models: %s", {r: s.model.version for r, s in self.scorers.items()})
        self._cache_api_callers()
        # Everything loaded so far (BentoML, torch, pandas, the models) lives as long as the
        # process: move it out of the garbage collector's sight, or each full collection walks
        # it all and stalls every in-flight request (110-190 ms on 2 cores: the p99 under load).
        gc.collect()
        gc.freeze()
        records_api.serve(self, schema.records_type(self.card, cfg.max_request_rows))
        self._ready = True
        oip.serve(self)

    def _cache_api_callers(self) -> None:
        """BentoML 1.4 rebuilds an API's caller, inspect.signature included, each time its server
        looks the API up on this instance, i.e. on every request (APIMethod.__get__: ~7% of a
        worker's CPU at one record per request, py-spy). The caller depends only on the instance,
        so build it once: an instance attribute shadows a descriptor that defines no __set__."""
        for name in ("predict", "promote"):
            method = getattr(type(self), name)
            if hasattr(method, "__get__") and not hasattr(method, "__set__"):
                setattr(self, name, method.__get__(self, type(self)))

    def feedback_received(self, labels: int) -> None:
        metrics.feedback(labels)

    def __is_ready__(self) -> bool:
        return self._ready

    @bentoml.on_startup
    async def _start_flusher(self) -> None:
        self._spawn(self._flush_loop())

    @bentoml.on_shutdown
    async def _final_flush(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self.logger is not None:
            await anyio.to_thread.run_sync(self.logger.flush)

    @bentoml.api(route="/predict")
    async def predict(self, records: Records, ctx: bentoml.Context) -> Prediction:
        """Score records with the model the traffic settings pick for this request."""
        headers = ctx.request.headers
        request_id = (
            guard.request_id(ctx.request.scope)
            or headers.get("x-request-id")
            or f"{self._id_prefix}{next(self._id_seq):016x}"
        )
        rows = [r if isinstance(r, dict) else r.model_dump() for r in records]
        try:
            role, result = await self.answer(rows, headers, request_id)
        except Refused as exc:
            ctx.response.status_code = exc.status  # BentoML copies ctx's status onto any reply
            body = {"error": exc.message, "request_id": request_id}
            return responses.JSONResponse(body, status_code=exc.status)  # type: ignore[return-value]
        ctx.response.headers["x-flywheel-model-role"] = role
        ctx.response.headers["x-flywheel-model-version"] = result.version
        return Prediction(
            request_id=request_id,
            model=ModelInfo(role=role, version=result.version),
            predictions=result.predictions,
            probabilities=result.probabilities,
        )

    async def answer(
        self, rows: list[dict[str, Any]], headers: Any, request_id: str, role: str | None = None
    ) -> tuple[str, scoring.Result]:
        """Route, score, log and count validated rows: what /predict and the Open Inference
        Protocol's /infer share. `role` pins the model (a versioned OIP request); else the
        traffic settings pick it. Raises Refused (503 overloaded, 422 non-finite answer)."""
        arrived = time.time_ns() // 1000
        traffic_cfg = self.config.traffic
        has_challenger = routing.CHALLENGER in self.scorers
        if role is None:
            sticky = headers.get(traffic_cfg.sticky_header)
            role = routing.choose(traffic_cfg, has_challenger, sticky, self._rng)
        entry = self._entry(rows, request_id, arrived)
        started = time.perf_counter()
        try:
            result = await self.scorers[role].score(rows)
        except scoring.Overloaded as exc:
            metrics.error(role, "overloaded")
            self._log_failure(entry, role, True, "overloaded", started)
            raise Refused(503, str(exc)) from exc
        except Exception as exc:
            metrics.error(role, "model")
            self._log_failure(entry, role, True, _model_error(exc), started)
            raise
        if bad := numbers.bad_rows(result.predictions, result.probabilities):
            metrics.error(role, "non_finite")
            self._log_failure(entry, role, True, numbers.NON_FINITE, started)
            raise Refused(422, numbers.refusal(self.card, rows, bad))
        self._record(entry, role, True, result)
        if routing.shadows(traffic_cfg, has_challenger):
            self._spawn(self._shadow(entry))
        return role, result

    @bentoml.api(route="/admin/promote")
    async def promote(self, uri: str, ctx: bentoml.Context, quantized: bool = True) -> dict[str, Any]:
        """Hot swap the champion: load the new model, then switch in one step (no failed requests)."""
        problem = self._admin_problem(ctx, uri)  # the guard checked the token already; again here
        if problem is not None:
            ctx.response.status_code, message = problem
            return {"error": message}
        uri = config.within_artifacts(self.config.artifacts_uri, uri) or uri  # what was checked, no `..`
        async with self._swap_lock:
            try:
                new = await anyio.to_thread.run_sync(models.load, uri, quantized, self.config.loader)
                _check_same_schema(self.scorers[routing.CHAMPION].model, new)
            except (errors.UserError, OSError) as exc:
                ctx.response.status_code = 400
                return {"error": f"uri: {exc}"}
            except Exception as exc:  # a broken model directory is the caller's input, not a 500
                log.exception("Loading %s for promotion failed", uri)
                ctx.response.status_code = 400
                return {"error": f"uri: cannot load the model there: {type(exc).__name__}: {exc}"[:500]}
            old = self.scorers[routing.CHAMPION].swap(new)
        log.info("Promoted %s (%s); previous champion %s", new.uri, new.version, old.uri)
        return {
            "champion": {"uri": new.uri, "version": new.version},
            "previous": {"uri": old.uri, "version": old.version},
        }

    # --- helpers -----------------------------------------------------------------------------
    def _admin_problem(self, ctx: bentoml.Context, uri: str) -> tuple[int, str] | None:
        token = os.environ.get(config.ENV_ADMIN_TOKEN)
        if not token:
            return 403, f"admin endpoints are disabled: set {config.ENV_ADMIN_TOKEN} on the server"
        sent = ctx.request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), token.encode()):
            return 401, "send the admin token as 'Authorization: Bearer <token>'"
        if config.within_artifacts(self.config.artifacts_uri, uri) is None:
            return 400, f"uri: models are loaded only from the artifact store {self.config.artifacts_uri}"
        return None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _entry(self, rows: list[dict[str, Any]], request_id: str, arrived: int) -> _Entry:
        """What the traffic log needs of a request. Sampling is decided here, once per request, so
        a sampled request's champion and shadow rows (and failures) are all logged, or none."""
        sampled = self.logger is not None and self._rng.random() < self.config.logging.sample_rate
        return _Entry(rows, request_id, arrived, sampled)

    async def _shadow(self, entry: _Entry) -> None:
        started = time.perf_counter()
        try:
            result = await self.scorers[routing.CHALLENGER].score(entry.rows)
        except scoring.Overloaded:
            metrics.error(routing.CHALLENGER, "overloaded")
            self._log_failure(entry, routing.CHALLENGER, False, "overloaded", started)
            return
        except Exception as exc:
            log.exception("Shadow scoring failed for request %s", entry.request_id)
            metrics.error(routing.CHALLENGER, "model")
            self._log_failure(entry, routing.CHALLENGER, False, _model_error(exc), started)
            return
        if numbers.bad_rows(result.predictions, result.probabilities):
            metrics.error(routing.CHALLENGER, "non_finite")
            self._log_failure(entry, routing.CHALLENGER, False, numbers.NON_FINITE, started)
            return
        self._record(entry, routing.CHALLENGER, False, result)

    def _record(self, entry: _Entry, role: str, served: bool, result: scoring.Result) -> None:
        metrics.observe(
            role,
            result.version,
            served,
            result.seconds,
            result.predictions,
            result.probabilities,
            self.card.task,
        )
        if entry.sampled:
            outputs = (result.predictions, result.probabilities, None)
            self._log(entry, role, served, result.version, result.seconds, outputs)

    def _log_failure(self, entry: _Entry, role: str, served: bool, error: str, started: float) -> None:
        """Rows that say this role failed on the request: no prediction, `error` says why."""
        if entry.sampled:
            n = len(entry.rows)
            version = self.scorers[role].model.version
            seconds = time.perf_counter() - started
            self._log(entry, role, served, version, seconds, ([None] * n, [None] * n, [error] * n))

    def _log(
        self,
        entry: _Entry,
        role: str,
        served: bool,
        version: str,
        seconds: float,
        outputs: tuple[list[Any], list[float | None], list[str | None] | None],
    ) -> None:
        if self.logger is None:  # never: an entry is sampled only when there is a logger
            return
        predictions, probabilities, errors_ = outputs
        self.logger.add_request(
            traffic.Request(
                entry.arrived,
                entry.request_id,
                role,
                served,
                version,
                entry.rows,
                predictions,
                probabilities,
                seconds * 1000.0,
                errors_,
            )
        )

    async def _flush_loop(self) -> None:
        while self.logger is not None:
            await asyncio.sleep(min(0.5, self.config.logging.flush_seconds))
            if self.logger.due():
                try:
                    await anyio.to_thread.run_sync(self.logger.flush)
                except Exception:  # keep serving; the next flush retries with new rows
                    log.exception("Writing traffic log to %s failed", self.logger.store.uri)


class Refused(Exception):
    """A request the service answers with `status` and `message` instead of predictions."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One request as the traffic log sees it; `sampled`: its rows are logged (all of them)."""

    rows: list[dict[str, Any]]
    request_id: str
    arrived: int  # microseconds since the epoch, UTC (the log's timestamp)
    sampled: bool


def _enable_our_logs() -> None:
    """BentoML's server logging config (applied in the worker, before this runs) sets the root
    logger to WARNING and disables loggers it does not name: ours would say nothing below WARNING
    (the guard's one line per client error, the model loads). Turn them back on, at INFO."""
    logging.getLogger("flywheel").setLevel(logging.INFO)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("flywheel") and isinstance(logger, logging.Logger):
            logger.disabled = False


def _model_error(exc: Exception) -> str:
    """The traffic log's `error` for a model that raised: short, one line."""
    return " ".join(f"model: {type(exc).__name__}: {exc}".split())[:200]


def _check_same_schema(current: models.LoadedModel, new: models.LoadedModel) -> None:
    if current.card.schema_key() != new.card.schema_key():
        raise errors.UserError(
            f"model {new.uri} takes different features than {current.uri}; "
            "a champion and challenger must share the request schema"
        )


def _check_reserved(card: models.Card) -> None:
    clash = traffic.RESERVED.intersection(card.feature_names)
    if clash:
        raise errors.UserError(f"feature names {sorted(clash)} clash with traffic log columns; rename them")


FlywheelService.add_asgi_middleware(  # type: ignore[attr-defined]
    guard.RequestGuard,
    max_body_bytes=_CONFIG.max_body_bytes if _CONFIG else 4 * 1024 * 1024,
    admin_token_env=config.ENV_ADMIN_TOKEN,
)
# Inside the guard: /predict without BentoML's API layer, and the Open Inference Protocol.
FlywheelService.add_asgi_middleware(records_api.RecordsApi)  # type: ignore[attr-defined]
FlywheelService.add_asgi_middleware(oip.OpenInference)  # type: ignore[attr-defined]
bentoml_hooks.install()
# A top-level key other than `records` is a mistake (a misspelt field would be silently ignored):
# BentoML builds the API's input model from the signature and offers no option for this.
_INPUT = FlywheelService.apis["predict"].input_spec  # type: ignore[attr-defined]
_INPUT.model_config["extra"] = "forbid"
_INPUT.model_rebuild(force=True)
