"""What one input record caused, as a stage module says it (no Kafka in sight).

The wiring turns it into records: :class:`Resolved` events and :class:`Command`\\ s go
to the profile stage partition of their profile id, in the order given (an event
routed to a profile before its ``merge-out`` stays before it); a :class:`Broadcast`
to every profile partition; :class:`ToIdentity` back to the identity stage;
``records`` onto an ops topic (suppressions, erasures); ``emissions`` are encoded onto
the action and audience-change topics. All in the record's transaction; the counters
are counted once it committed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streams.activation.runtime import Emission
from streams.core.batch import BatchItem
from streams.core.deadletter import PROCESSING_ERROR, SourceRecord, dead_letter
from streams.records import Envelope


@dataclass(frozen=True, slots=True)
class Resolved:
    """An event, resolved to its canonical profile (``item.profile``), for the profile
    stage partition that owns that profile."""

    item: BatchItem

    @property
    def profile_id(self) -> str:
        return self.item.profile


@dataclass(frozen=True, slots=True)
class Command:
    """A command (streams/core/routing.py) for the partition that owns ``profile_id``."""

    name: bytes
    profile_id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    """A command for every profile stage partition (a tick)."""

    name: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class ToIdentity:
    """A record for a partition of the identity stage's topic: a relink after an undo,
    or a message of the partitioned identity protocol between slots."""

    name: bytes
    key: str
    body: bytes
    partition: int = 0


Send = Resolved | Command | Broadcast


@dataclass
class Outputs:
    stage: str
    emissions: list[Emission] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    identity: list[ToIdentity] = field(default_factory=list)
    records: list[tuple[str, bytes, bytes]] = field(default_factory=list)  # ops topic, k, v
    letters: list[tuple[bytes | None, dict[str, Any]]] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)  # events, by outcome
    counts: Counter[str] = field(default_factory=Counter)  # merges, matches, timers...
    # (emission, the event that caused it): the latency from event to decision.
    caused: list[tuple[Emission, Envelope]] = field(default_factory=list)

    def emit(self, emission: Emission | None, cause: Envelope | None = None) -> None:
        if emission is None:
            return
        self.emissions.append(emission)
        if cause is not None:
            self.caused.append((emission, cause))

    def park(self, source: SourceRecord, reason: str, now: datetime) -> None:
        """Dead-letter one event (``processing_error``): the partition goes on."""
        record = dead_letter(source, PROCESSING_ERROR, reason, self.stage, now)
        self.letters.append((source.key, record))
