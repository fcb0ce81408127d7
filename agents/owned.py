"""Owned state for a stage: claim the stores of the partitions this worker is assigned,
and process its input records in transactions of their partition's store (a record's
effects in exactly one transaction, often shared with the records next to it).

Shared by the identity stage (agents/identity.py, one store per slot) and the profile
stage (agents/profiles.py, one store per partition). tables/state.py explains the
claim, the fencing and why transactions make effects exact. Everything
comes from the :class:`agents.context.Worker` it is given: nothing here at import.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agents.activation import Activation
from agents.context import Worker
from agents.screening import ORIGIN_HEADER, header
from streams.core import carried
from streams.core.batch import (
    BATCH_HEADER,
    BatchFormatError,
    BatchItem,
    chunked,
    decode_batch,
    encode_batch,
)
from streams.core.contract import ContractViolation, validate_record
from streams.core.deadletter import PROCESSING_ERROR, SourceRecord
from streams.core.routing import COMMAND_HEADER, partition_of
from streams.core.stages.outputs import Broadcast, Outputs, Resolved, Send
from streams.errors import BrokerError, DecodeError, RegistryError, StateFencedError
from streams.records import Envelope
from streams.topics import DEAD_LETTER, IDENTITY_INPUT
from tables.state import StateStore

log = logging.getLogger(__name__)
STANDBY_INTERVAL_S = 10.0
# Applied input offsets remembered exactly (tables/state.py): Faust redelivers at most
# what it had not committed (a second's worth), far fewer records than this.
APPLIED_KEPT = 10_000
TRIM_INTERVAL_S = 5.0
YIELD_EVERY = 200  # events of a batch between two turns of the event loop
PROTOCOL_COUNT = "protocol:"  # Outputs.counts prefix: identity protocol messages, by kind


@dataclass(frozen=True)
class Forward:
    """A record a stage sends on (to the next stage, or back), in its transaction."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int
    headers: dict[str, bytes]


def forwards(sends: list[Send], topic: str, partitions: int) -> list[Forward]:
    """The records for what a stage sends to the profile stage: per partition, its
    resolved events in batches, in order, and each command after the events sent to
    its partition before it (a merge-out must follow the loser's earlier events)."""
    records: list[Forward] = []
    pending: dict[int, list[BatchItem]] = {}

    def flush(partition: int) -> None:
        for run in chunked(pending.pop(partition, [])):
            batch = encode_batch(run)
            records.append(Forward(topic, None, batch, partition,
                                   {BATCH_HEADER: str(batch[0]).encode()}))

    for send in sends:
        if isinstance(send, Resolved):
            pending.setdefault(partition_of(send.profile_id, partitions), []).append(send.item)
        elif isinstance(send, Broadcast):
            for p in range(partitions):
                flush(p)
                records.append(Forward(topic, send.name, send.body, p,
                                       {COMMAND_HEADER: send.name}))
        else:
            partition = partition_of(send.profile_id, partitions)
            flush(partition)
            records.append(Forward(topic, send.profile_id.encode(), send.body, partition,
                                   {COMMAND_HEADER: send.name}))
    for p in sorted(pending):
        flush(p)
    return records


def read_items(message: Any, out: Outputs, now: datetime) -> list[BatchItem]:
    """The events of a record: a batch's, or the record itself (a single forward from a
    worker before batches). An unreadable batch is dead-lettered whole: no events."""
    if header(message, BATCH_HEADER) is None:
        origin = header(message, ORIGIN_HEADER) or (
            f"{message.topic}:{message.partition}:{message.offset}".encode())
        return [BatchItem(origin.decode(), message.key, message.value or b"")]
    try:
        return decode_batch(message.value or b"")
    except BatchFormatError as exc:
        log.error("unreadable batch at %s:%d dead-lettered: %s", message.tp, message.offset,
                  exc)
        out.park(SourceRecord(message.topic, message.partition, message.offset,
                              message.key, message.value), str(exc), now)
        return []


def chunks(items: list[BatchItem], size: int = YIELD_EVERY) -> list[list[BatchItem]]:
    """A batch's events in runs, with a turn of the event loop between two (heartbeats,
    the API)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


class Decoder:
    """An event's envelope at a stage after screening. Screening decoded it (the one
    Avro decode and contract check) and it travels with the event
    (streams/core/carried.py); only records written before that format, and carried
    bytes that do not read back, are decoded from Avro again here."""

    def __init__(self, w: Worker) -> None:
        self.w = w

    async def decoded(self, item: BatchItem, now: datetime, stage: str) -> Envelope | str:
        """The item's valid envelope, or why it has none; waits out a registry outage."""
        if item.envelope is not None:
            return item.envelope
        if item.carried:
            try:
                return carried.decode(item.carried)
            except carried.CarriedFormatError as exc:
                log.warning("event %s: carried envelope unreadable, decoding its Avro "
                            "value: %s", item.origin, exc)
        attempt = 0
        while True:
            try:
                return validate_record(self.w.serde.decode(item.value)[1], now)
            except (DecodeError, ContractViolation) as exc:
                return str(exc)
            except RegistryError as exc:
                log.warning("registry unavailable, retrying: %s", exc)
                attempt = await self.w.retrying(stage, attempt)


