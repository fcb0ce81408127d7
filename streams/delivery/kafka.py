"""The executor's Kafka side, on one thread: a consumer of the action topics (consumer
group ``<app id>-delivery``, so executors share the partitions and scale on their own)
and one transactional producer.

- **Assignment.** Before a partition's first command is handed over, its ledger
  partition (the same number) is read to its end, read_committed
  (:func:`read_ledger`), so the executor knows every delivery done or waiting there.
- **Commit.** Every ``ACTIVATION_DELIVERY_COMMIT_INTERVAL`` what the asyncio side staged
  (ledger entries, outcomes, dead letters) is produced and the input offsets it settles
  are committed, in one transaction with the consumer group's metadata (KIP-447): an
  executor that lost its partitions in a rebalance cannot commit for them any more.
  Staged records of partitions no longer assigned are dropped (their new owner
  redoes them from the ledger and the committed offset).
- **Back-pressure.** Past ``ACTIVATION_DELIVERY_MAX_PENDING`` jobs in memory, the
  consumer pauses its partitions until half of them are done.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from streams.delivery.executor import Executor
from streams.delivery.ledger import Ledger
from streams.delivery.metrics import DeliveryMetrics
from streams.delivery.types import Incoming, Record
from streams.errors import BrokerError
from streams.follower import read_to_end, reader
from streams.settings import Settings

log = logging.getLogger(__name__)
RESTORE_TIMEOUT_S = 120.0
TXN_CALL_TIMEOUT_S = 30.0
TXN_RETRIES = 10
TRANSACTION_TIMEOUT_MS = 15_000  # an abandoned transaction blocks a ledger restore this long
TOPICS_CHECK_S = 5.0  # how often the channels in force are compared with the subscription
_NO_HEADERS: Mapping[str, bytes] = MappingProxyType({})


class _Abortable(Exception):  # noqa: N818 - internal control flow, never escapes
    def __init__(self, error: Any) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Staged:
    # (input partition, its records) in staging order: a list per call, not a tuple per
    # record (three or more records an outcome, under the lock the event loop waits on)
    records: list[tuple[tuple[str, int], list[Record]]] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


def read_ledger(settings: Settings, ledger_topic: str, partition: int, topics: set[str]
                ) -> dict[str, Ledger]:
    """Ledger partition ``partition`` to its end, split by action topic."""
    out = {t: Ledger() for t in topics}

    def restore(batch: list[Message]) -> None:
        for msg in batch:
            key = (msg.key() or b"").decode()
            ledger = out.get(key.split("|", 1)[0])
            if ledger is not None:
                ledger.restore(key, msg.value())

    consumer = reader(settings, "delivery-ledger")
    try:
        consumer.assign([TopicPartition(ledger_topic, partition, OFFSET_BEGINNING)])
        read_to_end(consumer, restore, RESTORE_TIMEOUT_S, f"{ledger_topic}[{partition}]")
        return out
    finally:
        consumer.close()


class KafkaSide:
    def __init__(self, settings: Settings, executor: Executor, loop: asyncio.AbstractEventLoop,
                 action_topics: Callable[[], list[str]], ledger_topic: str,
                 metrics: DeliveryMetrics) -> None:
        self._settings, self._executor, self._loop = settings, executor, loop
        # The channels' topics are configuration: followed, re-subscribed when they change.
        self._topics_in_force, self._topics = action_topics, action_topics()
        self._ledger_topic, self._metrics = ledger_topic, metrics
        self._topics_checked = time.monotonic()
        self._lock = threading.Lock()
        self._staged = _Staged()
        self._assigned: set[tuple[str, int]] = set()
        self._paused = False
        self._stop = threading.Event()
        self.failed: BaseException | None = None
        self.ever_assigned = threading.Event()
        self._consumer = Consumer({
            **settings.kafka_client_config(), "group.id": settings.delivery_group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "range"})
        self._producer = Producer({
            **settings.kafka_client_config(), "enable.idempotence": True,
            "transactional.id": f"{settings.delivery_group}-{uuid.uuid4().hex}",
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS, "linger.ms": 5})
        self._thread = threading.Thread(target=self._run, name="delivery-kafka", daemon=True)

    # --- called from the event loop ------------------------------------------------

    def stage(self, topic: str, partition: int, records: list[Record],
              offset: int | None) -> None:
        tp = (topic, partition)
        with self._lock:
            if records:
                self._staged.records.append((tp, records))
            if offset is not None:
                self._staged.offsets[tp] = max(offset, self._staged.offsets.get(tp, 0))

    def start(self) -> None:
        self._producer.init_transactions(30)
        self._subscribe()
        self._thread.start()

    def _subscribe(self) -> None:
        self._consumer.subscribe(self._topics, on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)

    def _follow_channels(self) -> None:
        """A publication that adds (or removes) a channel changes the topics to read:
        subscribe again (a rebalance of the delivery group) within TOPICS_CHECK_S."""
        if time.monotonic() - self._topics_checked < TOPICS_CHECK_S:
            return
        self._topics_checked = time.monotonic()
        topics = self._topics_in_force()
        if topics != self._topics:
            log.info("action topics changed with the channels in force: %s", topics)
            self._topics = topics
            self._subscribe()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    # --- the Kafka thread -------------------------------------------------------------

    def _run(self) -> None:
        interval = self._settings.delivery_commit_interval.total_seconds()
        last = time.monotonic()
        try:
            while not self._stop.is_set():
                batch = self._consumer.consume(500, 0.05)
                incoming = [_incoming(m) for m in batch if _usable(m)]
                if incoming:  # counted as pending until the loop has taken them
                    self._executor.handed_over(len(incoming))
                    self._loop.call_soon_threadsafe(self._executor.accept, incoming)
                if time.monotonic() - last >= interval:
                    self._commit()
                    last = time.monotonic()
                self._flow_control()
                self._follow_channels()
            self._commit()
        except BaseException as exc:  # fatal: the process stops; a restart resumes
            log.exception("delivery Kafka loop failed")
            self.failed = exc
        finally:
            self._consumer.close()

    def _commit(self) -> None:
        with self._lock:
            staged, self._staged = self._staged, _Staged()
        records = [r for tp, rs in staged.records if tp in self._assigned for r in rs]
        offsets = [TopicPartition(t, p, o) for (t, p), o in staged.offsets.items()
                   if (t, p) in self._assigned]
        if not records and not offsets:
            return
        try:
            self._transaction(records, offsets)
            self._metrics.commits.inc()
        except _Abortable as exc:
            self._abort(exc.error, staged)

    def _transaction(self, records: list[Record], offsets: list[TopicPartition]) -> None:
        self._retrying(self._producer.begin_transaction)
        produce = self._producer.produce
        for topic, key, value, partition, headers in records:
            part = -1 if partition is None else partition
            try:  # inline, no call of ours per record: three or more for every outcome
                produce(topic, value, key, headers=headers, partition=part)
            except BufferError:  # the local queue is full: the slow path waits
                self._produce(topic, key, value, part, headers)
        if offsets:
            metadata = self._consumer.consumer_group_metadata()
            self._retrying(lambda: self._producer.send_offsets_to_transaction(
                offsets, metadata, TXN_CALL_TIMEOUT_S))
        self._retrying(lambda: self._producer.commit_transaction(TXN_CALL_TIMEOUT_S))

    def _produce(self, topic: str, key: bytes | None, value: bytes, partition: int,
                 headers: Any) -> None:
        for _ in range(100):
            try:
                self._producer.produce(topic, value, key, headers=headers, partition=partition)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.1)
        raise BrokerError("the producer's queue stayed full for 10 s")

    def _retrying(self, call: Callable[[], Any]) -> None:
        """A transactional call, resumed while librdkafka says the error is retriable (a
        timed-out commit must be called again, or every later call conflicts with it);
        abortable errors abort the transaction; anything else ends the process."""
        for _ in range(TXN_RETRIES):
            try:
                call()
                return
            except KafkaException as exc:
                err = exc.args[0]
                if err.fatal():
                    raise BrokerError(f"delivery transaction failed for good: {err}") from exc
                if err.txn_requires_abort():
                    raise _Abortable(err) from exc
                if not err.retriable():
                    raise BrokerError(f"delivery transaction failed: {err}") from exc
                log.warning("delivery transaction call retried: %s", err)
        raise BrokerError(f"delivery transaction still failing after {TXN_RETRIES} tries")

    def _abort(self, err: Any, staged: _Staged) -> None:
        log.warning("delivery transaction aborted, retrying with the next commit: %s", err)
        self._metrics.commit_failures.inc()
        self._retrying(lambda: self._producer.abort_transaction(TXN_CALL_TIMEOUT_S))
        with self._lock:  # what it carried goes again, before anything staged since
            staged.records.extend(self._staged.records)
            for tp, off in self._staged.offsets.items():
                staged.offsets[tp] = max(off, staged.offsets.get(tp, 0))
            self._staged = staged

    def _flow_control(self) -> None:
        pending, limit = self._executor.pending(), self._settings.delivery_max_pending
        parts = [TopicPartition(t, p) for t, p in self._assigned]
        if not self._paused and pending >= limit and parts:
            self._consumer.pause(parts)
            self._paused = True
            log.warning("%d delivery jobs in memory: reading paused", pending)
        elif self._paused and pending < limit // 2:
            self._consumer.resume(parts)
            self._paused = False

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        by_number: dict[int, set[str]] = {}
        for tp in partitions:
            by_number.setdefault(tp.partition, set()).add(tp.topic)
        # Ledger partitions read side by side: one after another, large ledgers could
        # outlast the group's poll interval inside this callback.
        with ThreadPoolExecutor(max_workers=min(8, len(by_number) or 1)) as pool:
            read = dict(zip(sorted(by_number), pool.map(
                lambda n: read_ledger(self._settings, self._ledger_topic, n, by_number[n]),
                sorted(by_number)), strict=True))
        for number, ledgers in sorted(read.items()):
            for topic, ledger in ledgers.items():
                self._assigned.add((topic, number))
                self._loop.call_soon_threadsafe(self._executor.assigned, topic, number, ledger)
        log.info("delivery partitions assigned: %s", sorted(self._assigned))
        self.ever_assigned.set()
        if self._paused:  # a fresh assignment starts resumed
            self._paused = False

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit()  # what is known about them is recorded before they go
        self._forget(partitions)

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Lost (the group moved on without us): nothing of them may be committed now,
        their new owner may have written newer ledger entries already."""
        self._forget(partitions)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._assigned.discard((tp.topic, tp.partition))
            self._loop.call_soon_threadsafe(self._executor.revoked, tp.topic, tp.partition)


def _usable(msg: Message) -> bool:
    err = msg.error()
    if err is None:
        return True
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("action topic read error: %s", err)
    return False


def _incoming(msg: Message) -> Incoming:
    raw = msg.headers()  # None for most commands: they share one empty mapping
    headers = _NO_HEADERS if not raw else {
        k: v.encode() if isinstance(v, str) else bytes(v or b"")
        for k, v in (raw.items() if isinstance(raw, dict) else raw)}
    key, value = msg.key(), msg.value()
    return Incoming(str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0),
                    key.encode() if isinstance(key, str) else key,
                    value.encode() if isinstance(value, str) else value, headers)

