"""What happens to accepted payloads: validate, deduplicate, encode, write, answer.

Handlers in :mod:`ingest.app` parse HTTP; this module decides. Batch semantics:
validation is all-or-nothing (one invalid event -> 400 listing every problem,
nothing written); writing is per event (each result says accepted or failed;
if any failed the answer is 503 with Retry-After, and resending the whole
batch is safe because accepted event ids are answered from the cache and
deduplicated downstream).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ingest.auth import Principal
from ingest.delivery import RETRY_AFTER
from ingest.errors import InvalidEvent, Problem
from ingest.limits import AnswerCache
from ingest.metrics import Metrics
from ingest.sink import EventSink
from ingest.validation import EVENT_ID, Policy, collect_event
from streams.errors import EncodeError
from streams.records import Envelope

log = logging.getLogger("ingest.pipeline")


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: float | None = None
    replayed: bool = False


class Pipeline:
    def __init__(self, policy: Policy, sink: EventSink, cache: AnswerCache, metrics: Metrics):
        self.policy = policy
        self.sink = sink
        self.cache = cache
        self.metrics = metrics
        # Requests being written now, by idempotency key, with the concurrent resends
        # waiting for the first instead of writing the event a second time (a waiter's
        # future is only made when there is a resend: most requests have none).
        self._inflight: dict[str, list[asyncio.Future[None]]] = {}

    async def ready_encoder(self) -> None:
        """Look the schema id up off the event loop the first time (a blocking HTTP call)."""
        await asyncio.get_running_loop().run_in_executor(None, self.sink.encoder)

    async def accept_one(
        self, principal: Principal, raw: Any, idempotency_key: str | None
    ) -> Answer:
        if idempotency_key is not None and not EVENT_ID.match(idempotency_key):
            raise InvalidEvent([Problem("Idempotency-Key", "expected 1-128 printable ASCII "
                                        "characters, no spaces")])
        if idempotency_key is None and isinstance(raw, dict) and isinstance(raw.get("event_id"),
                                                                            str):
            idempotency_key = raw["event_id"]
        if not idempotency_key:
            return await self._accept_new(principal, raw, None, None)
        cache_key = f"{principal.key_id}:{idempotency_key}"
        while (waiters := self._inflight.get(cache_key)) is not None:
            waiter = asyncio.get_running_loop().create_future()
            waiters.append(waiter)
            await waiter  # the first one's outcome is read from the cache below
        cached = self.cache.get(cache_key)
        if cached is not None:
            self.metrics.duplicates.inc()
            return Answer(200, cached, replayed=True)
        self._inflight[cache_key] = []
        try:
            return await self._accept_new(principal, raw, idempotency_key, cache_key)
        finally:
            for waiter in self._inflight.pop(cache_key):
                if not waiter.done():  # a waiter whose request was cancelled is done
                    waiter.set_result(None)

    async def _accept_new(
        self, principal: Principal, raw: Any, idempotency_key: str | None, cache_key: str | None
    ) -> Answer:
        envelope = self._validate([raw], principal, "$", [idempotency_key])[0]
        await self._write(envelope)
        body = {"status": "accepted", "event_id": envelope.event_id}
        if cache_key:
            self.cache.put(cache_key, body)
        self.metrics.accepted.inc()
        return Answer(200, body)

    async def accept_many(self, principal: Principal, events: list[Any], path: str) -> Answer:
        self.metrics.batch_events.observe(len(events))
        ids = [e.get("event_id") if isinstance(e, dict) else None for e in events]
        keys = [f"{principal.key_id}:{i}" if isinstance(i, str) else None for i in ids]
        cached = [self.cache.get(k) if k else None for k in keys]
        fresh = [i for i, c in enumerate(cached) if c is None]
        envelopes = self._validate([events[i] for i in fresh], principal, path,
                                   [None] * len(fresh), positions=fresh)
        await self._ensure_encoder()
        frames = [self._encode(e) for e in envelopes]  # all or nothing: encode before writing
        outcomes = await self.sink.send_many(frames)
        results: list[dict[str, Any]] = [dict(c, duplicate=True) if c else {} for c in cached]
        failed = 0
        for index, envelope, outcome in zip(fresh, envelopes, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failed += 1
                results[index] = {"status": "failed", "event_id": envelope.event_id,
                                  "error": str(outcome)}
                continue
            results[index] = {"status": "accepted", "event_id": envelope.event_id}
            if keys[index]:
                self.cache.put(str(keys[index]), results[index])
        self.metrics.accepted.inc(len(envelopes) - failed)
        self.metrics.events.labels("failed").inc(failed)
        self.metrics.duplicates.inc(len(events) - len(fresh))
        body = {"accepted": len(events) - failed, "failed": failed, "results": results}
        if failed:
            return Answer(503, body, retry_after=RETRY_AFTER)
        return Answer(200, body)

    def _validate(
        self,
        raws: list[Any],
        principal: Principal,
        path: str,
        fallback_ids: list[str | None],
        positions: list[int] | None = None,
    ) -> list[Envelope]:
        now = datetime.now(UTC)
        problems: list[Problem] = []
        envelopes: list[Envelope] = []
        source = f"http:{principal.key_id}"
        for n, (raw, fallback) in enumerate(zip(raws, fallback_ids, strict=True)):
            where = path if positions is None else f"{path}[{positions[n]}]"
            env = collect_event(raw, self.policy, now, source, fallback, where, problems)
            if env is not None:
                envelopes.append(env)
        if problems:
            self.metrics.events.labels("invalid").inc(len(raws))
            raise InvalidEvent(problems)
        return envelopes

    async def _ensure_encoder(self) -> None:
        if not self.sink.encoder_ready:
            await self.ready_encoder()

    def _encode(self, envelope: Envelope) -> tuple[bytes, bytes]:
        try:
            return self.sink.encode(envelope)
        except EncodeError as exc:
            raise InvalidEvent([Problem("$", f"does not fit the envelope schema: {exc}")]) from exc

    async def _write(self, envelope: Envelope) -> None:
        await self._ensure_encoder()
        key, value = self._encode(envelope)
        await self.sink.send(key, value)
