"""Synchronous and asyncio clients of the ingestion gateway, on httpx.

Both share one decision function (:func:`_outcome`) so they retry identically:
429, 5xx and connection errors are retried with exponential backoff and full
jitter, honouring Retry-After; 400, 401, 403, 413 and 415 are raised at once.

Every event is given an ``event_id`` here, before its first attempt, unless it
already has one (:func:`_checked`): the gateway deduplicates by that id, so a
retry after a lost response is answered from its cache instead of becoming a
second event. Left to the gateway, each attempt would get a fresh id.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from activation_client.batching import ThreadBatcher
from activation_client.errors import ClientError, RejectedError, RetriesExhaustedError
from activation_client.events import Event, check_event, chunks
from activation_client.retry import RetryPolicy, parse_retry_after, retryable

log = logging.getLogger("activation_client")
EVENTS = "/v1/events"
BATCH = "/v1/events/batch"


@dataclass(frozen=True)
class _Step:
    result: dict[str, Any] | None = None  # done
    wait: float | None = None  # retry after this many seconds
    reason: str = ""


def _outcome(response: httpx.Response | None, error: Exception | None, attempt: int,
             policy: RetryPolicy) -> _Step:
    if response is None:
        reason = f"{type(error).__name__}: {error}"
        log.warning("gateway unreachable (attempt %d): %s", attempt, reason)
        return _Step(wait=policy.delay(attempt), reason=reason)
    request_id = response.headers.get("X-Request-Id", "")
    log.info("gateway answered %d (attempt %d, request %s)", response.status_code, attempt,
             request_id)
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if 200 <= response.status_code < 300:
        return _Step(result=body if isinstance(body, dict) else {"body": body})
    if not retryable(response.status_code):
        raise RejectedError(response.status_code, body)
    wait = policy.delay(attempt, parse_retry_after(response.headers.get("Retry-After")))
    return _Step(wait=wait, reason=f"HTTP {response.status_code}: {body}")


def _headers(api_key: str, idempotency_key: str | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {api_key}"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def _checked(events: Iterable[Mapping[str, Any]]) -> list[Event]:
    """Checked copies of ``events``, each with an ``event_id`` (a new uuid4 where missing).

    The caller's mappings are left as they are: the id lives on the copy, which is
    what every attempt (and the background queue) sends, so retries reuse it.
    """
    out = [dict(e) for e in events]
    for event in out:
        if event.get("event_id") is None:
            event["event_id"] = str(uuid.uuid4())
        check_event(event)
    return out


def _with_id(answer: dict[str, Any], event: Event) -> dict[str, Any]:
    # The gateway's answer names the id already; a proxy or stub might not.
    answer.setdefault("event_id", event["event_id"])
    return answer


def _with_ids(answer: dict[str, Any], events: list[Event]) -> dict[str, Any]:
    # Batch answers list ids per event in ``results``; one flat list is easier to log.
    answer.setdefault("event_ids", [e["event_id"] for e in events])
    return answer


class Client:
    """Blocking client. ``enqueue`` batches in a background thread; ``close`` flushes."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 15.0,
                 retry: RetryPolicy | None = None, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, batch_size: int = 100,
                 flush_interval: float = 1.0) -> None:
        self._api_key = api_key
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._batcher: ThreadBatcher | None = None

    def send(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Send one event; returns the gateway's answer once Kafka has it.

        An event without ``event_id`` is sent as a copy with a new one (``event`` is not
        changed); every retry resends that id, also as ``Idempotency-Key``. The answer's
        ``event_id`` is the id the event was stored under.
        """
        body = _checked([event])[0]
        return _with_id(self._post(EVENTS, body, body["event_id"]), body)

    def send_batch(self, events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Send events in one request; ids are assigned as in :meth:`send`.

        The gateway deduplicates a batch per event by ``event_id``, so no
        ``Idempotency-Key`` is sent. The answer's ``event_ids`` lists the ids in order.
        """
        body = _checked(events)
        return _with_ids(self._post(BATCH, {"events": body}, None), body)

    def _post(self, path: str, body: Any, idempotency_key: str | None) -> dict[str, Any]:
        headers = _headers(self._api_key, idempotency_key)
        last = ""
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                response, error = self._http.post(path, json=body, headers=headers), None
            except httpx.TransportError as exc:
                response, error = None, exc
            step = _outcome(response, error, attempt, self._retry)
            if step.result is not None:
                return step.result
            last = step.reason
            if attempt < self._retry.max_attempts and step.wait is not None:
                self._sleep(step.wait)
        raise RetriesExhaustedError(self._retry.max_attempts, last)

    def enqueue(self, event: Mapping[str, Any]) -> str:
        """Queue for background batching (checked now, sent within ``flush_interval``).

        Returns the event's ``event_id``, assigned now if missing, so it can be logged
        before the event is sent; the queued copy keeps it through every retry.
        """
        if self._batcher is None:
            self._batcher = ThreadBatcher(self.send_batch, self._batch_size, self._flush_interval)
        body = _checked([event])[0]
        self._batcher.add(body)
        return str(body["event_id"])

    @property
    def failed(self) -> list[tuple[list[Event], ClientError]]:
        """Batches the background sender gave up on (after retries), with the reason."""
        return [] if self._batcher is None else self._batcher.failed

    def flush(self, timeout: float = 60.0) -> None:
        if self._batcher is not None:
            self._batcher.flush(timeout)

    def close(self) -> None:
        """Flush queued events, then release connections."""
        if self._batcher is not None:
            self._batcher.close()
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """asyncio client with the same behaviour; ``aclose`` flushes queued events."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 15.0,
                 retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 batch_size: int = 100, flush_interval: float = 1.0) -> None:
        self._api_key = api_key
        self._retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)
        self._queue: list[Event] = []
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._flusher: asyncio.Task[None] | None = None
        self.failed: list[tuple[list[Event], ClientError]] = []

    async def send(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Like :meth:`Client.send`: the ``event_id`` is assigned once, before sending."""
        body = _checked([event])[0]
        return _with_id(await self._post(EVENTS, body, body["event_id"]), body)

    async def send_batch(self, events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Like :meth:`Client.send_batch`; the answer's ``event_ids`` lists the ids."""
        body = _checked(events)
        return _with_ids(await self._post(BATCH, {"events": body}, None), body)

    async def _post(self, path: str, body: Any, idempotency_key: str | None) -> dict[str, Any]:
        headers = _headers(self._api_key, idempotency_key)
        last = ""
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                response, error = await self._http.post(path, json=body, headers=headers), None
            except httpx.TransportError as exc:
                response, error = None, exc
            step = _outcome(response, error, attempt, self._retry)
            if step.result is not None:
                return step.result
            last = step.reason
            if attempt < self._retry.max_attempts and step.wait is not None:
                await asyncio.sleep(step.wait)
        raise RetriesExhaustedError(self._retry.max_attempts, last)

    async def enqueue(self, event: Mapping[str, Any]) -> str:
        """Like :meth:`Client.enqueue`: returns the ``event_id`` the queued copy carries."""
        body = _checked([event])[0]
        self._queue.append(body)
        if len(self._queue) >= self._batch_size:
            await self.flush()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())
        return str(body["event_id"])

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._flush_interval)
        await self.flush()

    async def flush(self) -> None:
        """Send everything queued; batches that fail after retries land in ``failed``."""
        queued, self._queue = self._queue, []
        for batch in chunks(queued, self._batch_size):
            try:
                await self.send_batch(batch)
            except ClientError as exc:
                log.error("dropping a batch of %d events: %s", len(batch), exc)
                self.failed.append((batch, exc))

    async def aclose(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
        await self.flush()
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
