"""The aiohttp application: routing, auth, limits and HTTP <-> pipeline translation.

Handlers stay thin: everything they decide is delegated to pure modules
(:mod:`ingest.validation`, :mod:`ingest.segment`, :mod:`ingest.auth`,
:mod:`ingest.limits`) and to :class:`ingest.pipeline.Pipeline`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ingest import segment
from ingest.auth import ADMIN, EVENTS_WRITE, KeyTable, Principal, credential_from_header
from ingest.avro_check import PayloadRules
from ingest.errors import IngestError, InvalidEvent, PayloadTooLarge, Problem, Unavailable
from ingest.keystore import KeyTopicReader
from ingest.limits import AnswerCache, RateLimiter
from ingest.logs import request_id
from ingest.metrics import Metrics
from ingest.openapi import openapi_document
from ingest.pipeline import Answer, Pipeline
from ingest.sink import EventSink
from ingest.validation import Policy, parse_json
from streams.schemas import SchemaCatalog
from streams.settings import Settings

log = logging.getLogger("ingest.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = frozenset({"/healthz", "/readyz"})
# An event's size is its length as json.dumps(event, default=str) writes it.
_SIZE = json.JSONEncoder(default=str)


@dataclass
class Gateway:
    settings: Settings
    keys: KeyTable
    reader: KeyTopicReader | None
    sink: EventSink
    pipeline: Pipeline
    limiter: RateLimiter
    metrics: Metrics

    def authenticate(self, request: web.Request, scope: str | None) -> Principal:
        if self.reader is not None and not self.reader.loaded.is_set():
            raise Unavailable("API key store is still loading", 1.0)
        principal = self.keys.authenticate(
            credential_from_header(request.headers.get("Authorization")))
        if scope is not None:
            principal.require(scope)
        return principal


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
ERROR: web.RequestKey[str] = web.RequestKey("error", str)


def create_app(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    sink: EventSink | None = None,
    keys: KeyTable | None = None,
) -> web.Application:
    """The application; ``sink`` and ``keys`` may be supplied (tests point them elsewhere)."""
    metrics = Metrics(registry or CollectorRegistry())
    table = keys or KeyTable(settings.api_key_pepper.get_secret_value())
    reader = KeyTopicReader(settings, table) if keys is None else None
    sink = sink or EventSink(settings, metrics)
    policy = Policy(PayloadRules.from_catalog(SchemaCatalog.load(settings.schemas_dir)),
                    settings.gateway_max_future_skew, settings.gateway_unknown_events)
    cache = AnswerCache(settings.gateway_idempotency_ttl.total_seconds(),
                        settings.gateway_idempotency_max_entries)
    metrics.watch_cache(cache)
    gateway = Gateway(settings, table, reader, sink, Pipeline(policy, sink, cache, metrics),
                      RateLimiter(settings.gateway_rate_limit_per_second,
                                  settings.gateway_rate_limit_burst), metrics)
    app = web.Application(middlewares=[_observe], client_max_size=settings.gateway_max_batch_bytes
                          + 1024)
    app[GATEWAY] = gateway
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_post("/v1/events", _post_event)
    app.router.add_post("/v1/events/batch", _post_batch)
    app.router.add_post("/v1/track", _segment_single)
    app.router.add_post("/v1/identify", _segment_single)
    app.router.add_post("/v1/batch", _segment_batch)
    return app


async def _start(app: web.Application) -> None:
    gateway = app[GATEWAY]
    if gateway.reader is not None:
        gateway.reader.start()
    try:
        await gateway.pipeline.ready_encoder()
    except Unavailable as exc:  # not fatal: requests answer 503 until the registry is back
        log.warning("starting without the envelope schema: %s", exc)


async def _stop(app: web.Application) -> None:
    gateway = app[GATEWAY]
    if gateway.reader is not None:
        await asyncio.to_thread(gateway.reader.stop)
    await asyncio.to_thread(gateway.sink.close)


@web.middleware
async def _observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, error -> JSON answer, metrics and one structured log line per request."""
    rid = request.headers.get("X-Request-Id") or secrets.token_hex(16)
    token = request_id.set(rid)
    started = time.perf_counter()
    resource = request.match_info.route.resource
    endpoint = resource.canonical if resource is not None else "unmatched"
    try:
        response = await _answer_errors(request, handler)
    finally:
        request_id.reset(token)
    elapsed = time.perf_counter() - started
    request.app[GATEWAY].metrics.request_done(endpoint, response.status, elapsed)
    response.headers["X-Request-Id"] = rid
    level = logging.WARNING if response.status >= 500 else logging.INFO
    if log.isEnabledFor(level):  # build the fields only for a line that is written
        fields = {"request_id": rid, "method": request.method, "path": request.path,
                  "status": response.status, "duration_ms": round(elapsed * 1000, 2)}
        if ERROR in request:
            fields["error"] = request[ERROR]
        log.log(level, "request", extra=fields)
    return response