async def _still_ours(w: Worker, message: Any) -> bool:
    """After a fencing: wait for this worker's group membership to settle, then say
    whether the record's partition is still assigned here (if not, its new owner has
    it; if so, the fencing came from a worker that has since lost it)."""
    app = w.app
    generation = app.consumer_generation_id
    deadline = time.monotonic() + w.settings.worker_session_timeout.total_seconds() * 2
    while app.consumer_generation_id == generation and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    return message.tp in app.consumer.assignment()


# (input record, its partition's store, what it causes): a stage's work on one record.
Work = Callable[[Any, StateStore, Outputs], Awaitable[None]]


def runs(messages: list[Any], limit: int) -> list[list[Any]]:
    """Consecutive runs of ``messages`` of at most ``limit`` value bytes each (a larger
    record alone): one transaction each. A transaction's cost (a commit's round trip,
    the changelog writes) is mostly per transaction, not per record."""
    out: list[list[Any]] = []
    size = 0
    for message in messages:
        length = len(message.value or b"")
        if not out or size + length > limit:
            out.append([])
            size = 0
        out[-1].append(message)
        size += length
    return out


def unapplied(messages: list[Any], is_applied: Callable[[int], bool]) -> list[Any]:
    """The records still to do, in order: not applied in an earlier transaction, and
    each offset once (Faust can deliver a record again after a seek, within one group
    too, and the marks of this transaction are not written yet)."""
    seen: set[int] = set()
    todo = []
    for message in messages:
        if message.offset not in seen and not is_applied(message.offset):
            seen.add(message.offset)
            todo.append(message)
    return todo


