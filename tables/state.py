"""The stages' state: a local RocksDB (rocksdict) per owned partition, with a Kafka
changelog; the writes of a few consecutive input records of one partition form one
Kafka transaction (agents/owned.py chooses the records).

Two kinds (tables/state.py declares both): the identity stage's one store (dedup
markers and the identity graph, key layout in streams/core/identity_stage.py), and one
store per partition of the profile stage (profiles, merge history, activation: key
layout in streams/core/pipeline.py and streams/activation/runtime.py). Every write of
one record lands in its store's changelog partition, in order. Keys and values are
bytes; the pure code encodes them.

Why not a Faust table: each Faust table write is several Python layers and an asyncio
send, more than a stage's own work on an event; here a write is a RocksDB put and a
librdkafka ``produce``. And Faust's tables have no fencing: an expelled but living
worker could still write. Here:

- **Claim.** The worker that Faust assigns an input partition claims its store before
  its first record: it initialises transactions under the store's fixed transactional
  id (``<app id>-<name>-<partition>``), which aborts whatever a previous owner left open
  and fences that owner for good (its next commit fails: :class:`StateFencedError`),
  then reads the changelog partition (read_committed) up to its end into the local
  database. The Kafka clients and the changelog topic of a claim are made in
  tables/claim.py.
- **Exactness.** A record's writes are held in memory while its transaction is open
  (reads see them) and reach the changelog inside the transaction (each key's last
  value, logged at commit), along with the records the stage emits and the input
  offset it applied (:meth:`StateStore.mark_applied`), committed before Faust commits
  the input offset: a redelivered record is recognised and skipped. Only once the
  broker committed them do they reach RocksDB, in one atomic write batch with the
  changelog offset they bring it to. So the local database only ever holds a committed
  prefix of the changelog, and knows which: a failed or fenced transaction leaves it
  untouched, and a claim after a crash reads on from that offset (a database of an
  older version with its ``dirty`` mark is rebuilt). RocksDB's write-ahead log is
  therefore off (it cost more per write than the rest of a write): a crash loses at
  most the writes not yet flushed, whose changelog records the next claim reads again.
- **Cache.** A claimed store keeps its hottest committed values, and absent keys, in
  memory (tables/cache.py): most of an event's reads never reach RocksDB.

Changelogs (``<app id>-<name>-changelog``, compacted) use Faust's record format.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from rocksdict import Rdict, WriteBatch

from streams.errors import BrokerError, StateFencedError
from streams.follower import read_to_end
from streams.settings import Settings
from tables.cache import MISSING, ReadCache, overlay
from tables.claim import (
    TXN_TIMEOUT_S,
    ensure_changelog,
    fence,
    restore_consumer,
    transactional_producer,
)
from tables.memory import give_back_heap, restoring, store_options, write_options
from tables.restore import RestoreWriter, watermarks

log = logging.getLogger(__name__)
META_OFFSET = b"\x00meta:changelog-offset"  # below every key family (letters) in scans
META_DIRTY = b"\x00meta:dirty"
# Input offsets applied, on the changelog (unlike the two above): one key per record,
# not a high-water mark, because Faust can deliver a record again *before* an earlier
# one after a seek (agents/owned.py); trimmed to a floor below which all count as done.
APPLIED = b"\x00applied:"
APPLIED_FLOOR = b"\x00meta:applied-floor"
ABORT_TIMEOUT_S = 5.0  # also on shutdown: the next claim aborts whatever is left
# Per store (ACTIVATION_STATE_CACHE_BYTES): a few thousand active customers' profiles.
CACHE_BYTES = 16 * 1024 * 1024


def changelog_topic(settings: Settings, name: str) -> str:
    return f"{settings.app_id}-{name}-changelog"


def key_offset(key: bytes) -> str:
    return str(int(key[len(APPLIED):]))


class StateStore:
    """The :class:`streams.core.pipeline.Store` protocol, plus scans, claims, transactions.

    One store per partition of the stage that owns it: ``name`` names the changelog
    topic (``partitions`` partitions; this store's is ``partition``), the local
    database and the transactional id, so each partition is claimed and fenced alone.
    """

    def __init__(self, settings: Settings, name: str, partition: int = 0,
                 partitions: int = 1, cache_bytes: int = CACHE_BYTES) -> None:
        self._settings = settings
        self.name, self.partition, self.partitions = name, partition, partitions
        self.label = f"{name}[{partition}]"
        self.topic = changelog_topic(settings, name)
        self.path: Path = settings.data_dir / f"{name}-{partition}"
        self.transactional_id = f"{settings.app_id}-{name}-{partition}"
        self._handle: Rdict | None = None  # opened on first use, not at import
        self._opening = threading.Lock()
        self._producer: Any = None
        self._in_txn = False
        # This record's writes, logged at commit (:meth:`_log_changes`) and then written
        # to RocksDB (:meth:`_settle`); None: a delete.
        self._changes: dict[bytes, bytes | None] = {}
        # Used while claimed only: then nothing but this store's own commits writes the
        # database (a claim or catch-up runs unclaimed, and clears it).
        self._cache = ReadCache(cache_bytes)
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
                handle = Rdict(str(self.path), store_options())
                handle.set_write_options(write_options())
                self._handle = handle
            return self._handle

    # --- reads and writes ----------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The open transaction's write of ``key``, else its committed value."""
        changes = self._changes
        if key in changes:
            return changes[key]
        if not self.claimed:  # a standby's copy (the API): no cache to keep
            value: bytes | None = self._db.get(key)  # raw mode: bytes
            return value
        cached = self._cache.find(key)
        if cached is not MISSING:
            return cached
        value = self._db.get(key)
        self._cache.put(key, value)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if not self._in_txn:
            self._require_txn()
        self._changes[key] = value

    def __delitem__(self, key: bytes) -> None:
        self._require_txn()
        self._changes[key] = None

    def scan(self, from_key: bytes, limit: int, prefix: bytes | None = None
             ) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` pairs in key order from ``from_key`` while keys start with
        ``prefix`` (by default ``from_key``: a scan never wanders into, and copies,
        other key families). The ``Store`` protocol of streams/core/store.py."""
        prefix = from_key if prefix is None else prefix
        changes = self._changes
        # The open transaction's writes in range: its deletes may drop stored pairs.
        extra = sum(1 for key in changes if key >= from_key and key.startswith(prefix))
        out: list[tuple[bytes, bytes]] = []
        items: Any = self._db.items(from_key=from_key)  # raw mode: bytes, whatever stubs say
        complete = True
        for key, value in items:
            if not key.startswith(prefix):
                break
            if len(out) >= limit + extra:
                complete = False
                break
            out.append((key, value))
        return overlay(out, complete, changes, from_key, prefix, limit) if extra else out

    def produce(self, topic: str, key: bytes | None, value: bytes, partition: int = -1,
                headers: dict[str, bytes] | None = None) -> None:
        """Send a record within the current transaction (emitted actions, forwards);
        ``partition`` -1: the producer's partitioner picks it from the key."""
        self._require_txn()
        # No delivery callback: a failed send fails the transaction's commit.
        self._wrap(self._producer.produce, topic, key=key, value=value, partition=partition,
                   headers=headers)

    def is_applied(self, offset: int) -> bool:
        """Whether the input record at ``offset`` committed its effects here already (a
        redelivery, to be skipped whole)."""
        floor = self.get(APPLIED_FLOOR)
        if floor is not None and offset <= int(floor):
            return True
        return self.get(APPLIED + b"%020d" % offset) is not None

    def mark_applied(self, offset: int) -> None:
        """Within a record's transaction (so on the changelog too: a rebuild knows it)."""
        self[APPLIED + b"%020d" % offset] = b""

    def trim_applied(self, below: int, limit: int = 10_000) -> int:
        """Forget applied offsets below ``below`` (within a transaction), raising the floor
        instead: they are long committed in the input's consumer group too."""
        old = [key for key, _ in self.scan(APPLIED, limit, APPLIED)
               if int(key[len(APPLIED):]) < below]
        for key in old:
            del self[key]
        if old:
            self[APPLIED_FLOOR] = key_offset(old[-1]).encode()
        return len(old)

    def _log_changes(self) -> None:
        """The record's writes onto the changelog, at commit: the last value of each key
        once (a profile written by several events of one batch is logged once; the
        changelog is compacted, and no other key's order matters within one
        transaction), and one delivery report, for the last, whose offset is the
        highest (a Python callback per record cost more than the write itself)."""
        changes = self._changes  # kept for :meth:`_settle`
        if changes:
            *rest, (last_key, last_value) = changes.items()
            self._wrap(self._produce_all, rest)
            self._wrap(self._producer.produce, self.topic, key=last_key, value=last_value,
                       partition=self.partition, on_delivery=self._delivered)

    def _produce_all(self, changes: list[tuple[bytes, bytes | None]]) -> None:
        """One produce call per change, in one loop (about two per event)."""
        produce, topic, partition = self._producer.produce, self.topic, self.partition
        for key, value in changes:
            produce(topic, value, key, partition)

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
        self._wrap(self._producer.begin_transaction)
        self._in_txn, self._last_offset, self._changes = True, -1, {}

    def commit(self) -> None:
        """Commit the record's writes and emissions (blocks until the broker confirmed),
        then write them to the local database."""
        # Held here: a shutdown may abandon the transaction on the event loop while this
        # thread is still committing it, and what committed must reach the database
        # whole with its offset, or not at all.
        changes = self._changes
        self._log_changes()
        self._wrap(self._producer.commit_transaction, TXN_TIMEOUT_S)
        self._settle(changes)

    def _settle(self, changes: dict[bytes, bytes | None]) -> None:
        """The committed writes into RocksDB, atomically with the changelog offset they
        reach, then into the cache, and only then out of the pending writes: a read
        meanwhile (the API, on the event loop, while this runs in a thread) finds each
        key in one of them."""
        batch = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if self._last_offset >= 0:
            batch.put(META_OFFSET, str(self._last_offset).encode())
        self._db.write(batch)
        self._cache.update(changes.items())
        if self._changes is changes:  # not abandoned meanwhile
            self._in_txn, self._changes = False, {}

    def abandon(self) -> None:
        """After a failed record: its writes are dropped (the database never had them),
        and the next record claims again (a new producer; reading what the changelog
        has beyond the database, in case the commit did succeed)."""
        was_open, self._in_txn, self.claimed = self._in_txn, False, False
        self._changes = {}
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
                    f"another worker claimed state {self.label}; this one stops writing "
                    f"and claims again when assigned: {err}") from exc
            raise BrokerError(f"state {self.label}: transaction failed: {exc}") from exc

    # --- claiming --------------------------------------------------------------------------

    def claim(self) -> int:
        """Fence earlier owners, then catch up with the changelog (run in a thread).
        Returns the number of changelog records read."""
        started = time.monotonic()
        ensure_changelog(self._settings, self.topic, self.partitions)
        # A previous producer (fenced, or of an abandoned claim) has nothing worth
        # flushing: its writes are committed or never will be.
        self._producer = transactional_producer(self._settings, self.transactional_id)
        fence(self._producer, self.label)
        if self._db.get(META_DIRTY) is not None:  # written by versions before write-back
            log.warning("state %s has unconfirmed writes (a crash or a fencing): "
                        "rebuilding it from %s", self.label, self.topic)
            self._wipe()
        read = self._restore()
        self._cache.clear()  # before it is used again: what it held may be stale now
        self.claimed = True
        log.info("state %s claimed: %d changelog records read in %.1f s", self.label, read,
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
        with restoring(self._settings):
            read = self._restore_now()
        if read:  # a standby's catch-up that found nothing new has nothing to give back
            give_back_heap()
        return read

    def _restore_now(self) -> int:
        consumer = restore_consumer(self._settings, self.name)
        try:
            start = self._start_offset(consumer)
            consumer.assign([TopicPartition(self.topic, self.partition, start)])
            return self._read_to_end(consumer)
        finally:
            consumer.close()

    def _start_offset(self, consumer: Consumer) -> int:
        stored = self._db.get(META_OFFSET)
        start = int(stored) + 1 if stored is not None else 0
        low, high = watermarks(consumer, TopicPartition(self.topic, self.partition))
        if start > high or (start < low and start > 0):
            log.warning("local state %s does not match %s (offset %d, log %d..%d): "
                        "rebuilding it", self.label, self.topic, start, low, high)
            self._wipe()
            return low
        return max(start, low)

    def _read_to_end(self, consumer: Consumer) -> int:
        writer = RestoreWriter(self._db, self.label, META_OFFSET)
        read = read_to_end(consumer, writer.add, None, self.topic)
        writer.flush()
        return read

    def close(self) -> None:
        """Closes the database; an open transaction is left to be aborted by the next
        claim (as after a crash)."""
        with self._opening:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def declare_stores(settings: Settings) -> tuple[list[StateStore], list[StateStore]]:
    """A worker's stores (opened on first use, claimed by the stage that owns their
    partition): the identity stage's, one per slot (``identity`` when there is one,
    ``ident`` per slot of the partitioned layout: another changelog, since its
    partition count differs), and one per partition of the profile stage."""
    slots, cache = settings.identity_partitions, settings.state_cache_bytes
    identity = [StateStore(settings, "identity", cache_bytes=cache)] if slots == 1 else [
        StateStore(settings, "ident", p, slots, cache) for p in range(slots)]
    return (identity, [StateStore(settings, "profiles", p, settings.profile_partitions, cache)
                       for p in range(settings.profile_partitions)])
