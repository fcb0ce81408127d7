"""Live events: the newest records of the ingestion and dead-letter topics as they
arrive, each screened the way the workers screen it (decoded with the writer's schema,
checked against the event contract: streams/core/deadletter.py), with its identifiers
as stored (email and phone already hashed by whoever produced it).

A :class:`~console.feeds.TopicTail` reads from a little before the end of each
partition; at most ``console_live_rate`` records a second are decoded and shown (the
others are counted: a console must not compete with the workers for CPU when the
platform takes thousands of events a second); dead letters are always shown.
:class:`LiveHub` hands each item to every open page (server-sent events), on the event
loop.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from console.deadletters import REDRIVE_HEADER
from streams.core.deadletter import SourceRecord, screen
from streams.core.identity import KIND_PREFIX
from streams.errors import RegistryError
from streams.serde import AvroSerde

STAGE = "console.live"
RECENT = 200  # items a newly opened page starts with
QUEUE = 500  # items a slow page may fall behind before it misses some
_SEQ = itertools.count(1)


@dataclass(frozen=True)
class LiveItem:
    """One record as the live page shows it."""

    kind: str  # "event" or "deadletter"
    position: str  # topic[partition]@offset
    at: datetime
    event_id: str = ""
    event_name: str = ""
    event_time: datetime | None = None
    source: str = ""
    identifiers: list[tuple[str, str]] = field(default_factory=list)
    valid: bool = True
    reason_code: str = ""
    reason: str = ""
    redrive_count: int = 0
    origin: str = ""  # a dead letter's source record
    seq: int = field(default_factory=lambda: next(_SEQ))

    @property
    def lookup(self) -> dict[str, str]:
        """The strongest identifier, as ``/v1/profiles`` takes it (empty if none)."""
        for kind in KIND_PREFIX:
            value = dict(self.identifiers).get(kind)
            if value:
                return {kind: value}
        return {}

    @property
    def problem(self) -> bool:
        return self.kind == "deadletter" or not self.valid


def _headers(msg: Message) -> list[tuple[str, bytes]]:
    out = []
    pairs: Any = msg.headers() or []  # the stubs allow more shapes than consumers return
    for name, value in pairs:
        raw = value.encode() if isinstance(value, str) else bytes(value or b"")
        out.append((str(name), raw))
    return out


def _redrive_count(headers: list[tuple[str, bytes]]) -> int:
    raw = next((v for k, v in reversed(headers) if k == REDRIVE_HEADER), b"0")
    return int(raw) if raw.isdigit() else 0


def _arrived(msg: Message, default: datetime) -> datetime:
    """When the record reached the topic (its timestamp), for backlog records too."""
    kind, ms = msg.timestamp()
    return datetime.fromtimestamp(ms / 1000, UTC) if kind and ms > 0 else default


def _position(msg: Message) -> str:
    return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"


def _identifiers(record: dict[str, Any]) -> list[tuple[str, str]]:
    ids = record.get("identifiers") or {}
    return [(k, str(ids[k])) for k in KIND_PREFIX if ids.get(k)]


@dataclass(frozen=True)
class _Decoded:
    """What a decodable record says about itself."""

    event_id: str = ""
    event_name: str = ""
    event_time: datetime | None = None
    source: str = ""
    identifiers: list[tuple[str, str]] = field(default_factory=list)


def _decoded(record: dict[str, Any]) -> _Decoded:
    when = record.get("event_time")
    return _Decoded(str(record.get("event_id") or ""), str(record.get("event_name") or ""),
                    when if isinstance(when, datetime) else None,
                    str(record.get("source") or ""), _identifiers(record))


def _try_decode(decode: Callable[[bytes | None], tuple[int, dict[str, Any]]],
                value: bytes | None) -> _Decoded:
    try:
        return _decoded(decode(value)[1])
    except Exception:  # undecodable records (often why they are here) show nothing more
        return _Decoded()


def _item(kind: str, position: str, at: datetime, d: _Decoded, valid: bool = True,
          reason_code: str = "", reason: str = "", redrive_count: int = 0,
          origin: str = "") -> LiveItem:
    return LiveItem(kind=kind, position=position, at=at, event_id=d.event_id,
                    event_name=d.event_name, event_time=d.event_time, source=d.source,
                    identifiers=d.identifiers, valid=valid, reason_code=reason_code,
                    reason=reason, redrive_count=redrive_count, origin=origin)


def event_item(msg: Message, decode: Callable[[bytes | None], tuple[int, dict[str, Any]]],
               now: datetime) -> LiveItem:
    """An ingestion record, screened as the workers will screen it."""
    headers = _headers(msg)
    count = _redrive_count(headers)
    source = SourceRecord(msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                          msg.key(), msg.value(), headers)
    position, at = _position(msg), _arrived(msg, now)
    try:
        screened = screen(source, decode, now, STAGE, count)
    except RegistryError as exc:  # not the record's fault: say so, do not guess
        return _item("event", position, at, _Decoded(), False, "unchecked",
                     f"schema registry unavailable: {exc}", count)
    if screened.envelope is not None:
        return _item("event", position, at, _decoded(screened.envelope.to_avro()),
                     redrive_count=count)
    letter = screened.dead_letter or {}
    return _item("event", position, at, _try_decode(decode, msg.value()), False,
                 str(letter.get("reason_code")), str(letter.get("reason")), count)


def dead_letter_item(msg: Message, serde: AvroSerde) -> LiveItem:
    record = serde.decode(msg.value())[1]
    origin = (f"{record['source_topic']}[{record['source_partition']}]"
              f"@{record['source_offset']}")
    return _item("deadletter", _position(msg), record["failed_at"],
                 _try_decode(serde.decode, record.get("original_value")), False,
                 record["reason_code"], record["reason"], record["redrive_count"], origin)


class RateGate:
    """At most ``rate`` items a second pass; the others are counted."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate, self._clock = rate, clock
        self._tokens, self._last = float(rate), clock()
        self.passed = self.skipped = 0

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self._rate), self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            self.passed += 1
            return True
        self.skipped += 1
        return False


class LiveHub:
    """Fans items out to the open live pages; the newest ``RECENT`` start each page."""

    def __init__(self) -> None:
        self.recent: deque[LiveItem] = deque(maxlen=RECENT)
        self._queues: set[asyncio.Queue[LiveItem]] = set()
        self.dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def offer(self, item: LiveItem) -> None:
        """From any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.publish, item)

    def publish(self, item: LiveItem) -> None:
        self.recent.append(item)
        for queue in self._queues:
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                self.dropped += 1

    def subscribe(self) -> asyncio.Queue[LiveItem]:
        queue: asyncio.Queue[LiveItem] = asyncio.Queue(QUEUE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[LiveItem]) -> None:
        self._queues.discard(queue)

    @property
    def listeners(self) -> int:
        return len(self._queues)


class LiveFeed:
    """The tail's callback: screens ingestion records (within the rate) and dead
    letters, and offers them to the hub."""

    def __init__(self, hub: LiveHub, serde: AvroSerde, ingest_topic: str, rate: int) -> None:
        self.hub, self._serde, self._ingest = hub, serde, ingest_topic
        self.gate = RateGate(rate)
        self._lock = threading.Lock()

    def handle(self, msg: Message) -> None:
        if msg.topic() == self._ingest:
            with self._lock:
                if not self.gate.allow():
                    return
            self.hub.offer(event_item(msg, self._serde.decode, datetime.now(UTC)))
        else:
            self.hub.offer(dead_letter_item(msg, self._serde))
