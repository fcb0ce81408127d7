"""Profile stage: dedup, identity resolution, event-time-ordered profile updates.

Thin loop: the work is :func:`streams.core.pipeline.process_event` over the state
table. A record that passed screening but still fails here is dead-lettered with
reason ``processing_error`` so the partition keeps flowing.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from agents.ingest import (
    COMMAND_HEADER,
    ORIGIN_HEADER,
    UNDO_MERGE,
    core_topic,
    dead_letter_encoder,
    dead_letter_topic,
    header,
    metrics,
    retrying,
)
from streams.app import app, serde, settings
from streams.core.contract import ContractViolation, validate_record
from streams.core.deadletter import PROCESSING_ERROR, SourceRecord, dead_letter
from streams.core.dedup import DEDUP_PREFIX
from streams.core.pipeline import DUPLICATE, StageConfig, expired_markers, process_event
from streams.core.unmerge import undo_merge
from streams.errors import DecodeError, RegistryError
from tables.state import TableStore, scan, state

log = logging.getLogger(__name__)
STAGE = "stream.profile"
PURGE_INTERVAL_S = 5.0
PURGE_CHUNK = 2000
CONFIG = StageConfig(settings.dedup_window, settings.ordering_window,
                     settings.profile_timeline_limit)


async def _dead_letter(message: Any, reason: str) -> None:
    source = SourceRecord(message.topic, message.partition, message.offset, message.key,
                          message.value)
    record = dead_letter(source, PROCESSING_ERROR, reason, STAGE, datetime.now(UTC))
    await dead_letter_topic.send(key=message.key, value=dead_letter_encoder()(record))
    metrics.dead_letters.labels(PROCESSING_ERROR).inc()


def run_command(message: Any, store: TableStore) -> None:
    """Operator commands travel on the profile topic so that they are applied by the
    profile's owner, in order with its events (writes need the owner's table)."""
    try:
        body = json.loads(message.value)
        if header(message, COMMAND_HEADER) == UNDO_MERGE:
            record = undo_merge(store, body["profile_id"], body["event_id"])
            log.info("undo of merge %s on %s: %s", body["event_id"], body["profile_id"],
                     "done" if record else "nothing to undo")
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignored malformed command at offset %d: %s", message.offset, exc)


async def handle(message: Any, store: TableStore) -> None:
    if header(message, COMMAND_HEADER) is not None:
        run_command(message, store)
        return
    attempt = 0
    while True:
        now = datetime.now(UTC)
        try:
            envelope = validate_record(serde.decode(message.value)[1], now)
        except (DecodeError, ContractViolation) as exc:
            await _dead_letter(message, str(exc))
            return
        except RegistryError as exc:
            log.warning("registry unavailable, retrying: %s", exc)
            attempt = await retrying(STAGE, attempt)
            continue
        origin = (header(message, ORIGIN_HEADER) or b"").decode()
        try:
            outcome = process_event(store, envelope, message.offset, now, CONFIG, origin)
        except Exception as exc:  # a bug must not stall the partition: park the record
            log.exception("profile stage failed on offset %d", message.offset)
            await _dead_letter(message, f"{type(exc).__name__}: {exc}")
            return
        metrics.events.labels(STAGE, outcome.status).inc()
        if outcome.status == DUPLICATE:
            metrics.duplicates.inc()
        metrics.merges.inc(len(outcome.merged))
        return


class MarkerSweeper:
    """Deletes expired dedup markers a chunk at a time, between events.

    Deletes are table writes, which Faust allows only while an event is current:
    hence inside the agent loop rather than in a timer.
    """

    def __init__(self, interval_s: float = PURGE_INTERVAL_S, chunk: int = PURGE_CHUNK) -> None:
        self.interval_s, self.chunk = interval_s, chunk
        self.cursor = DEDUP_PREFIX
        self.due = time.monotonic() + interval_s

    def maybe_sweep(self, partition: int) -> None:
        if time.monotonic() < self.due:
            return
        self.due = time.monotonic() + self.interval_s
        items = scan(state, partition, self.cursor, self.chunk)
        expired, cursor = expired_markers(items, datetime.now(UTC), settings.dedup_window,
                                          self.chunk)
        for key in expired:
            del state[key]
        self.cursor = cursor or DEDUP_PREFIX
        metrics.purged.inc(len(expired))


@app.agent(core_topic, name="profiles")
async def profile_agent(stream: Any) -> None:
    store = TableStore(state)
    sweeper = MarkerSweeper()
    async for event in stream.events():
        await handle(event.message, store)
        sweeper.maybe_sweep(event.message.partition)
