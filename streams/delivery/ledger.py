"""The executor's memory of every (action, destination): pure, per input partition.

Why a ledger: Kafka may hand a command over twice (a rebalance, an executor crash before
its offsets committed, a replay upstream), and a retry may wait hours. The ledger is a
compacted topic (``delivery.ledger``, one partition per action-topic partition) whose
records are written in the same Kafka transaction as the input offsets they settle, so
after any crash the executor that takes a partition over reads the ledger partition to
its end and knows exactly:

- which deliveries got their 2xx (``delivered``: never called again);
- which are waiting to be retried, when, and with what (``retrying``: the command's
  bytes are in the entry, so a retry survives a crash with no input record to re-read;
  the input offset is settled at once and a retry never blocks its partition);
- which gave up (``failed``, ``dead_lettered``, ``disabled``: only a re-drive, a
  command with the ``x-delivery-destination`` header, starts them again).

Keys are ``<action topic>|<destination>|<action id>``. Entries expire with the topic's
retention (``ACTIVATION_DELIVERY_DEDUP_WINDOW``): a command repeated later than that is
delivered again.
"""

from __future__ import annotations

import base64
import heapq
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson

Status = Literal["delivered", "retrying", "failed", "dead_lettered", "disabled"]
TERMINAL: frozenset[str] = frozenset({"failed", "dead_lettered", "disabled"})


def ledger_key(topic: str, destination: str, action_id: str) -> str:
    return f"{topic}|{destination}|{action_id}"


def split_key(key: str) -> tuple[str, str, str]:
    topic, destination, action_id = key.split("|", 2)
    return topic, destination, action_id


@dataclass(slots=True)
class Entry:
    status: Status
    attempts: int
    first_at: datetime
    at: datetime  # when this entry was written
    due: datetime | None = None  # retrying: when the next attempt is due
    key: bytes | None = None  # retrying: the command record, to attempt it again
    value: bytes | None = None

    def encode(self) -> bytes:
        doc: dict[str, Any] = {"s": self.status, "n": self.attempts, "first": self.first_at,
                               "at": self.at}
        if self.status == "retrying":
            doc["due"] = self.due
            doc["k"] = None if self.key is None else base64.b64encode(self.key).decode()
            doc["v"] = None if self.value is None else base64.b64encode(self.value).decode()
        return orjson.dumps(doc)

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        doc = orjson.loads(raw)

        def b64(name: str) -> bytes | None:
            v = doc.get(name)
            return None if v is None else base64.b64decode(v)

        due = doc.get("due")
        return cls(status=doc["s"], attempts=int(doc["n"]),
                   first_at=datetime.fromisoformat(doc["first"]),
                   at=datetime.fromisoformat(doc["at"]),
                   due=None if due is None else datetime.fromisoformat(due),
                   key=b64("k"), value=b64("v"))


@dataclass
class Ledger:
    """One input partition's entries, plus the deliveries in flight in this process."""

    entries: dict[str, Entry] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)

    def restore(self, key: str, raw: bytes | None) -> None:
        if raw is None:  # a tombstone
            self.entries.pop(key, None)
        else:
            self.entries[key] = Entry.decode(raw)

    def waiting(self) -> list[tuple[str, Entry]]:
        """Retries to schedule after a restore, in due order."""
        out = [(k, e) for k, e in self.entries.items() if e.status == "retrying"]
        return sorted(out, key=lambda item: (item[1].due or item[1].at, item[0]))

    def admit(self, key: str, redrive: bool = False) -> bool:
        """Should a command arriving now start a delivery? Not if one is under way,
        scheduled or done; a terminal one only when re-driven."""
        if key in self.in_flight:
            return False
        entry = self.entries.get(key)
        if entry is None:
            return True
        return redrive and entry.status in TERMINAL

    def prune(self, before: datetime) -> int:
        """Forget finished entries written before ``before`` (the dedup window's start:
        the ledger topic's retention forgets them too); returns how many."""
        old = [k for k, e in self.entries.items()
               if e.status != "retrying" and e.at < before and k not in self.in_flight]
        for key in old:
            del self.entries[key]
        return len(old)

    def start(self, key: str) -> None:
        self.in_flight.add(key)

    def record(self, key: str, entry: Entry) -> None:
        self.entries[key] = entry
        if entry.status != "retrying":
            self.in_flight.discard(key)


@dataclass
class Offsets:
    """Which input offsets of one partition still have deliveries without a recorded
    first outcome; the partition may commit up to the lowest of them. A heap with lazy
    deletion: asked after every outcome, with thousands open, ``min()`` over them was a
    tenth of the executor's time."""

    open: dict[int, int] = field(default_factory=dict)  # offset -> jobs not yet settled
    next_offset: int | None = None
    _heap: list[int] = field(default_factory=list)

    def add(self, offset: int, jobs: int) -> None:
        self.next_offset = max(self.next_offset or 0, offset + 1)
        if jobs:
            if offset not in self.open:
                heapq.heappush(self._heap, offset)
            self.open[offset] = self.open.get(offset, 0) + jobs

    def settle(self, offset: int) -> None:
        left = self.open.get(offset, 0) - 1
        if left > 0:
            self.open[offset] = left
        else:
            self.open.pop(offset, None)

    def committable(self) -> int | None:
        """The offset to commit (the next one to read after a restart)."""
        heap = self._heap
        while heap and heap[0] not in self.open:
            heapq.heappop(heap)
        return heap[0] if heap else self.next_offset
