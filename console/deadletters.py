"""Dead letters of the stream (``events.deadletter``) and of delivery
(``delivery.deadletter``): reading, summarising and re-driving them.

This is the code behind ``scripts/deadletters`` (moved here so the console and the
script share it): a re-drive writes each selected record's original key, value and
headers back to the ingestion topic with ``x-activation-redrive-count`` one higher, so a
record that fails again is dead-lettered again with its count (no silent loops: none
past ``max_redrives``). Re-driving is safe to repeat: the stream deduplicates by event
id. Delivery dead letters go back to their action topic for their destination only
(streams/delivery/cli.py, reused as it is).

:class:`DeadLetterIndex` keeps the newest summaries of a dead-letter topic in memory
(read from its start, then followed), so the console's list and filters never read the
whole topic per page.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import Message, Producer

from streams import follower
from streams.delivery import cli as delivery_cli
from streams.errors import BrokerError
from streams.schemas import SchemaCatalog
from streams.serde import AvroSerde, RegistryClient
from streams.settings import Settings
from streams.topics import DEAD_LETTER, DELIVERY_DEAD_LETTER, INGEST

REDRIVE_HEADER = "x-activation-redrive-count"
DELIVERY_HEADER = "x-delivery-destination"
STREAM, DELIVERY = "stream", "delivery"
LOGICAL = {STREAM: DEAD_LETTER, DELIVERY: DELIVERY_DEAD_LETTER}
_KEEP = ("source_topic", "source_partition", "source_offset", "reason_code", "reason",
         "stage", "redrive_count")
Letter = tuple[int, dict[str, Any]]


def serde_for(settings: Settings) -> AvroSerde:
    return AvroSerde(RegistryClient(settings.registry_client_config()),
                     SchemaCatalog.load(settings.schemas_dir))


def read_dead_letters(settings: Settings, serde: AvroSerde, kind: str = STREAM
                      ) -> list[Letter]:
    """(offset, record) of every dead letter on the topic as of now."""
    topic = settings.topic(LOGICAL[kind])
    return [(int(m.offset() or 0), serde.decode(m.value())[1])
            for m in follower.read_topic(settings, topic, purpose="dlq-cli")]


def summary(offset: int, record: dict[str, Any]) -> dict[str, Any]:
    """The dead letter without its original bytes (what ``list`` prints)."""
    out = {"offset": offset, **{k: record[k] for k in _KEEP},
           "failed_at": record["failed_at"].isoformat()}
    destination = record["original_headers"].get(DELIVERY_HEADER)
    if destination is not None:
        out["destination"] = destination.decode(errors="replace")
    return out


def select(letters: Iterable[Letter], reason_code: str | None = None,
           offsets: Iterable[int] | None = None, limit: int | None = None,
           destination: str | None = None) -> list[Letter]:
    wanted = set(offsets or ())
    chosen = [(off, rec) for off, rec in letters
              if (reason_code is None or rec["reason_code"] == reason_code)
              and (not wanted or off in wanted)
              and (destination is None or rec["original_headers"].get(
                  DELIVERY_HEADER, b"").decode(errors="replace") == destination)]
    return chosen if limit is None else chosen[:limit]


@dataclass(frozen=True)
class Redriven:
    sent: int
    skipped: int  # at max_redrives already

    def describe(self, dry_run: bool = False) -> str:
        verb = "would re-drive" if dry_run else "re-drove"
        return f"{verb} {self.sent} dead letters; skipped {self.skipped} at --max-redrives"


def redrive(settings: Settings, letters: list[Letter], max_redrives: int = 3,
            dry_run: bool = False) -> Redriven:
    """Write the selected stream dead letters back to the ingestion topic."""
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True})
    sent = skipped = 0
    for _, rec in letters:
        if rec["redrive_count"] >= max_redrives:
            skipped += 1
            continue
        headers = {**rec["original_headers"],
                   REDRIVE_HEADER: str(rec["redrive_count"] + 1).encode()}
        if not dry_run:
            producer.produce(settings.topic(INGEST), key=rec["original_key"],
                             value=rec["original_value"], headers=list(headers.items()))
        sent += 1
    if producer.flush(60) != 0:
        raise BrokerError("some re-driven records were not acknowledged; run again")
    return Redriven(sent, skipped)


def redrive_delivery(settings: Settings, letters: list[Letter], max_redrives: int = 3
                     ) -> Redriven:
    """Delivery dead letters back to their action topic, for their destination only
    (``scripts/delivery deadletters redrive``'s own code; its report is not printed)."""
    with contextlib.redirect_stdout(io.StringIO()):
        delivery_cli.redrive(settings, letters, False, max_redrives)
    skipped = sum(1 for _, rec in letters if rec["redrive_count"] + 1 > max_redrives)
    return Redriven(len(letters) - skipped, skipped)


def read_selected(settings: Settings, serde: AvroSerde, kind: str, offsets: list[int]
                  ) -> list[Letter]:
    """The dead letters at ``offsets`` (the console's re-drive of chosen rows)."""
    return select(read_dead_letters(settings, serde, kind), offsets=offsets)


@dataclass(frozen=True)
class Entry:
    """One dead letter as the console lists it."""

    offset: int
    reason_code: str
    reason: str
    stage: str
    source: str
    failed_at: datetime
    redrive_count: int
    destination: str
    event: str  # "event_name event_id" when the original still decodes, else ""


class DeadLetterIndex:
    """The newest ``keep`` dead letters of one topic, and counts by reason of all."""

    def __init__(self, kind: str, serde: AvroSerde, keep: int = 5000) -> None:
        self.kind, self._serde, self._keep = kind, serde, keep
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._reasons: Counter[str] = Counter()
        self._destinations: Counter[str] = Counter()
        self._redriven: dict[int, tuple[datetime, str]] = {}
        self._lock = threading.Lock()

    def apply(self, msg: Message) -> Entry:
        record = self._serde.decode(msg.value())[1]
        entry = entry_of(int(msg.offset() or 0), record, self._serde)
        with self._lock:
            if entry.offset not in self._entries:
                self._reasons[entry.reason_code] += 1
                self._destinations[entry.destination] += 1
            self._entries[entry.offset] = entry
            while len(self._entries) > self._keep:
                self._entries.popitem(last=False)
        return entry

    def entries(self, reason_code: str | None = None, destination: str | None = None,
                limit: int = 200) -> list[Entry]:
        with self._lock:
            newest = list(reversed(self._entries.values()))
        return [e for e in newest
                if (not reason_code or e.reason_code == reason_code)
                and (not destination or e.destination == destination)][:limit]

    def reasons(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._reasons.items()))

    def by_destination(self) -> dict[str, int]:
        with self._lock:
            return dict(self._destinations)

    def total(self) -> int:
        with self._lock:
            return sum(self._reasons.values())

    def mark_redriven(self, offsets: Iterable[int], at: datetime, by: str) -> None:
        with self._lock:
            for off in offsets:
                self._redriven[off] = (at, by)

    def redriven(self, offset: int) -> tuple[datetime, str] | None:
        with self._lock:
            return self._redriven.get(offset)


def entry_of(offset: int, record: dict[str, Any], serde: AvroSerde) -> Entry:
    headers = record.get("original_headers") or {}
    return Entry(offset, record["reason_code"], record["reason"], record["stage"],
                 f"{record['source_topic']}[{record['source_partition']}]"
                 f"@{record['source_offset']}",
                 record["failed_at"], record["redrive_count"],
                 headers.get(DELIVERY_HEADER, b"").decode(errors="replace"),
                 _describe_original(record.get("original_value"), serde))


def _describe_original(value: bytes | None, serde: AvroSerde) -> str:
    try:
        original = serde.decode(value)[1]
    except Exception:  # undecodable is the very reason many are here
        return ""
    name = original.get("event_name") or original.get("action_type") or ""
    ident = original.get("event_id") or original.get("action_id") or ""
    return f"{name} {ident}".strip()
