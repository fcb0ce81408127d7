"""The profile stage's state: one RocksDB-backed table with a changelog.

One table on purpose (see streams/core/pipeline.py for the key layout): every write
of one event lands in the same changelog partition, in order, which is what makes
replay after a crash exact. Keys and values are bytes; the pure code encodes them.
"""

from __future__ import annotations

from typing import Any

from streams.app import app

# Partitions must equal those of the topic the profile agent reads (one, see the app).
state: Any = app.Table(
    "profile-state",
    default=None,
    key_type=bytes,  # bytes types select Faust's "raw" serializers, store and changelog
    value_type=bytes,
    partitions=1,
    help="Dedup markers, identity graph, profiles and merge history.",
)


class TableStore:
    """The :class:`streams.core.pipeline.Store` protocol over a Faust table.

    Reads go straight to the partition's rocksdict: Faust's own ``get`` looks a key up
    twice (contains, then get) through several layers, a fifth of the profile stage's
    time. That is safe because Faust writes to RocksDB at once (only the changelog send
    is deferred). Writes still go through the table, for the changelog.
    """

    def __init__(self, table: Any, partition: int = 0) -> None:
        self._table, self._partition = table, partition

    def get(self, key: bytes) -> bytes | None:
        try:
            db = self._table.data._db_for_partition(self._partition)
        except (KeyError, AttributeError):  # not a RocksDB store (tests), or not here
            value = self._table.get(key)
        else:
            value = db.get(key)
        return None if value is None else bytes(value)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._table[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self._table[key]


def scan(table: Any, partition: int, from_key: bytes, limit: int, prefix: bytes = b""
         ) -> list[tuple[bytes, bytes]]:
    """Up to ``limit`` (key, value) pairs of one partition's store, in key order, from
    ``from_key`` while keys start with ``prefix`` (so a scan never wanders into, and
    copies, the values of other key families).

    Reads the partition's rocksdict directly (Faust has no ordered range scan); an
    unopened partition (not assigned here) gives an empty list.
    """
    try:
        db = table.data._db_for_partition(partition)
    except (KeyError, AttributeError):
        return []
    out: list[tuple[bytes, bytes]] = []
    for key, value in db.items(from_key=from_key):
        if not key.startswith(prefix):
            break
        out.append((bytes(key), bytes(value)))
        if len(out) >= limit:
            break
    return out
