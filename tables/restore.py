"""A store's changelog read into its RocksDB database (a claim, a standby's catch-up):
tables/state.py."""

from __future__ import annotations

import logging
from typing import Any

import stamina
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from rocksdict import Rdict, WriteBatch

log = logging.getLogger(__name__)
RESTORE_BATCH_BYTES = 8 * 1024 * 1024  # a RocksDB write batch during a restore
PROGRESS_EVERY = 1_000_000


class RestoreWriter:
    """Changelog records into RocksDB in write batches bounded by bytes, not records: a
    profile store's values are kilobytes (50,000 of them held 150 MB per batch, and the
    heap kept it). The changelog offset is written with each batch."""

    def __init__(self, db: Rdict, label: str, offset_key: bytes) -> None:
        self._db, self._label, self._offset_key = db, label, offset_key
        self._batch, self._pending, self._last = WriteBatch(raw_mode=True), 0, -1
        self._read, self._logged = 0, 0

    def add(self, messages: list[Any]) -> None:
        for msg in messages:
            key, value = msg.key() or b"", msg.value()
            if value is None:
                self._batch.delete(key)
            else:
                self._batch.put(key, value)
            self._last = msg.offset() or 0
            self._pending += len(key) + len(value or b"")
        self._read += len(messages)
        if self._pending >= RESTORE_BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        self._batch.put(self._offset_key, str(self._last).encode())
        self._db.write(self._batch)
        self._batch, self._pending = WriteBatch(raw_mode=True), 0
        if self._read - self._logged >= PROGRESS_EVERY:
            self._logged = self._read
            log.info("state %s restore: %d records read", self._label, self._read)


def retriable(exc: Exception) -> bool:
    """A broker error that passes by itself: a changelog created a moment ago has no
    leader known to this client yet (NOT_LEADER_FOR_PARTITION, _UNKNOWN_PARTITION)."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return isinstance(error, KafkaError) and (error.retriable() or error.code() in (
        KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError._UNKNOWN_PARTITION,
        KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.LEADER_NOT_AVAILABLE))


@stamina.retry(on=retriable, attempts=20, timeout=60.0)
def watermarks(consumer: Consumer, tp: TopicPartition) -> tuple[int, int]:
    low, high = consumer.get_watermark_offsets(tp, timeout=30)
    return int(low), int(high)