async def _answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except IngestError as exc:
        request[ERROR] = str(exc)
        return error_response(exc)
    except web.HTTPException as exc:
        return _json({"error": exc.reason, "message": exc.text or exc.reason}, exc.status)


def error_response(exc: IngestError) -> web.Response:
    body: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, InvalidEvent):
        body["problems"] = [p.to_json() for p in exc.problems]
    response = _json(body, exc.status)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ingest", Basic realm="ingest"'
    return response


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        content_type="application/json")


def _answer(answer: Answer) -> web.Response:
    response = _json(answer.body, answer.status)
    if answer.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(answer.retry_after)))
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


async def _read_json(request: web.Request, limit: int) -> Any:
    """The parsed body; 415 unless JSON, 413 above ``limit`` bytes (checked while reading)."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send Content-Type: application/json")
    if request.content_length is not None:
        if request.content_length > limit:
            raise PayloadTooLarge(f"body is {request.content_length} bytes, the limit is {limit}")
        # The parser never hands over more than Content-Length: one read, no chunk loop.
        return parse_json(await request.read())
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
    return parse_json(bytes(body))


def _check_batch(gateway: Gateway, events: list[Any], body_bytes: int | None) -> None:
    settings = gateway.settings
    if len(events) > settings.gateway_max_batch_events:
        raise PayloadTooLarge(f"{len(events)} events in one batch, the limit is "
                              f"{settings.gateway_max_batch_events}")
    limit = settings.gateway_max_event_bytes
    # No event is longer than the list of all of them, so when the body is small
    # one encoder call clears the whole batch (each call has a fixed set-up cost).
    if body_bytes is not None and body_bytes <= limit and len(_SIZE.encode(events)) <= limit:
        return
    for index, event in enumerate(events):
        size = len(_SIZE.encode(event))
        if size > limit:
            raise PayloadTooLarge(f"event {index} is {size} bytes, the limit is {limit}")


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    broker = await asyncio.to_thread(gateway.sink.reachable)
    registry = await asyncio.to_thread(gateway.sink.registry_ready)
    keys = gateway.reader is None or gateway.reader.loaded.is_set()
    checks = {"broker": broker, "registry": registry, "api_keys": keys}
    ready = all(checks.values())
    response = _json({"status": "ready" if ready else "unavailable", "checks": checks},
                     200 if ready else 503)
    if not ready:
        response.headers["Retry-After"] = "2"
    return response


async def _metrics(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    gateway.authenticate(request, ADMIN)
    payload = generate_latest(gateway.metrics.registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _openapi(request: web.Request) -> web.Response:
    request.app[GATEWAY].authenticate(request, None)
    return _json(openapi_document(request.app[GATEWAY].settings))


async def _post_event(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    principal = gateway.authenticate(request, EVENTS_WRITE)
    raw = await _read_json(request, gateway.settings.gateway_max_event_bytes)
    gateway.limiter.take(principal.key_id)
    answer = await gateway.pipeline.accept_one(
        principal, raw, request.headers.get("Idempotency-Key"))
    return _answer(answer)


async def _post_batch(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    principal = gateway.authenticate(request, EVENTS_WRITE)
    raw = await _read_json(request, gateway.settings.gateway_max_batch_bytes)
    events = raw.get("events") if isinstance(raw, dict) else None
    if not isinstance(events, list) or not events:
        raise InvalidEvent([Problem("$.events", "required: a non-empty array of events")])
    _check_batch(gateway, events, request.content_length)
    gateway.limiter.take(principal.key_id, len(events))
    return _answer(await gateway.pipeline.accept_many(principal, events, "$.events"))


async def _segment_single(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    principal = gateway.authenticate(request, EVENTS_WRITE)
    raw = await _read_json(request, gateway.settings.gateway_max_event_bytes)
    kind = request.path.rsplit("/", 1)[-1]
    event = segment.map_call(raw, kind, datetime.now(UTC))
    gateway.limiter.take(principal.key_id)
    message_id = event.get("event_id")
    key = message_id if isinstance(message_id, str) else None
    answer = await gateway.pipeline.accept_one(principal, event, key)
    return _answer(_segment_style(answer))


async def _segment_batch(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    principal = gateway.authenticate(request, EVENTS_WRITE)
    raw = await _read_json(request, gateway.settings.gateway_max_batch_bytes)
    events = segment.batch_calls(raw, datetime.now(UTC))
    _check_batch(gateway, events, request.content_length)
    gateway.limiter.take(principal.key_id, len(events))
    answer = await gateway.pipeline.accept_many(principal, events, "$.batch")
    return _answer(_segment_style(answer))


def _segment_style(answer: Answer) -> Answer:
    """Segment's libraries look for ``success``; the rest of our answer is kept."""
    body = {"success": 200 <= answer.status < 300, **answer.body}
    return Answer(answer.status, body, answer.retry_after, answer.replayed)
