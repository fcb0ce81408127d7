"""A claimed store's memory (tables/cache.py, tables/state.py): the read cache, the
open transaction's writes seen by reads and scans, and RocksDB written only at commit.
No broker: the transaction's Kafka side is left out (a store marked claimed and in a
transaction by hand, as its claim and ``begin`` would)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import load_settings
from tables.cache import MISSING, ReadCache, overlay
from tables.state import META_OFFSET, StateStore


def test_the_cache_keeps_values_and_absences_within_its_budget() -> None:
    cache = ReadCache(budget_bytes=2 * (3 * 100 + 3 * 120))  # a generation: three entries
    cache.put(b"a", b"x" * 99)
    cache.put(b"b", None)
    assert cache.find(b"a") == b"x" * 99 and cache.find(b"b") is None
    assert cache.find(b"c") is MISSING
    for key in (b"c", b"d", b"e", b"f", b"g", b"h"):  # two turns of the generations
        cache.put(key, b"y" * 99)
    assert cache.find(b"a") is MISSING  # aged out
    assert cache.find(b"h") == b"y" * 99
    cache.clear()
    assert len(cache) == 0 and cache.find(b"h") is MISSING


def test_a_hit_in_the_old_generation_stays() -> None:
    cache = ReadCache(budget_bytes=2 * 2 * 121)  # a generation: two one-byte keys
    cache.put(b"a", b"")
    cache.put(b"b", b"")  # the young generation turns old
    assert cache.find(b"a") == b""  # found old, moved young
    cache.put(b"c", b"")  # turns again: "a" is in the old one now, not gone
    assert cache.find(b"a") == b""


def test_overlay_applies_pending_writes_within_what_was_read() -> None:
    stored = [(b"k1", b"1"), (b"k3", b"3"), (b"k5", b"5")]
    pending: dict[bytes, bytes | None] = {b"k2": b"2", b"k3": None, b"k9": b"9", b"j": b"x"}
    assert overlay(stored, True, pending, b"k", b"k", 10) == [
        (b"k1", b"1"), (b"k2", b"2"), (b"k5", b"5"), (b"k9", b"9")]
    # Read only up to k5 (more may follow): k9 is left out, keys before it may be missing.
    assert overlay(stored, False, pending, b"k", b"k", 10) == [
        (b"k1", b"1"), (b"k2", b"2"), (b"k5", b"5")]
    assert overlay(stored[1:], True, pending, b"k2", b"k", 2) == [
        (b"k2", b"2"), (b"k5", b"5")]


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    made = StateStore(load_settings(data_dir=tmp_path), "state", cache_bytes=1 << 20)
    made.claimed, made._in_txn = True, True  # what claim() and begin() set
    return made


def test_writes_are_seen_at_once_and_reach_rocksdb_only_when_committed(
        store: StateStore) -> None:
    store[b"a"] = b"1"
    store[b"b"] = b"2"
    assert store.get(b"a") == b"1"
    assert store.scan(b"a", 10, b"") == [(b"a", b"1"), (b"b", b"2")]
    assert store._db.get(b"a") is None  # not in the database before the commit
    store._last_offset = 41
    store._settle(store._changes)  # what commit() does once the broker confirmed
    assert (store._db.get(b"a"), store._db.get(META_OFFSET)) == (b"1", b"41")
    store._in_txn = True
    del store[b"a"]
    store[b"c"] = b"3"
    assert store.get(b"a") is None
    assert store.scan(b"a", 10, b"") == [(b"b", b"2"), (b"c", b"3")]
    assert store.scan(b"a", 1, b"") == [(b"b", b"2")]
    store.abandon()  # a failed transaction: the database keeps the committed state
    assert (store._db.get(b"a"), store._db.get(b"c")) == (b"1", None)
    store.claimed = True
    assert store.get(b"a") == b"1" and store.get(b"c") is None
    store.close()


def test_reads_are_cached_while_claimed_only(store: StateStore) -> None:
    assert store.get(b"k") is None  # an absence, cached
    store._db.put(b"k", b"behind the store's back")
    assert store.get(b"k") is None
    store.claimed = False  # a standby's reads (the API): the database itself
    assert store.get(b"k") == b"behind the store's back"
    store.close()


def test_a_commit_abandoned_meanwhile_still_reaches_the_database_whole(
        store: StateStore) -> None:
    """A shutdown abandons the transaction on the event loop while the commit thread
    still commits it: what it committed is written with its offset, all of it."""
    store[b"a"] = b"1"
    committing = store._changes
    store.abandon()  # on the loop, meanwhile
    store._last_offset = 7
    store._settle(committing)  # the thread, once the broker confirmed
    assert (store._db.get(b"a"), store._db.get(META_OFFSET)) == (b"1", b"7")
    assert store._changes == {} and not store._in_txn and not store.claimed
    store.close()
