"""What-if replay (``scripts/whatif``): how would a draft of the definitions have decided,
against the definitions in force, on the events the platform actually received?

Both runs go through the same pure stages, in this process, over their own in-memory
state (streams/core/sandbox.py): no consumer group, no state store, nothing written to
any topic, so nothing can reach the action topics. Time is the events' own: before each
event the due timers fire at its event time, and decisions are made at it, so the same
input and the same definitions always give the same answer. The input is read from
the ingestion topic (every partition, in a fixed order: record timestamp, then
partition, then offset), between two instants.

The report lists, per journey, enrollments and actions by channel and outcome, and the
audience entries, for both runs, and what differs.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

from streams.activation.definitions import DefinitionSet
from streams.activation.runtime import Emission
from streams.core.contract import ContractViolation, validate_record
from streams.core.pipeline import StageConfig
from streams.core.sandbox import Sandbox
from streams.errors import DecodeError
from streams.follower import partitions_of, reader
from streams.records import Envelope
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import INGEST

Progress = Callable[[int, int], None]
# The contract refuses events too far ahead of "now"; a replay judges them as they were
# judged when received, so "now" is no bound here.
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass
class Tally:
    """What one run decided, counted (no customer data)."""

    enrollments: Counter[str] = field(default_factory=Counter)
    entries: Counter[str] = field(default_factory=Counter)
    actions: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # journey, ch, out

    def add(self, emission: Emission) -> None:
        self.enrollments.update(emission.enrolled)
        self.entries.update(c["audience_id"] for c in emission.changes
                            if c["change"] == "entered")
        self.actions.update((d.get("journey_id") or "-", d["channel"], d["outcome"])
                            for d in emission.decisions)


def replay(envelopes: Iterable[Envelope], definitions: DefinitionSet, cfg: StageConfig,
           partitions: int = 4, progress: Progress | None = None, total: int = 0) -> Tally:
    sandbox = Sandbox(cfg, partitions, definitions)
    for n, envelope in enumerate(envelopes, start=1):
        sandbox.tick(envelope.event_time)
        sandbox.send(envelope, envelope.event_time, envelope.event_id)
        if progress is not None and n % 500 == 0:
            progress(n, total)
    tally = Tally()
    for emission in sandbox.sent:
        tally.add(emission)
    return tally


def report(in_force: Tally, draft: Tally) -> list[str]:
    lines = ["journey / channel / outcome          in force      draft    change"]
    for key in sorted(in_force.actions.keys() | draft.actions.keys()):
        a, b = in_force.actions[key], draft.actions[key]
        lines.append(f"{' / '.join(key):<34} {a:>9} {b:>10} {b - a:>+9}")
    lines.append("enrollments")
    for jid in sorted(in_force.enrollments.keys() | draft.enrollments.keys()):
        a, b = in_force.enrollments[jid], draft.enrollments[jid]
        lines.append(f"  {jid:<32} {a:>9} {b:>10} {b - a:>+9}")
    lines.append("audience entries")
    for aid in sorted(in_force.entries.keys() | draft.entries.keys()):
        a, b = in_force.entries[aid], draft.entries[aid]
        lines.append(f"  {aid:<32} {a:>9} {b:>10} {b - a:>+9}")
    same = in_force == draft
    lines.append("no difference" if same else "the draft decides differently (see change)")
    return lines


def read_events(settings: Settings, serde: AvroSerde, start: datetime, end: datetime
                ) -> list[Envelope]:
    """Valid events of the ingestion topic whose records were written in [start, end),
    in a fixed order (timestamp, partition, offset); invalid ones are skipped."""
    topic = settings.topic(INGEST)
    consumer = reader(settings, "whatif")
    try:
        parts = [TopicPartition(topic, p, int(start.timestamp() * 1000))
                 for p in partitions_of(consumer, topic)]
        consumer.assign(consumer.offsets_for_times(parts, timeout=30))
        found: list[tuple[int, int, int, Envelope]] = []
        _drain(consumer, len(parts), int(end.timestamp() * 1000), serde, found)
        return [e for *_, e in sorted(found, key=lambda item: item[:3])]
    finally:
        consumer.close()


def _drain(consumer: Consumer, partitions: int, end_ms: int, serde: AvroSerde,
           found: list[tuple[int, int, int, Envelope]]) -> None:
    done: set[int] = set()
    while len(done) < partitions:
        for msg in consumer.consume(2000, 1.0):
            err, partition = msg.error(), int(msg.partition() or 0)
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    done.add(partition)
                continue
            stamp = msg.timestamp()[1]
            if stamp >= end_ms:
                done.add(partition)
                consumer.pause([TopicPartition(str(msg.topic()), partition)])
                continue
            envelope = _valid(serde, msg.value())
            if envelope is not None:
                found.append((stamp, partition, int(msg.offset() or 0), envelope))


def _valid(serde: AvroSerde, value: bytes | str | None) -> Envelope | None:
    try:
        raw = value.encode() if isinstance(value, str) else value
        return validate_record(serde.decode(raw)[1], _FAR_FUTURE)
    except (DecodeError, ContractViolation):
        return None


def print_progress(done: int, total: int) -> None:
    print(f"\r{done:,}/{total:,} events replayed", end="", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from streams.activation.definitions import DefinitionError, load_definitions
    from streams.activation.distribution import read_history
    from streams.errors import ActivationError
    from streams.schemas import SchemaCatalog
    from streams.serde import RegistryClient
    from streams.settings import load_settings

    p = argparse.ArgumentParser(prog="scripts/whatif", description=__doc__.split("\n")[0])
    p.add_argument("draft", type=Path, help="a definitions directory (not published)")
    p.add_argument("--from", dest="start", type=datetime.fromisoformat, required=True,
                   help="ISO 8601 instant with a zone: replay records written from here")
    p.add_argument("--to", dest="end", type=datetime.fromisoformat,
                   help="up to here (default: now)")
    args = p.parse_args(argv)
    try:
        settings = load_settings()
        draft = load_definitions(args.draft)
        history = read_history(settings)
        if not history:
            raise DefinitionError("no definitions in force to compare with")
        serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                          SchemaCatalog.load(settings.schemas_dir))
        events = read_events(settings, serde, args.start, args.end or datetime.now(UTC))
        cfg = StageConfig(settings.dedup_window, settings.ordering_window,
                          settings.profile_timeline_limit)
        runs = [replay(events, d, cfg, settings.profile_partitions, print_progress,
                       len(events)) for d in (history[-1].definitions, draft)]
    except (ActivationError, ValueError) as exc:
        print(f"whatif: {exc}", file=sys.stderr)
        return 2
    print(f"\r{len(events):,} events replayed: in force {history[-1].version} "
          f"(sequence {history[-1].sequence}) against the draft {draft.version}",
          file=sys.stderr)
    print("\n".join(report(*runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
