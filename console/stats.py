"""Counts over time, from the topics that carry the platform's outcomes (pure; the
console's readers feed it, the pages read it):

- audience sizes: ``activation.audience_changes`` (entered +1, exited -1), per hour, as
  a running total from the first change still on the topic. An audience older than
  the topic's retention (7 days) shows its change since then, and the page says from
  when it counts (``since``);
- journey activity: the action commands on ``actions.*`` (each is an action a journey
  step sent), per journey and step, per hour;
- delivery: ``delivery.outcomes`` per destination and status (delivered, retrying,
  failed, dead_lettered, disabled), per hour, with the last failure.

Records are counted once by their id (change_id, action_id, outcome_id: a re-driven
command carries its action id again), in a bounded memory of ids.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

HOUR = timedelta(hours=1)
SEEN_IDS = 500_000  # about 60 MB at most; beyond it the oldest ids are forgotten
STATUSES = ("delivered", "retrying", "failed", "dead_lettered", "disabled")


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def hours(end: datetime, count: int) -> list[datetime]:
    """The ``count`` hour buckets up to and including ``end``'s, oldest first."""
    last = hour_of(end)
    return [last - HOUR * i for i in range(count - 1, -1, -1)]


@dataclass
class Tally:
    """Counts by bucket for one series of labels."""

    by_hour: Counter[datetime] = field(default_factory=Counter)

    def add(self, at: datetime, n: int = 1) -> None:
        self.by_hour[hour_of(at)] += n

    def points(self, buckets: list[datetime]) -> list[int]:
        return [self.by_hour.get(b, 0) for b in buckets]

    def total(self) -> int:
        return sum(self.by_hour.values())


@dataclass
class AudienceTally:
    entered: Tally = field(default_factory=Tally)
    exited: Tally = field(default_factory=Tally)
    since: datetime | None = None

    def size_points(self, buckets: list[datetime]) -> list[int]:
        """The running size at the end of each bucket."""
        deltas = Counter(self.entered.by_hour)
        deltas.subtract(self.exited.by_hour)
        before = sum(n for b, n in deltas.items() if b < buckets[0]) if buckets else 0
        out, size = [], before
        for b in buckets:
            size += deltas.get(b, 0)
            out.append(size)
        return out

    def size(self) -> int:
        return self.entered.total() - self.exited.total()


@dataclass
class DestinationTally:
    statuses: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    last_at: datetime | None = None
    last_failure: str = ""
    last_failure_at: datetime | None = None

    def count(self, status: str) -> int:
        tally = self.statuses.get(status)
        return tally.total() if tally else 0


class Stats:
    """The console's counters; every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.audiences: dict[str, AudienceTally] = defaultdict(AudienceTally)
        self.steps: dict[tuple[str, str], Tally] = defaultdict(Tally)
        self.destinations: dict[str, DestinationTally] = defaultdict(DestinationTally)

    def _first(self, ident: str) -> bool:
        if ident in self._seen:
            return False
        self._seen[ident] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        return True

    def change(self, record: dict[str, Any]) -> None:
        """An ``AudienceMembershipChanged``."""
        with self._lock:
            if not self._first("c:" + record["change_id"]):
                return
            tally = self.audiences[record["audience_id"]]
            at: datetime = record["changed_at"]
            (tally.entered if record["change"] == "entered" else tally.exited).add(at)
            tally.since = at if tally.since is None else min(tally.since, at)

    def command(self, record: dict[str, Any]) -> None:
        """An ``ActionCommand`` (only journey actions are counted per step)."""
        if not record.get("journey_id"):
            return
        with self._lock:
            if self._first("a:" + record["action_id"]):
                self.steps[(record["journey_id"], record.get("step_id") or "")].add(
                    record["created_at"])

    def outcome(self, record: dict[str, Any]) -> None:
        """A ``DeliveryOutcome``."""
        with self._lock:
            if not self._first("o:" + record["outcome_id"]):
                return
            dest = self.destinations[record["destination"]]
            at: datetime = record["occurred_at"]
            dest.statuses[record["status"]].add(at)
            dest.last_at = at if dest.last_at is None else max(dest.last_at, at)
            if record["status"] != "delivered":
                answered = (f"HTTP {record['http_status']}" if record.get("http_status")
                            else record.get("error") or "not sent")
                dest.last_failure = f"{record['status']}: {answered}"
                dest.last_failure_at = at

    def snapshot(self) -> Stats:
        """A copy the pages read without holding the lock while rendering."""
        copy = Stats()
        with self._lock:
            for aid, a in self.audiences.items():
                copy.audiences[aid] = AudienceTally(Tally(Counter(a.entered.by_hour)),
                                                    Tally(Counter(a.exited.by_hour)), a.since)
            for key, t in self.steps.items():
                copy.steps[key] = Tally(Counter(t.by_hour))
            for did, d in self.destinations.items():
                statuses: dict[str, Tally] = defaultdict(Tally)
                statuses.update({s: Tally(Counter(t.by_hour)) for s, t in d.statuses.items()})
                copy.destinations[did] = DestinationTally(statuses, d.last_at, d.last_failure,
                                                          d.last_failure_at)
        return copy
