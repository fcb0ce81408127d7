"""The console's own readers: assign-based (no consumer group, so the console never
takes partitions from the platform's processes and needs no committed offsets), each on
a daemon thread that reconnects after broker errors.

:class:`TopicTail` reads a set of topics from a starting point (the beginning, a time,
or the end less a backlog) and hands every record to a callback; ``loaded`` is set once
it reached the end as of its first connection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as TP

from streams.errors import BrokerError
from streams.follower import partitions_of, reader
from streams.settings import Settings

log = logging.getLogger(__name__)
POLL_S = 0.5
BATCH = 500
RETRY_S = 2.0
WATERMARK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Start:
    """Where a tail begins: ``since`` (a time), else ``backlog`` records before the end
    of each partition, else (both None) the beginning."""

    since: datetime | None = None
    backlog: int | None = None


def start_offsets(consumer: Consumer, topic: str, start: Start) -> list[TP]:
    parts = partitions_of(consumer, topic)
    if start.since is not None:
        ms = int(start.since.timestamp() * 1000)
        found = consumer.offsets_for_times([TP(topic, p, ms) for p in parts],
                                           timeout=WATERMARK_TIMEOUT_S)
        # -1: nothing that recent; start at the end (offsets_for_times says the end as -1)
        return [TP(topic, tp.partition, tp.offset if tp.offset >= 0 else _end(consumer, tp))
                for tp in found]
    if start.backlog is not None:
        out = []
        for p in parts:
            low, high = consumer.get_watermark_offsets(TP(topic, p), WATERMARK_TIMEOUT_S)
            out.append(TP(topic, p, max(low, high - start.backlog)))
        return out
    return [TP(topic, p, OFFSET_BEGINNING) for p in parts]


def _end(consumer: Consumer, tp: TP) -> int:
    return int(consumer.get_watermark_offsets(TP(tp.topic, tp.partition),
                                              WATERMARK_TIMEOUT_S)[1])


class TopicTail:
    """Reads ``topics`` from ``start`` and follows them, calling ``handle`` per record on
    its own thread (a failing record is logged and skipped, never the end of it)."""

    def __init__(self, settings: Settings, topics: list[str], start: Start,
                 handle: Callable[[Message], object], name: str) -> None:
        self._settings, self._topics, self._start = settings, topics, start
        self._handle, self._name = handle, name
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
        resume: dict[tuple[str, int], int] = {}
        while not self._stop.is_set():
            try:
                self._follow(resume)
            except (KafkaException, BrokerError) as exc:
                log.warning("%s: %s unavailable, retrying: %s", self._name, self._topics, exc)
                self._stop.wait(RETRY_S)
            except Exception:  # the console must keep following whatever went wrong
                log.exception("%s failed, retrying", self._name)
                self._stop.wait(RETRY_S)

    def _assignment(self, consumer: Consumer, resume: dict[tuple[str, int], int]) -> list[TP]:
        out = []
        for topic in self._topics:
            for tp in start_offsets(consumer, topic, self._start):
                out.append(TP(topic, tp.partition, resume.get((topic, tp.partition), tp.offset)))
        return out

    def _follow(self, resume: dict[tuple[str, int], int]) -> None:
        consumer = reader(self._settings, self._name)
        try:
            assignment = self._assignment(consumer, resume)
            consumer.assign(assignment)
            pending = {(tp.topic, tp.partition) for tp in assignment}
            while not self._stop.is_set():
                for msg in consumer.consume(BATCH, POLL_S):
                    pending = self._one(msg, pending, resume)
                if not pending:
                    self.loaded.set()
        finally:
            consumer.close()

    def _one(self, msg: Message, pending: set[tuple[str, int]],
             resume: dict[tuple[str, int], int]) -> set[tuple[str, int]]:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return pending - {(msg.topic() or "", msg.partition() or 0)}
            raise BrokerError(f"reading {msg.topic()} failed: {err}")
        resume[(msg.topic() or "", msg.partition() or 0)] = int(msg.offset() or 0) + 1
        try:
            self._handle(msg)
        except Exception:  # one bad record is shown as missing, not as a dead console
            log.exception("%s: could not handle %s[%s]@%s", self._name, msg.topic(),
                          msg.partition(), msg.offset())
        return pending
