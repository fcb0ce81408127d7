"""The one ``Store`` protocol every stage module is written against, and a dict one.

A worker's store is a RocksDB database per partition (tables/state.py: transactions,
changelogs); the sandbox's and the unit tests' is :class:`DictStore`. Both scan the
same way: from a key, in key order, while keys start with a prefix (by default the
key scanned from), so a scan never wanders into another key family.
"""

from __future__ import annotations

from typing import Protocol


class Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...

    def __delitem__(self, key: bytes) -> None: ...

    def scan(self, from_key: bytes, limit: int, prefix: bytes | None = None
             ) -> list[tuple[bytes, bytes]]: ...


class DictStore(dict[bytes, bytes]):
    """The Store protocol on a dict, with the ordered scan RocksDB gives the worker."""

    def scan(self, from_key: bytes, limit: int, prefix: bytes | None = None
             ) -> list[tuple[bytes, bytes]]:
        bound = from_key if prefix is None else prefix
        keys = sorted(k for k in self if k >= from_key and k.startswith(bound))
        return [(k, self[k]) for k in keys[:limit]]
