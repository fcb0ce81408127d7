"""What a claimed store keeps in memory besides RocksDB: its committed values most
recently read or written (:class:`ReadCache`), and the pending writes of the open
transaction overlaid on a scan (:func:`overlay`).

Why a cache: a RocksDB point read through rocksdict costs 4-8 µs (a miss without a
filter more), and an event reads its store about seven times (its dedup marker, each
identifier, each redirect, its profile): more than the stages' own work on it. The
same keys come back (a customer's identifiers, redirects, profile), so most reads are
answered here in well under a microsecond. The cache holds committed values only
(tables/state.py fills it from the database and, at commit, with the transaction's
writes), and absences too (``None``: most redirect lookups find none).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

# Bytes counted per entry besides key and value (two dict slots, object headers).
ENTRY_OVERHEAD = 120


class _Missing(enum.Enum):
    MISSING = 0


MISSING: Final = _Missing.MISSING  # not cached (unlike None: cached as absent)


class ReadCache:
    """Committed values by key, bounded by an approximate byte budget: two
    generations, the young one filled until half the budget, then it becomes the old
    one (the previous old one goes); a hit in the old one moves to the young one. A
    cheap approximation of least-recently-used, without per-hit bookkeeping."""

    def __init__(self, budget_bytes: int) -> None:
        self._half = max(0, budget_bytes // 2)
        self._young: dict[bytes, bytes | None] = {}
        self._old: dict[bytes, bytes | None] = {}
        self._size = 0

    def find(self, key: bytes) -> bytes | None | _Missing:
        """The cached value (``None``: the key is absent), or :data:`MISSING`. One
        lookup per generation, no check-then-read: a commit in another thread may
        turn the generations over meanwhile."""
        value = self._young.get(key, MISSING)
        if value is MISSING:
            value = self._old.get(key, MISSING)
            if value is not MISSING:
                self.put(key, value)
        return value

    def put(self, key: bytes, value: bytes | None) -> None:
        self._young[key] = value
        self._size += len(key) + ENTRY_OVERHEAD + (0 if value is None else len(value))
        if self._size > self._half:
            self._old, self._young, self._size = self._young, {}, 0

    def update(self, changes: Iterable[tuple[bytes, bytes | None]]) -> None:
        for key, value in changes:
            self.put(key, value)

    def clear(self) -> None:
        self._young, self._old, self._size = {}, {}, 0

    def __len__(self) -> int:
        return len(self._young) + len(self._old)


def overlay(stored: list[tuple[bytes, bytes]], complete: bool,
            pending: dict[bytes, bytes | None], from_key: bytes, prefix: bytes, limit: int
            ) -> list[tuple[bytes, bytes]]:
    """A scan's answer with the open transaction's writes applied. ``stored`` is what
    the database gave for the same range: all of it (``complete``), or at least
    ``limit`` plus as many pairs as ``pending`` writes in range, so that the deletes
    among them still leave ``limit``; then a pending write past its last key is left
    out (keys the database was not asked for may lie before it). ``None``: a delete."""
    last = None if complete or not stored else stored[-1][0]
    merged = dict(stored)
    for key, value in pending.items():
        if key < from_key or not key.startswith(prefix) or (last is not None and key > last):
            continue
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return sorted(merged.items())[:limit]