class OwnedState:
    """A stage's stores, one per partition of its input ``topic_name``.

    Claims a store as soon as this worker is assigned its partition, not at its first
    record (the profile API answers from it, a takeover is ready sooner); releases it
    when the partition leaves; with ``ACTIVATION_STANDBY_REPLICAS`` > 0 keeps a warm
    copy of the others meanwhile (a catch-up with the changelog every few seconds).
    """

    def __init__(self, w: Worker, activation: Activation, stage: str, topic_name: str,
                 stores: list[StateStore], finish: Callable[[Outputs], None] | None = None
                 ) -> None:
        self.w, self.activation = w, activation
        self.stage, self.topic_name, self.stores = stage, topic_name, stores
        self.finish = finish  # what a stage does to a transaction's outputs before sending
        self._locks: dict[int, asyncio.Lock] = {}
        self._trim_due: dict[int, float] = {}
        self.next_catch_up = 0.0

    def lock(self, partition: int) -> asyncio.Lock:
        if partition not in self._locks:  # created on the worker's loop, not at import
            self._locks[partition] = asyncio.Lock()
        return self._locks[partition]

    def assigned(self) -> set[int]:
        return {tp.partition for tp in self.w.app.consumer.assignment()
                if tp.topic == self.topic_name}

    async def ensure_claimed(self, partition: int) -> None:
        """Claim the store (in a thread: it reads the changelog) unless it is claimed;
        one claim or catch-up at a time per store, whoever asks."""
        store = self.stores[partition]
        async with self.lock(partition):
            if not store.claimed:
                await asyncio.to_thread(store.claim)

    async def watch(self) -> None:
        assigned = self.assigned()
        catch_up = self.w.settings.standby_replicas > 0 and time.monotonic() >= self.next_catch_up
        if catch_up:
            self.next_catch_up = time.monotonic() + STANDBY_INTERVAL_S
        # Concurrently: a claim mostly waits on the broker (transactions, watermarks).
        await asyncio.gather(*(self._watch_one(p, p in assigned, catch_up)
                               for p in range(len(self.stores))))

    async def _watch_one(self, partition: int, assigned: bool, catch_up: bool) -> None:
        store = self.stores[partition]
        try:
            if assigned:
                await self.ensure_claimed(partition)
                return
            store.release()
            if catch_up:
                async with self.lock(partition):
                    if partition not in self.assigned():
                        await asyncio.to_thread(store.catch_up)
        except BrokerError as exc:
            log.warning("state %s: claim or catch-up failed, will retry: %s", store.label, exc)

    def _maybe_trim(self, store: StateStore, offset: int) -> None:
        if time.monotonic() >= self._trim_due.get(store.partition, 0.0):
            self._trim_due[store.partition] = time.monotonic() + TRIM_INTERVAL_S
            store.trim_applied(offset - APPLIED_KEPT)

    async def consume(self, stream: Any, work: Work) -> None:
        """The stage's agent loop: the records Faust has fetched, up to
        ``ACTIVATION_WORKER_TAKE_RECORDS`` at a time; each partition's in offset order
        through :meth:`process`, a few transactions' worth (:func:`runs`), and the
        partitions concurrently: while one partition's transaction commits (a broker
        round trip, in a thread) the others work. Faust acks the records, and so
        commits their offsets, only once all of them are done."""
        settings = self.w.settings
        wait = settings.worker_take_wait.total_seconds()
        async for events in stream.take_events(settings.worker_take_records, wait):
            by_partition: dict[int, list[Any]] = {}
            for event in events:
                by_partition.setdefault(event.message.partition, []).append(event.message)
            await asyncio.gather(*(self._partition(messages, work)
                                   for messages in by_partition.values()))

    async def _partition(self, messages: list[Any], work: Work) -> None:
        for run in runs(messages, self.w.settings.worker_transaction_bytes):
            await self.process(run, work)

    async def process(self, messages: list[Any], work: Work) -> None:
        """Records of one partition, in offset order, in one transaction: their state
        writes, what they emit and their offset commits together, before Faust commits
        the offsets. A record whose offset is already applied (a redelivery) is
        skipped; offsets applied long ago are trimmed now and then. A failed
        transaction is abandoned (its writes never reached the local database; the
        next claim reads on from the changelog) and its records done again."""
        store, attempt = self.stores[messages[0].partition], 0
        while True:
            out = Outputs(self.stage)
            try:
                done = await self._transact(messages, store, work, out)
                if not done:
                    return  # redeliveries only: no transaction, nothing to count
            except StateFencedError as exc:
                log.warning("%s", exc)
                store.abandon()
                if not await _still_ours(self.w, messages[0]):
                    log.warning("partition %s moved to another worker; records from %d "
                                "left to it", messages[0].tp, messages[0].offset)
                    return
                continue
            except BrokerError as exc:
                log.warning("%s transaction failed, retrying its records: %s", self.stage, exc)
                store.abandon()
                attempt = await self.w.retrying(self.stage, attempt)
                continue
            except asyncio.CancelledError:  # shutting down: leave no transaction open
                store.abandon()
                raise
            except Exception:  # e.g. the local database: never drop a record, retry them
                log.exception("%s failed on records %s:%d..%d; retrying them", self.stage,
                              messages[0].tp, messages[0].offset, messages[-1].offset)
                store.abandon()
                attempt = await self.w.retrying(self.stage, attempt)
                continue
            self._count(out, done)
            return

    async def _transact(self, messages: list[Any], store: StateStore, work: Work,
                        out: Outputs) -> int:
        """The records' one transaction; how many it did (0: none, every one was applied
        already)."""
        async with self.lock(store.partition):  # no claim or catch-up meanwhile
            if not store.claimed:
                await asyncio.to_thread(store.claim)
            todo = unapplied(messages, store.is_applied)
            if not todo:
                return 0
            store.begin()
            for message in todo:
                await work(message, store, out)
                store.mark_applied(message.offset)
            self._maybe_trim(store, todo[-1].offset)
            if self.finish is not None:
                self.finish(out)
            await self._send(out, store)
            await asyncio.to_thread(store.commit)
        return len(todo)

    async def _send(self, out: Outputs, store: StateStore) -> None:
        w = self.w
        await self.activation.emit(out.emissions, store.produce)
        letters, encode = w.topic(DEAD_LETTER), w.dead_letter_encoder()
        for key, record in out.letters:
            store.produce(letters, key, encode(record))
        for f in forwards(out.sends, w.profiles_topic.get_topic_name(), w.partitions):
            store.produce(f.topic, f.key, f.value, f.partition, f.headers)
        for back in out.identity:
            store.produce(w.topic(IDENTITY_INPUT), back.key.encode(), back.body, back.partition,
                          {COMMAND_HEADER: back.name})
        for name, key, value in out.records:
            store.produce(w.topic(name), key, value, 0)

    def _count(self, out: Outputs, records: int) -> None:
        metrics, counts = self.w.metrics, out.counts
        metrics.commits.labels(self.stage).inc(records)
        metrics.transactions.labels(self.stage).inc()
        for status, n in out.statuses.items():
            metrics.events.labels(self.stage, status).inc(n)
        metrics.duplicates.inc(out.statuses["duplicate"])
        metrics.merges.inc(counts["merges"])
        metrics.dead_letters.labels(PROCESSING_ERROR).inc(len(out.letters))
        metrics.matches.labels("new").inc(counts["match.new"])
        metrics.matches.labels("existing").inc(counts["match.existing"])
        self.w.activation_metrics.timers.inc(counts["timers"])
        self.w.activation_metrics.timer_errors.inc(counts["timer_errors"])
        self.activation.count(out.emissions)
        for name, n in counts.items():  # the identity protocol's messages, by kind
            if name.startswith(PROTOCOL_COUNT):
                metrics.protocol_messages.labels(name.removeprefix(PROTOCOL_COUNT)).inc(n)
        for emission, cause in out.caused:
            self.activation.observe_latency(emission, cause)
