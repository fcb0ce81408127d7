"""Reading a topic to its end, and following it after: written once, used by every reader
that keeps a topic's content (API keys, definitions, disabled destinations, the state
stores' changelogs, the delivery ledger, the CLIs).

The end is the consumer's end-of-partition event, never "the high watermark seen at the
start": a topic written in transactions ends with a commit marker, an offset no record
has, so a reader comparing offsets with the watermark waited forever, and a
read_committed reader stops at the last stable offset, below the watermark, while a
transaction is open.

- :func:`read_to_end` consumes assigned partitions until each reported its end, handing
  over batches of records (a store restore writes them in its own batches);
- :func:`read_topic` is the one-shot form: every record of a topic, as of now;
- :class:`Follower` reads to the end (``loaded`` is set), then tails, on a daemon thread,
  and reconnects after broker errors; a bad record is the callback's business, never
  the end of following.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as TP

from streams.errors import BrokerError
from streams.settings import Settings

log = logging.getLogger(__name__)
POLL_S = 0.5
BATCH = 2_000
RETRY_S = 2.0
Apply = Callable[[bytes | None, bytes | None], None]


def reader(settings: Settings, purpose: str, **extra: Any) -> Consumer:
    """A consumer for reading, never for a group: a fresh group id (no stored offsets),
    committed records only, and end-of-partition events."""
    return Consumer({**settings.kafka_client_config(), "log_level": 3,
                     "group.id": f"{settings.app_id}-{purpose}-{uuid.uuid4().hex}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "isolation.level": "read_committed", "enable.partition.eof": True,
                     **extra})


def partitions_of(consumer: Consumer, topic: str, timeout_s: float = 10.0) -> list[int]:
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
    except KafkaException as exc:
        raise BrokerError(f"cannot describe {topic}: {exc}") from exc
    if meta.error is not None:
        raise BrokerError(f"cannot describe {topic}: {meta.error}")
    return sorted(meta.partitions)


def read_to_end(consumer: Consumer, on_batch: Callable[[list[Message]], None],
                timeout_s: float | None = None, what: str = "topic") -> int:
    """Consume the consumer's assigned partitions until each reported its end; returns
    the number of records. ``timeout_s`` bounds the whole read (None: no bound)."""
    pending = {(tp.topic, tp.partition) for tp in consumer.assignment()}
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    read = 0
    while pending:
        if deadline is not None and time.monotonic() > deadline:
            raise BrokerError(f"timed out reading {what} to its end after {timeout_s} s")
        batch = []
        for msg in consumer.consume(BATCH, POLL_S):
            err = msg.error()
            if err is None:
                batch.append(msg)
            elif err.code() == KafkaError._PARTITION_EOF:
                pending.discard((msg.topic(), msg.partition()))
            else:
                raise BrokerError(f"reading {what} failed: {err}")
        if batch:
            on_batch(batch)
            read += len(batch)
    return read


def read_topic(settings: Settings, topic: str, timeout_s: float = 60.0,
               purpose: str = "reader") -> list[Message]:
    """Every committed record of ``topic`` (all partitions, each in order), as of now."""
    consumer = reader(settings, purpose)
    out: list[Message] = []
    try:
        consumer.assign([TP(topic, p, OFFSET_BEGINNING)
                         for p in partitions_of(consumer, topic)])
        read_to_end(consumer, out.extend, timeout_s, topic)
        return out
    except KafkaException as exc:
        raise BrokerError(f"cannot read {topic}: {exc}") from exc
    finally:
        consumer.close()


class Follower:
    """Reads partition 0 of ``topic`` from its start, then follows it (daemon thread),
    calling ``apply(key, value)`` for each record. ``loaded`` is set once the end as of
    the first connection was reached and ``on_loaded`` ran (on this thread), and
    ``on_idle`` after every poll from then on. ``prepare`` runs before each connection
    (creating the topic, say)."""

    def __init__(self, settings: Settings, topic: str, apply: Apply, name: str,
                 on_loaded: Callable[[], None] | None = None,
                 on_idle: Callable[[], None] | None = None,
                 prepare: Callable[[], None] | None = None) -> None:
        self._settings, self._topic, self._apply, self._name = settings, topic, apply, name
        self._on_loaded, self._on_idle, self._prepare = on_loaded, on_idle, prepare
        self.loaded = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except (KafkaException, BrokerError) as exc:
                log.warning("%s: %s unavailable, retrying: %s", self._name, self._topic, exc)
                self._stop.wait(RETRY_S)
            except Exception:  # following must go on whatever a callback did
                log.exception("%s failed, retrying", self._name)
                self._stop.wait(RETRY_S)

    def _follow(self) -> None:
        if self._prepare is not None:
            self._prepare()
        consumer = reader(self._settings, self._name)
        try:
            consumer.assign([TP(self._topic, 0, OFFSET_BEGINNING)])
            if not self.loaded.is_set():  # a reconnection re-applies; callers are idempotent
                read_to_end(consumer, self._hand_over, None, self._topic)
                if self._on_loaded is not None:  # before ``loaded``: waiters see its effects
                    self._on_loaded()
                self.loaded.set()
            while not self._stop.is_set():
                batch = [m for m in consumer.consume(BATCH, POLL_S) if m.error() is None]
                if batch:
                    self._hand_over(batch)
                if self._on_idle is not None:
                    self._on_idle()
        finally:
            consumer.close()

    def _hand_over(self, batch: list[Message]) -> None:
        for msg in batch:
            key, value = msg.key(), msg.value()
            self._apply(key.encode() if isinstance(key, str) else key,
                        value.encode() if isinstance(value, str) else value)
