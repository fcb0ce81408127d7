"""Screening stage: ingestion topic -> (dead letters | profile stage), in batches.

Reads raw bytes so that a record that cannot be decoded is still in hand, byte for
byte, to dead-letter. Valid records are forwarded unchanged, many to a record
(streams/core/batch.py), to the identity stage's input topic (``internal.identity``,
agents/identity.py), on the partition of each event's home key (one partition in the
single layout), which passes them on to the profile stage partitioned by canonical
profile id (agents/profiles.py).

Not a Faust agent: Faust's per-record stream step costs more than screening itself, so
the stage is a librdkafka consumer and producer in a thread of the worker, in its own
consumer group (``<app id>-screen``; several workers share the ingestion partitions).
Each poll's records are screened, their forwards and dead letters produced and
flushed, and only then are their offsets committed: at-least-once. A record forwarded
twice (a crash between flush and commit) has the same origin, which the identity stage
treats as a replay.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from mode import Service

from agents.context import MAX_BACKOFF_S, Worker
from streams.core.batch import BATCH_HEADER, BatchItem, chunked, encode_batch
from streams.core.deadletter import SourceRecord, screen
from streams.core.identity import identifier_keys
from streams.core.routing import key_slot
from streams.errors import RegistryError
from streams.suppressions import Suppressions
from streams.topics import DEAD_LETTER, IDENTITY_INPUT, INGEST, STAGE_MAX_BYTES

log = logging.getLogger(__name__)
STAGE = "stream.screen"
POLL_EVENTS = 2_000
POLL_TIMEOUT_S = 0.1
FLUSH_TIMEOUT_S = 30.0

# Names the ingestion record a forwarded event came from, so the profile stage tells
# a redelivery (same record) from a producer's duplicate (same event id, new record).
ORIGIN_HEADER = "x-activation-origin"
REDRIVE_HEADER = "x-activation-redrive-count"  # set by scripts/deadletters


def _redrive_count(headers: Sequence[tuple[str, bytes]]) -> int:
    """How often scripts/deadletters re-drove this record already (0 if never)."""
    raw = next((v for k, v in reversed(headers) if k == REDRIVE_HEADER), None)
    try:
        return int(raw) if raw else 0
    except ValueError:
        return 0


def header(message: Any, name: str) -> bytes | None:
    headers = message.headers or ()
    items = headers.items() if isinstance(headers, dict) else headers
    found = [value for key, value in items if key == name]
    return found[-1] if found else None


def screen_records(w: Worker, records: Sequence[Message], now: datetime,
                   suppressions: Suppressions | None = None
                   ) -> tuple[list[tuple[int, BatchItem]], list[tuple[bytes | None, bytes]]]:
    """((identity slot, event) to forward, (key, dead letter) pairs) for one poll, in
    input order. Events of erased, suppressed customers are dropped (and counted). An
    event's slot is its home key's (its strongest identifier: the ingestion key), so
    every event of a customer, and every resend of an event, reaches the same slot.

    Raises :class:`RegistryError` when the registry is unreachable: the caller retries
    the whole poll rather than dead-letter good data.
    """
    forwards: list[tuple[int, BatchItem]] = []
    letters: list[tuple[bytes | None, bytes]] = []
    slots, decode = w.slots, w.serde.decode
    for rec in records:
        raw: Any = rec.headers()
        headers = [(str(k), bytes(v or b"")) for k, v in raw] if raw else []
        source = SourceRecord(rec.topic() or "", rec.partition() or 0, rec.offset() or 0,
                              rec.key(), rec.value(), tuple(headers))
        result = screen(source, decode, now, STAGE, _redrive_count(headers) if raw else 0)
        envelope = result.envelope
        if envelope is not None and suppressions is not None \
                and suppressions.hits(envelope.identifiers):
            w.metrics.events.labels(STAGE, "suppressed").inc()
            continue
        if envelope is not None:
            # The one decode, carried on; the slot of the event's home key (its
            # strongest identifier), 0 in the single layout.
            slot = key_slot(identifier_keys(envelope.identifiers)[0], slots) if slots > 1 else 0
            forwards.append((slot, BatchItem(
                f"{source.topic}:{source.partition}:{source.offset}", source.key,
                source.value or b"", envelope=envelope)))
            continue
        assert result.dead_letter is not None  # noqa: S101 - screen() gives one or the other
        letters.append((source.key, w.dead_letter_encoder()(result.dead_letter)))
        w.metrics.dead_letters.labels(result.dead_letter["reason_code"]).inc()
        log.warning("dead-lettered %s[%d]@%d: %s", source.topic, source.partition,
                    source.offset, result.dead_letter["reason"])
    return forwards, letters


class Screener:
    """The stage's loop (run in a thread): poll, screen, produce, flush, commit."""

    def __init__(self, w: Worker) -> None:
        self.w, settings = w, w.settings
        client = settings.kafka_client_config()
        timeout_ms = int(settings.worker_session_timeout.total_seconds() * 1000)
        self.consumer = Consumer({
            **client, "group.id": settings.screen_group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": timeout_ms,
            "max.partition.fetch.bytes": settings.worker_fetch_max_bytes,
            "log_level": 3})
        self.producer = Producer({
            **client, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
            "message.max.bytes": STAGE_MAX_BYTES + 65_536, "log_level": 3})
        self.core = settings.topic(IDENTITY_INPUT)
        self.dead_letters = settings.topic(DEAD_LETTER)
        self.ingest = settings.topic(INGEST)
        self.attempt = 0
        self.suppressions = Suppressions(settings)

    def run(self, stop: threading.Event) -> None:
        self.suppressions.start()
        self.consumer.subscribe([self.ingest], on_assign=self._assigned,
                                on_revoke=self._revoked, on_lost=self._revoked)
        try:
            while not stop.is_set():
                records = [r for r in self.consumer.consume(POLL_EVENTS, POLL_TIMEOUT_S)
                           if not self._is_error(r)]
                if records:
                    self.process(records, stop)
        finally:
            self.suppressions.stop()
            self.producer.flush(FLUSH_TIMEOUT_S)
            self.consumer.close()

    def _assigned(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        """The ingestion partitions this worker screens from now on (the group's
        protocol is eager: this is the whole assignment), for ``GET /v1/ownership``."""
        self.w.screening_partitions = sorted(tp.partition for tp in partitions)

    def _revoked(self, _consumer: Any, _partitions: list[TopicPartition]) -> None:
        self.w.screening_partitions = []

    @staticmethod
    def _is_error(record: Message) -> bool:
        if record.error() is None:
            return False
        log.warning("ingestion consumer: %s", record.error())
        return True

    def process(self, records: list[Message], stop: threading.Event) -> None:
        try:
            forwards, letters = screen_records(self.w, records, datetime.now(UTC),
                                               self.suppressions)
            self._produce(forwards, letters)
        except (RegistryError, KafkaException) as exc:
            log.warning("screening retried after a transient failure: %s", exc)
            self._rewind(records)
            self.w.metrics.retries.labels(STAGE).inc()
            stop.wait(min(MAX_BACKOFF_S, 0.2 * 2**self.attempt))
            self.attempt += 1
            return
        self.attempt = 0
        metrics = self.w.metrics
        metrics.events.labels(STAGE, "forwarded").inc(len(forwards))
        metrics.commits.labels(STAGE).inc(len(records))
        metrics.events.labels(STAGE, "dead_letter").inc(len(letters))
        self._commit(records)

    def _produce(self, forwards: list[tuple[int, BatchItem]],
                 letters: list[tuple[bytes | None, bytes]]) -> None:
        failures: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        slots: dict[int, list[BatchItem]] = {}
        for slot, item in forwards:
            slots.setdefault(slot, []).append(item)
        for slot, items in sorted(slots.items()):
            for run in chunked(items):
                batch = encode_batch(run)
                self.producer.produce(self.core, value=batch, partition=slot,
                                      on_delivery=delivered,
                                      headers={BATCH_HEADER: str(batch[0]).encode()})
        for key, value in letters:
            self.producer.produce(self.dead_letters, key=key, value=value,
                                  on_delivery=delivered)
        left = self.producer.flush(FLUSH_TIMEOUT_S)
        if failures or left:
            raise KafkaException(f"{len(failures)} writes failed, {left} unconfirmed: "
                                 f"{failures[:1]}")

    @staticmethod
    def _positions(records: list[Message], after: bool) -> list[TopicPartition]:
        """Per partition (records come in offset order): the first record's offset, to
        rewind to, or (``after``) the one past the last, to commit."""
        at: dict[tuple[str, int], int] = {}
        for rec in records:
            tp, offset = (rec.topic() or "", rec.partition() or 0), rec.offset() or 0
            if after:
                at[tp] = offset + 1
            else:
                at.setdefault(tp, offset)
        return [TopicPartition(t, p, o) for (t, p), o in at.items()]

    def _rewind(self, records: list[Message]) -> None:
        for tp in self._positions(records, after=False):
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:  # revoked meanwhile: its new owner reads it
                log.info("not rewinding %s[%d]: %s", tp.topic, tp.partition, exc)

    def _commit(self, records: list[Message]) -> None:
        try:
            self.consumer.commit(offsets=self._positions(records, after=True),
                                 asynchronous=False)
        except KafkaException as exc:  # a rebalance: the next owner screens them again
            log.info("commit refused (%s); the records will be screened again", exc)


class ScreeningService(Service):
    """Runs the :class:`Screener` in a thread for as long as the worker runs."""

    worker: Worker  # set by :func:`install`, on a subclass of its own

    async def on_start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="screener", daemon=True)
        self._owner_loop = asyncio.get_running_loop()
        self._thread.start()

    def _main(self) -> None:
        try:
            Screener(self.worker).run(self._stop)
        except Exception as exc:  # a bug: stop the worker loudly rather than screen nothing
            log.exception("the screening stage failed")
            asyncio.run_coroutine_threadsafe(self.crash(exc), self._owner_loop)

    async def on_stop(self) -> None:
        self._stop.set()
        started = time.monotonic()
        await asyncio.to_thread(self._thread.join, FLUSH_TIMEOUT_S + 5)
        log.info("screening stopped in %.1f s", time.monotonic() - started)


def install(w: Worker) -> None:
    """Start the screening thread with the worker (Faust instantiates the class)."""
    w.app.service(type("Screening", (ScreeningService,), {"worker": w}))
