"""Synchronous and asyncio clients of the ingestion gateway, on httpx.

Both share one decision function (:func:`_outcome`) so they retry identically:
429, 5xx and connection errors are retried with exponential backoff and full
jitter, honouring Retry-After; 400, 401, 403, 413 and 415 are raised at once.
Retries resend the same ``event_id`` s, so they never create duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
    out = [dict(e) for e in events]
    for event in out:
        check_event(event)
    return out


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
        """Send one event; returns the gateway's answer once Kafka has it."""
        body = _checked([event])[0]
        return self._post(EVENTS, body, body.get("event_id"))

    def send_batch(self, events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        return self._post(BATCH, {"events": _checked(events)}, None)

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

    def enqueue(self, event: Mapping[str, Any]) -> None:
        """Queue for background batching (checked now, sent within ``flush_interval``)."""
        if self._batcher is None:
            self._batcher = ThreadBatcher(self.send_batch, self._batch_size, self._flush_interval)
        self._batcher.add(_checked([event])[0])

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
        body = _checked([event])[0]
        return await self._post(EVENTS, body, body.get("event_id"))

    async def send_batch(self, events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        return await self._post(BATCH, {"events": _checked(events)}, None)

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

    async def enqueue(self, event: Mapping[str, Any]) -> None:
        self._queue.append(_checked([event])[0])
        if len(self._queue) >= self._batch_size:
            await self.flush()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

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
