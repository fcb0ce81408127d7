"""The profile stage's state: a local RocksDB (rocksdict) with a Kafka changelog, whose
writes for one input record form one Kafka transaction.

One store on purpose (key layout: streams/core/pipeline.py and
streams/activation/runtime.py): every write of one event lands in one changelog
partition, in order. Keys and values are bytes; the pure code encodes them.

Why not a Faust table: each Faust table write is several Python layers and an asyncio
send, more than the profile stage's own work on an event; here a write is a RocksDB put
and a librdkafka ``produce``. And Faust's tables have no fencing: an expelled but living
worker could still write. Here:

- **Claim.** The worker that Faust assigns the profile topic's partition claims the store
  before its first record: it initialises transactions under the fixed transactional id
  ``<app id>-profile-state``, which aborts whatever a previous owner left open and fences
  that owner for good (its next commit fails: :class:`StateFencedError`), then reads the
  changelog (read_committed) up to its end into the local database.
- **Exactness.** Writes reach RocksDB at once (reads see them) and the changelog inside
  the record's transaction, along with the records the stage emits, committed before
  Faust commits the input offset. A ``dirty`` mark is kept in the database while a
  transaction is open: a claim that finds it (after a crash, or a fencing mid-record)
  rebuilds the database from the changelog, so the local state is always exactly the
  committed one, and the record is then processed again.

The changelog keeps Faust's name (``<app id>-profile-state-changelog``, compacted, one
partition) and record format, so state written by older workers is read as is.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from rocksdict import Options, Rdict, WriteBatch

from streams.errors import BrokerError, StateFencedError
from streams.settings import Settings
from streams.topics import PROFILE_CORE_MAX_BYTES, TopicSpec, admin_client, ensure_topics

log = logging.getLogger(__name__)
META_OFFSET = b"\x00meta:changelog-offset"  # below every key family (letters) in scans
META_DIRTY = b"\x00meta:dirty"
RESTORE_CHUNK = 50_000
PROGRESS_EVERY = 1_000_000
TXN_TIMEOUT_S = 60.0
ABORT_TIMEOUT_S = 5.0  # also on shutdown: the next claim aborts whatever is left


def changelog_topic(settings: Settings) -> str:
    return f"{settings.app_id}-profile-state-changelog"


class StateStore:
    """The :class:`streams.core.pipeline.Store` protocol, plus scans, claims, transactions."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.topic = changelog_topic(settings)
        self.path: Path = settings.data_dir / "profile-state"
        self._handle: Rdict | None = None  # opened on first use, not at import
        self._opening = threading.Lock()
        self._producer: Any = None
        self._in_txn = False
        self._last_offset = -1
        self.claimed = False

    @property
    def _db(self) -> Rdict:
        handle = self._handle
        if handle is not None:
            return handle
        with self._opening:  # the API's reads and a claim's thread may race to open it
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = Rdict(str(self.path), Options(raw_mode=True))
            return self._handle

    # --- reads and writes ----------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)
        self._log(key, value)

    def __delitem__(self, key: bytes) -> None:
        self._db.delete(key)
        self._log(key, None)

    def scan(self, from_key: bytes, limit: int, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` pairs in key order from ``from_key`` while keys start with
        ``prefix`` (so a scan never wanders into, and copies, other key families)."""
        out: list[tuple[bytes, bytes]] = []
        items: Any = self._db.items(from_key=from_key)  # raw mode: bytes, whatever stubs say
        for key, value in items:
            if not key.startswith(prefix) or len(out) >= limit:
                break
            out.append((bytes(key), bytes(value)))
        return out

    def produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Send a record within the current transaction (emitted actions, changes)."""
        self._require_txn()
        self._wrap(self._producer.produce, topic, key=key, value=value,
                   on_delivery=self._delivered)

    def _log(self, key: bytes, value: bytes | None) -> None:
        self._require_txn()
        self._wrap(self._producer.produce, self.topic, key=key, value=value, partition=0,
                   on_delivery=self._delivered)

    def _require_txn(self) -> None:
        if not self._in_txn:
            raise RuntimeError("profile state written outside a record's transaction")

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None and msg.topic() == self.topic:
            self._last_offset = max(self._last_offset, msg.offset())

    # --- transactions --------------------------------------------------------------------

    def begin(self) -> None:
        if not self.claimed:
            raise RuntimeError("the profile state is not claimed")
        self._db.put(META_DIRTY, b"1")  # before any write of the record
        self._wrap(self._producer.begin_transaction)
        self._in_txn, self._last_offset = True, -1

    def commit(self) -> None:
        """Commit the record's writes and emissions (blocks until the broker confirmed)."""
        self._wrap(self._producer.commit_transaction, TXN_TIMEOUT_S)
        self._in_txn = False
        if self._last_offset >= 0:
            self._db.put(META_OFFSET, str(self._last_offset).encode())
        self._db.delete(META_DIRTY)

    def abandon(self) -> None:
        """After a failed record: the next record claims again (and rebuilds)."""
        was_open, self._in_txn, self.claimed = self._in_txn, False, False
        if not was_open or self._producer is None:
            return
        try:
            self._producer.abort_transaction(ABORT_TIMEOUT_S)
        except KafkaException as exc:  # fenced or fatal: the claim starts over anyway
            log.info("abort of the failed transaction: %s", exc)

    def _wrap(self, call: Any, *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except KafkaException as exc:
            err = exc.args[0]
            # Fatal for a transactional producer means fenced (or unusable): claim anew.
            if isinstance(err, KafkaError) and (err.code() == KafkaError._FENCED
                                                or err.fatal()):
                raise StateFencedError(
                    "another worker claimed the profile state; this one stops writing "
                    f"and claims again when assigned: {err}") from exc
            raise BrokerError(f"profile state transaction failed: {exc}") from exc

    # --- claiming --------------------------------------------------------------------------

    def claim(self) -> int:
        """Fence earlier owners, then catch up with the changelog (run in a thread).
        Returns the number of changelog records read."""
        started = time.monotonic()
        ensure_topics(admin_client(self._settings), [TopicSpec(
            self.topic, 1, None, "NONE",
            {"cleanup.policy": "compact", "max.message.bytes": str(PROFILE_CORE_MAX_BYTES)})],
            self._settings.kafka_replication_factor)
        # A previous producer (fenced, or of an abandoned claim) has nothing worth
        # flushing: its writes are committed or never will be.
        self._producer = Producer({
            **self._settings.kafka_client_config(), "log_level": 3,
            "transactional.id": f"{self._settings.app_id}-profile-state",
            "transaction.timeout.ms": int(TXN_TIMEOUT_S * 1000), "linger.ms": 5,
            "message.max.bytes": PROFILE_CORE_MAX_BYTES + 65_536})
        try:
            self._producer.init_transactions(TXN_TIMEOUT_S)
        except KafkaException as exc:
            raise BrokerError(f"cannot claim the profile state: {exc}") from exc
        if self._db.get(META_DIRTY) is not None:
            log.warning("profile state has unconfirmed writes (a crash or a fencing): "
                        "rebuilding it from %s", self.topic)
            self._wipe()
        read = self._restore()
        self.claimed = True
        log.info("profile state claimed: %d changelog records read in %.1f s", read,
                 time.monotonic() - started)
        return read

    def catch_up(self) -> int:
        """A standby's warm copy (run in a thread): read what the owner committed since
        the last read, so a takeover here reads little. Not on unconfirmed local state
        (the claim rebuilds that)."""
        if self._db.get(META_DIRTY) is not None:
            return 0
        return self._restore()

    def release(self) -> None:
        """The partition went elsewhere: claim again (catching up) if it comes back."""
        self.claimed = False

    def _wipe(self) -> None:
        with self._opening:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
            Rdict.destroy(str(self.path))

    def _restore(self) -> int:
        consumer = Consumer({
            **self._settings.kafka_client_config(), "log_level": 3,
            "group.id": f"{self._settings.app_id}-profile-state-restore",
            "enable.auto.commit": False, "isolation.level": "read_committed",
            "enable.partition.eof": True, "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": self._settings.worker_fetch_max_bytes})
        try:
            start = self._start_offset(consumer)
            consumer.assign([TopicPartition(self.topic, 0, start)])
            return self._read_to_end(consumer)
        finally:
            consumer.close()

    def _start_offset(self, consumer: Consumer) -> int:
        stored = self._db.get(META_OFFSET)
        start = int(stored) + 1 if stored is not None else 0
        low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=30)
        if start > high or (start < low and start > 0):
            log.warning("local profile state does not match %s (offset %d, log %d..%d): "
                        "rebuilding it", self.topic, start, low, high)
            self._wipe()
            return low
        return max(start, low)

    def _read_to_end(self, consumer: Consumer) -> int:
        read, pending, batch, last = 0, 0, WriteBatch(raw_mode=True), -1
        done = False
        while not done:
            for msg in consumer.consume(10_000, 1.0):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise BrokerError(f"reading {self.topic} failed: {err}")
                    done = True
                    continue
                key, value = msg.key() or b"", msg.value()
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
                last, read, pending = msg.offset() or 0, read + 1, pending + 1
            if pending and (done or pending >= RESTORE_CHUNK):
                batch.put(META_OFFSET, str(last).encode())
                self._db.write(batch)
                batch, pending = WriteBatch(raw_mode=True), 0
                if read // PROGRESS_EVERY != (read - RESTORE_CHUNK) // PROGRESS_EVERY:
                    log.info("profile state restore: %d records read", read)
        return read

    def close(self) -> None:
        """Closes the database; an open transaction is left to be aborted by the next
        claim (as after a crash)."""
        with self._opening:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def _declare() -> StateStore:
    from streams.app import settings

    return StateStore(settings)


# The one store of the worker (opened on first use, claimed by the profile agent).
state = _declare()
