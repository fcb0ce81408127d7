"""Per-key rate limiting (token bucket) and the idempotency answer cache. Pure, clock injected.

Both are per gateway process: with N gateways behind a balancer a key's
effective limit is up to N times the configured one, and the idempotency cache
only catches resends that reach the same instance. That is acceptable because
durable deduplication by ``event_id`` happens downstream in the stream workers;
the cache only spares the sender a second write and returns the same answer.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingest.errors import RateLimited

Clock = Callable[[], float]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per key: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, cost: int = 1) -> None:
        """Spend ``cost`` tokens or raise :class:`RateLimited` with the wait until it fits."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        # A batch larger than the burst could never pass: charge it the whole bucket.
        need = min(float(cost), self.burst)
        if bucket.tokens >= need:
            bucket.tokens -= need
            return
        raise RateLimited(max((need - bucket.tokens) / self.rate, 0.001))


class AnswerCache:
    """Answers given to idempotency keys, kept ``ttl`` seconds, at most ``max_entries``."""

    def __init__(self, ttl: float, max_entries: int = 200_000, clock: Clock = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> Any | None:
        self._expire()
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def put(self, key: str, answer: Any) -> None:
        if key in self._entries:  # a new key is appended at the end already
            self._entries.move_to_end(key)
        self._entries[key] = (self._clock() + self.ttl, answer)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self) -> None:
        now = self._clock()
        # Every entry has the same ttl, so insertion order is expiry order.
        while self._entries:
            key, (expires, _) = next(iter(self._entries.items()))
            if expires > now:
                break
            del self._entries[key]
