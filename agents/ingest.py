"""Screening stage: ingestion topic -> (dead letters | profile stage).

Reads raw bytes so that a record that cannot be decoded is still in hand, byte for
byte, to dead-letter. Valid records are forwarded unchanged to the one-partition
profile-core topic: the identity graph and the profiles need a single owner to
stay consistent (repartitioning by canonical profile id is future work).
Faust flushes the producer before it commits offsets, so a forward or a dead
letter is durable before its input offset is: at-least-once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from agents.metrics import StreamMetrics
from streams.app import app, metrics_registry, serde, settings
from streams.core.deadletter import SourceRecord, screen
from streams.errors import RegistryError
from streams.serde import Encoder
from streams.topics import DEAD_LETTER, DEAD_LETTER_RECORD, INGEST, PROFILE_CORE

log = logging.getLogger(__name__)
STAGE = "stream.screen"
MAX_BACKOFF_S = 10.0

metrics = StreamMetrics(metrics_registry)
ingest_topic: Any = app.topic(settings.topic(INGEST), key_type=bytes, value_type=bytes,
                              key_serializer="raw", value_serializer="raw")
dead_letter_topic: Any = app.topic(settings.topic(DEAD_LETTER), key_type=bytes,
                                   value_type=bytes, key_serializer="raw",
                                   value_serializer="raw")
core_topic: Any = app.topic(settings.topic(PROFILE_CORE), partitions=1, internal=True,
                            key_type=bytes, value_type=bytes, key_serializer="raw",
                            value_serializer="raw")
_dead_letter_encoder: list[Encoder] = []
# Names the ingestion record a forwarded event came from, so the profile stage tells
# a redelivery (same record) from a producer's duplicate (same event id, new record).
ORIGIN_HEADER = "x-activation-origin"
REDRIVE_HEADER = "x-activation-redrive-count"  # set by scripts/deadletters
COMMAND_HEADER = "x-activation-command"  # operator commands on the profile topic
UNDO_MERGE = b"undo-merge"


def origin_of(source: SourceRecord) -> bytes:
    return f"{source.topic}:{source.partition}:{source.offset}".encode()


def redrive_count(message: Any) -> int:
    """How often scripts/deadletters re-drove this record already (0 if never)."""
    raw = header(message, REDRIVE_HEADER)
    try:
        return int(raw) if raw else 0
    except ValueError:
        return 0


def header(message: Any, name: str) -> bytes | None:
    headers = message.headers or ()
    items = headers.items() if isinstance(headers, dict) else headers
    found = [value for key, value in items if key == name]
    return found[-1] if found else None


def dead_letter_encoder() -> Encoder:
    """Resolved once (a registry lookup); the schema is registered by the schema workflow."""
    if not _dead_letter_encoder:
        subject = f"{settings.topic(DEAD_LETTER)}-value"
        _dead_letter_encoder.append(serde.encoder(subject, DEAD_LETTER_RECORD))
    return _dead_letter_encoder[0]


async def retrying(stage: str, attempt: int) -> int:
    """Back off after a transient error; the partition waits, nothing is dropped."""
    metrics.retries.labels(stage).inc()
    await asyncio.sleep(min(MAX_BACKOFF_S, 0.2 * 2**attempt))
    return attempt + 1


async def handle(message: Any) -> None:
    source = SourceRecord(message.topic, message.partition, message.offset, message.key,
                          message.value, tuple(message.headers or ()))
    attempt = 0
    while True:
        try:
            result = screen(source, serde.decode, datetime.now(UTC), STAGE,
                            redrive_count(message))
            if result.dead_letter is None:
                await core_topic.send(key=message.key, value=message.value,
                                      headers={ORIGIN_HEADER: origin_of(source)})
                metrics.events.labels(STAGE, "forwarded").inc()
                return
            value = dead_letter_encoder()(result.dead_letter)
            await dead_letter_topic.send(key=message.key, value=value)
            metrics.dead_letters.labels(result.dead_letter["reason_code"]).inc()
            metrics.events.labels(STAGE, "dead_letter").inc()
            log.warning("dead-lettered %s[%d]@%d: %s", source.topic, source.partition,
                        source.offset, result.dead_letter["reason"])
            return
        except RegistryError as exc:
            log.warning("registry unavailable, retrying %s@%d: %s", source.topic,
                        source.offset, exc)
            attempt = await retrying(STAGE, attempt)


@app.agent(ingest_topic, name="screen")
async def screen_agent(stream: Any) -> None:
    async for event in stream.events():
        await handle(event.message)
