"""The memory a worker's stores may use: one budget for all of them.

A worker holds up to 1 + ACTIVATION_PROFILE_PARTITIONS RocksDB instances and, during a
takeover, restores them together. With RocksDB's and glibc's defaults a worker that
restored 1,000,000 profiles peaked at 1.7 GB; with this budget, 426 MB
(``make bench-rebuild``, README "Rebuild").
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from rocksdict import BlockBasedOptions, Cache, Options, WriteBufferManager, WriteOptions

from streams.settings import Settings

M_ARENA_MAX = -8  # glibc's mallopt parameter


# One memory budget for all of a worker's stores (1 + ACTIVATION_PROFILE_PARTITIONS
# RocksDB instances): with RocksDB's defaults (two 64 MB memtables, an 8 MB block
# cache, each per instance) a worker restoring them all at once held 1.4 GB.
MEMTABLE_BYTES = 16 * 1024 * 1024
MEMTABLES_TOTAL_BYTES = 64 * 1024 * 1024
BLOCK_CACHE_BYTES = 32 * 1024 * 1024
FILTER_BITS_PER_KEY = 10  # about 1% false positives, 1.25 bytes per key
MEMTABLE_FILTER_RATIO = 0.02  # of a memtable's size for its filter
_shared: list[tuple[Cache, WriteBufferManager]] = []


def store_options() -> Options:
    """RocksDB options for a store: its memtables and block cache in the shared budget."""
    if not _shared:
        _shared.append((Cache(BLOCK_CACHE_BYTES),
                        WriteBufferManager(MEMTABLES_TOTAL_BYTES, False)))
    cache, memtables = _shared[0]
    options = Options(raw_mode=True)
    options.set_write_buffer_size(MEMTABLE_BYTES)
    options.set_max_write_buffer_number(2)
    options.set_write_buffer_manager(memtables)
    # Most reads the cache (tables/cache.py) cannot answer look for keys that do not
    # exist (a new event's dedup marker, a new customer's identifiers): filters answer
    # those without searching the memtables' and files' keys.
    options.set_memtable_prefix_bloom_ratio(MEMTABLE_FILTER_RATIO)
    options.set_memtable_whole_key_filtering(True)
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_bloom_filter(FILTER_BITS_PER_KEY, False)
    options.set_block_based_table_factory(table)
    return options


def write_options() -> WriteOptions:
    """Every write of a store skips RocksDB's write-ahead log (tables/state.py: each write
    batch holds a committed prefix of the changelog and its offset, so whatever a crash
    loses the next claim reads again). All writes alike: with some logged and others
    not, a recovery could replay a later logged write without the earlier unlogged ones."""
    options = WriteOptions()
    options.disable_wal = True  # type: ignore[method-assign,assignment]  # a bool: stubs err
    return options


_restore_slots: list[threading.Semaphore] = []
_LIBC: list[Any] = []


def _libc() -> Any:
    if not _LIBC:
        try:
            _LIBC.append(ctypes.CDLL("libc.so.6"))
        except OSError:  # not glibc: nothing to tune
            _LIBC.append(None)
    return _LIBC[0]


def limit_heap_arenas() -> None:
    """Two malloc arenas, as ``MALLOC_ARENA_MAX=2`` would: glibc gives each thread its
    own (up to eight per core), and the restore threads, librdkafka's and RocksDB's
    each kept theirs full after a restore. Called at start, before those threads."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, 2)


def give_back_heap() -> None:
    """Return the heap a restore freed to the system (glibc keeps it otherwise)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def restoring(settings: Settings) -> threading.Semaphore:
    """How many stores of a worker read their changelog at once (a takeover claims them
    all together): each restore holds a consumer's prefetch and a write batch. One at a
    time took 136 s for 1M profiles, five at once 56 s (the fetches overlap) but more
    memory; two is the default."""
    if not _restore_slots:
        _restore_slots.append(threading.Semaphore(settings.worker_restore_concurrency))
    return _restore_slots[0]
