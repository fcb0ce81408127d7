"""The erased identifiers that are suppressed (``ops.suppressions``, written by the
identity stage's erasures: streams/core/erasure.py), followed by every screening stage
so a later event for an erased customer is dropped before it costs anything. The
identity stage's own markers (``x:``) remain the authority: an event screened before
the suppression arrived here is dropped there."""

from __future__ import annotations

import threading

from streams.core.identity import identifier_keys
from streams.follower import Follower
from streams.records import Identifiers
from streams.settings import Settings
from streams.topics import SUPPRESSIONS


class Suppressions:
    def __init__(self, settings: Settings) -> None:
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        self._follower = Follower(settings, settings.topic(SUPPRESSIONS), self._apply,
                                  "suppressions")

    def start(self) -> None:
        self._follower.start()

    def stop(self) -> None:
        self._follower.stop()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        with self._lock:
            (self._keys.discard if value is None else self._keys.add)(key.decode())

    def hits(self, identifiers: Identifiers) -> bool:
        if not self._keys:  # the usual case: nothing erased, nothing to compute
            return False
        with self._lock:
            return any(k in self._keys for k in identifier_keys(identifiers))
