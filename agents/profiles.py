"""Profile stage: dedup, identity resolution, event-time-ordered profile updates, and
activation (audiences, journeys, governance) for the profile an event changed.

Thin loop: the work is :func:`streams.core.pipeline.process_event` over the state
table, with :func:`streams.activation.runtime.activate_event` as its hook; ``tick``
commands fire due per-profile timers. A record that passed screening but still fails
here is dead-lettered with reason ``processing_error`` so the partition keeps flowing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agents.activation import TICK, count, definitions_in_force, emit, wait_for_definitions
from agents.activation import metrics as activation_metrics
from agents.ingest import (
    COMMAND_HEADER,
    ORIGIN_HEADER,
    UNDO_MERGE,
    core_topic,
    dead_letter_encoder,
    header,
    metrics,
    retrying,
)
from streams.activation.runtime import (
    OUTBOX,
    TIMER,
    Emission,
    TimerContext,
    activate_event,
    clock_now,
    drop_timer,
    due_timers,
    expired_outbox,
    fire_timer,
    read_outbox,
    set_clock,
)
from streams.app import app, serde, settings
from streams.core.batch import (
    BATCH_HEADER,
    BATCH_SPAN,
    BatchFormatError,
    BatchItem,
    decode_batch,
    parse_origin,
    position,
)
from streams.core.contract import ContractViolation, validate_record
from streams.core.deadletter import PROCESSING_ERROR, SourceRecord, dead_letter
from streams.core.dedup import DEDUP_PREFIX
from streams.core.pipeline import (
    DUPLICATE,
    REPLAYED,
    StageConfig,
    canonical_id,
    expired_markers,
    load_profile,
    pkey,
    process_event,
)
from streams.core.profile import Profile
from streams.core.unmerge import undo_merge
from streams.errors import BrokerError, DecodeError, RegistryError, StateFencedError
from streams.records import Envelope
from streams.topics import DEAD_LETTER
from tables.state import StateStore, state

log = logging.getLogger(__name__)
STAGE = "stream.profile"
DEAD_LETTERS = settings.topic(DEAD_LETTER)
PURGE_INTERVAL_S = 5.0
STANDBY_INTERVAL_S = 10.0
YIELD_EVERY = 200  # events of a batch between two turns of the event loop
PURGE_CHUNK = 2000
# Outbox entries are needed until their input offset is committed (seconds); keeping
# the last 1,000 records' worth (positions, see streams/core/batch.py) is a wide margin
# that still bounds the table.
OUTBOX_KEEP = 1_000 * BATCH_SPAN
MANUAL = settings.activation_clock == "manual"
CONFIG = StageConfig(settings.dedup_window, settings.ordering_window,
                     settings.profile_timeline_limit)


@dataclass
class Outputs:
    """What one record caused: sent within its transaction, counted once it committed
    (so a record done again after a failed transaction is neither sent nor counted twice)."""

    emissions: list[tuple[Emission, bool]] = field(default_factory=list)  # (what, fresh)
    letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    merges: int = 0

    def park(self, source: SourceRecord, reason: str) -> None:
        record = dead_letter(source, PROCESSING_ERROR, reason, STAGE, datetime.now(UTC))
        self.letters.append((source.key, dead_letter_encoder()(record)))

    async def send(self, store: StateStore) -> None:
        await emit((e for e, _ in self.emissions), store.produce)
        for key, value in self.letters:
            store.produce(DEAD_LETTERS, key, value)

    def count(self) -> None:
        for status, n in self.statuses.items():
            metrics.events.labels(STAGE, status).inc(n)
        metrics.duplicates.inc(self.statuses[DUPLICATE])
        metrics.merges.inc(self.merges)
        metrics.dead_letters.labels(PROCESSING_ERROR).inc(len(self.letters))
        for emission, fresh in self.emissions:
            if fresh:
                count(emission)


def _source(item: BatchItem) -> SourceRecord:
    """The ingestion record an event came from: a dead letter re-drives to it."""
    topic, partition, offset = parse_origin(item.origin)
    return SourceRecord(topic, partition, offset, item.key, item.value)


class Activation:
    """The profile stage's activation hook for one record, and what it emitted."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.emission: Emission | None = None

    def scanner(self, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        return self.store.scan(prefix, limit, prefix)

    def hook(self, before: Profile | None, profile: Profile, envelope: Envelope,
             offset: int, merged: tuple[str, ...]) -> Profile:
        now = clock_now(self.store, MANUAL, datetime.now(UTC))
        # Merged-away profiles as they were: the merge moved their identifiers and
        # history into ``profile`` but left their own records in place.
        losers = [p for p in (load_profile(self.store, pid) for pid in merged) if p]
        profile, self.emission = activate_event(
            self.store, before, profile, envelope, offset, now, definitions_in_force(),
            CONFIG.timeline_limit, losers)
        return profile

    def timer_context(self) -> TimerContext:
        def save(profile: Profile) -> None:
            self.store[pkey(profile.profile_id)] = profile.to_json()

        return TimerContext(lambda pid: load_profile(self.store, pid), save,
                            lambda pid: canonical_id(self.store, pid), CONFIG.timeline_limit)


def run_tick(message: Any, store: StateStore, out: Outputs) -> None:
    """Fire the due timers of this partition. A replayed tick first re-sends what it
    emitted before (its outbox), then fires what is still due, at the same instant."""
    now = datetime.fromisoformat(json.loads(message.value)["now"])
    if MANUAL:
        set_clock(store, now)
    act = Activation(store)
    at = position(message.offset)
    out.emissions.extend((e, False) for e in read_outbox(act.scanner, at))
    definitions, ctx = definitions_in_force(), act.timer_context()
    for tkey, pid in due_timers(act.scanner(TIMER, settings.timer_batch), now):
        activation_metrics.timers.inc()
        try:
            emission = fire_timer(store, tkey, pid, at, now, definitions, ctx)
        except BrokerError:
            raise
        except Exception:  # a bug in one profile's timer must not stall every timer
            log.exception("timer of profile %s failed; dropped (its next event re-arms it)",
                          pid)
            activation_metrics.timer_errors.inc()
            drop_timer(store, tkey, pid)
            continue
        if emission is not None:
            out.emissions.append((emission, True))


def run_command(message: Any, store: StateStore, out: Outputs) -> None:
    """Operator commands and ticks travel on the profile topic so that they are applied
    by the profile's owner, in order with its events (writes need the owner's table)."""
    try:
        command = header(message, COMMAND_HEADER)
        if command == TICK:
            run_tick(message, store, out)
            return
        body = json.loads(message.value)
        if command == UNDO_MERGE:
            record = undo_merge(store, body["profile_id"], body["event_id"])
            log.info("undo of merge %s on %s: %s", body["event_id"], body["profile_id"],
                     "done" if record else "nothing to undo")
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignored malformed command at offset %d: %s", message.offset, exc)


def _apply(store: StateStore, item: BatchItem, at: int, envelope: Envelope,
           now: datetime, out: Outputs) -> None:
    act = Activation(store)
    outcome = process_event(store, envelope, at, now, CONFIG, item.origin, activate=act.hook)
    if act.emission is not None:
        out.emissions.append((act.emission, True))
    elif outcome.status == REPLAYED:  # re-send what it emitted the first time
        out.emissions.extend((e, False) for e in read_outbox(act.scanner, outcome.offset))
    out.statuses[outcome.status] += 1
    out.merges += len(outcome.merged)


async def _decoded(item: BatchItem, now: datetime) -> Envelope | str:
    """The item's valid envelope, or why it has none; waits out a registry outage."""
    attempt = 0
    while True:
        try:
            return validate_record(serde.decode(item.value)[1], now)
        except (DecodeError, ContractViolation) as exc:
            return str(exc)
        except RegistryError as exc:
            log.warning("registry unavailable, retrying: %s", exc)
            attempt = await retrying(STAGE, attempt)


async def run_events(message: Any, store: StateStore, items: list[BatchItem],
                     out: Outputs) -> None:
    """Apply a record's events in order, collecting what they emit."""
    for index, item in enumerate(items):
        if index % YIELD_EVERY == YIELD_EVERY - 1:  # let heartbeats and the API run
            await asyncio.sleep(0)
        now = datetime.now(UTC)
        envelope = await _decoded(item, now)
        try:
            if isinstance(envelope, str):
                raise ContractViolation(envelope)
            _apply(store, item, position(message.offset, index), envelope, now, out)
        except BrokerError:  # the state's transaction failed: the record is done again
            raise
        except Exception as exc:  # a bug must not stall the partition: park the event
            log.exception("profile stage failed on %s", item.origin)
            out.park(_source(item), f"{type(exc).__name__}: {exc}")


async def handle(message: Any, store: StateStore, out: Outputs) -> None:
    if header(message, COMMAND_HEADER) is not None:
        run_command(message, store, out)
        return
    if header(message, BATCH_HEADER) is None:  # one event, from a worker before batches
        origin = header(message, ORIGIN_HEADER) or (
            f"{message.topic}:{message.partition}:{message.offset}".encode())
        await run_events(message, store, [BatchItem(origin.decode(), message.key,
                                                    message.value or b"")], out)
        return
    try:
        items = decode_batch(message.value or b"")
    except BatchFormatError as exc:
        log.error("unreadable batch at offset %d dead-lettered: %s", message.offset, exc)
        out.park(SourceRecord(message.topic, message.partition, message.offset,
                              message.key, message.value), str(exc))
        return
    await run_events(message, store, items, out)


class MarkerSweeper:
    """Deletes expired dedup markers and old outbox entries a chunk at a time, between
    events.

    Deletes are writes, which belong to a record's transaction: hence inside the agent
    loop rather than in a timer.
    """

    def __init__(self, interval_s: float = PURGE_INTERVAL_S, chunk: int = PURGE_CHUNK) -> None:
        self.interval_s, self.chunk = interval_s, chunk
        self.cursor = DEDUP_PREFIX
        self.due = time.monotonic() + interval_s

    def maybe_sweep(self, store: StateStore, at: int) -> None:
        if time.monotonic() < self.due:
            return
        self.due = time.monotonic() + self.interval_s
        items = store.scan(self.cursor, self.chunk, DEDUP_PREFIX)
        expired, cursor = expired_markers(items, datetime.now(UTC), settings.dedup_window,
                                          self.chunk)
        for key in expired:
            del store[key]
        self.cursor = cursor or DEDUP_PREFIX
        metrics.purged.inc(len(expired))
        for key in expired_outbox(store.scan(OUTBOX, self.chunk, OUTBOX), at - OUTBOX_KEEP):
            del store[key]


async def _still_ours(message: Any) -> bool:
    """After a fencing: wait for this worker's group membership to settle, then say
    whether the record's partition is still assigned here (if not, its new owner has
    it; if so, the fencing came from a worker that has since lost it)."""
    generation = app.consumer_generation_id
    deadline = time.monotonic() + settings.worker_session_timeout.total_seconds() * 2
    while app.consumer_generation_id == generation and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    return message.tp in app.consumer.assignment()


_claiming: list[asyncio.Lock] = []


def _lock() -> asyncio.Lock:
    if not _claiming:  # created on the worker's loop, not at import
        _claiming.append(asyncio.Lock())
    return _claiming[0]


async def ensure_claimed(store: StateStore) -> None:
    """Claim the state (in a thread: it reads the changelog) unless it is claimed; one
    claim or catch-up at a time, whoever asks."""
    async with _lock():
        if not store.claimed:
            await asyncio.to_thread(store.claim)


class Ownership:
    """Claims the state as soon as this worker is assigned the profile partition, not at
    its first record (the profile API answers from it, a takeover is ready sooner);
    releases it when the partition leaves; with ``ACTIVATION_STANDBY_REPLICAS`` > 0 keeps
    a warm copy meanwhile (a catch-up with the changelog every few seconds)."""

    def __init__(self) -> None:
        self.next_catch_up = 0.0

    def assigned(self) -> bool:
        return any(tp.topic == core_topic.get_topic_name() for tp in app.consumer.assignment())

    async def watch(self) -> None:
        try:
            if self.assigned():
                await ensure_claimed(state)
                return
            state.release()
            if settings.standby_replicas > 0 and time.monotonic() >= self.next_catch_up:
                self.next_catch_up = time.monotonic() + STANDBY_INTERVAL_S
                async with _lock():
                    if not self.assigned():
                        await asyncio.to_thread(state.catch_up)
        except BrokerError as exc:
            log.warning("profile state claim or catch-up failed, will retry: %s", exc)


app.timer(interval=1.0)(Ownership().watch)


async def process_record(message: Any, store: StateStore, sweeper: MarkerSweeper) -> None:
    """One input record in one transaction: its state writes and what it emits commit
    together, before Faust commits its offset. A failed transaction is abandoned (the
    next claim rebuilds the state from the changelog) and the record is done again."""
    attempt = 0
    while True:
        out = Outputs()
        try:
            async with _lock():  # no claim or catch-up while a record is under way
                if not store.claimed:
                    await asyncio.to_thread(store.claim)
                store.begin()
                await handle(message, store, out)
                sweeper.maybe_sweep(store, position(message.offset))
                await out.send(store)
                await asyncio.to_thread(store.commit)
        except StateFencedError as exc:
            log.warning("%s", exc)
            store.abandon()
            if not await _still_ours(message):
                log.warning("partition %s moved to another worker; record %d left to it",
                            message.tp, message.offset)
                return
            continue
        except BrokerError as exc:
            log.warning("profile stage transaction failed, retrying the record: %s", exc)
            store.abandon()
            attempt = await retrying(STAGE, attempt)
            continue
        except asyncio.CancelledError:  # shutting down: leave no transaction open
            store.abandon()
            raise
        except Exception:  # e.g. the local database: never drop the record, retry it
            log.exception("profile stage failed on record %d; retrying it", message.offset)
            store.abandon()
            attempt = await retrying(STAGE, attempt)
            continue
        out.count()
        return


@app.agent(core_topic, name="profiles")
async def profile_agent(stream: Any) -> None:
    await wait_for_definitions()
    sweeper = MarkerSweeper()
    async for event in stream.events():
        await process_record(event.message, state, sweeper)
