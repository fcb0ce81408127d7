"""What-if replay (``scripts/whatif``): how would a draft of the definitions have decided,
against the definitions in force, on the events the platform actually received?

Both runs go through the same pure stages, in this process, over their own in-memory
state (streams/core/sandbox.py): no consumer group, no state store, nothing written to
any topic, so nothing can reach the action topics. Time is the events' own: before each
event the due timers fire at its event time, and decisions are made at it, so the same
input and the same definitions always give the same answer.

The input is read from the ingestion topic, within a :class:`Span`: a time range
(``--from``/``--to``, the records' timestamps), an offset range (``--from-offset``/
``--to-offset``: one offset for every partition, or ``P:OFFSET`` lists that also choose
the partitions), or both, every bound given applying at once. Starts are inclusive,
ends exclusive, and no partition is read past the end it had when the replay started.
Whatever the bounds, the records are replayed in one fixed order: record timestamp,
then partition, then offset. The rules in full: docs/activation.md, "What-if replay".

The report lists, per journey, enrollments and actions by channel and outcome, and the
audience entries, for both runs, and what differs.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streams.activation.definitions import DefinitionSet
from streams.activation.runtime import Emission
from streams.core.contract import ContractViolation, validate_record
from streams.core.pipeline import StageConfig
from streams.core.sandbox import Sandbox
from streams.errors import BrokerError, DecodeError
from streams.follower import partitions_of, reader
from streams.records import Envelope
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import INGEST

Progress = Callable[[int, int], None]
T = TypeVar("T")
# The contract refuses events too far ahead of "now"; a replay judges them as they were
# judged when received, so "now" is no bound here.
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
_OFFSETS_FORM = "OFFSETS is N for every partition, or P:N[,P:N...] for those partitions"


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


@dataclass(frozen=True)
class Offsets:
    """One ``--from-offset``/``--to-offset`` value: the same offset on every partition
    (``every``), or offsets on the ``listed`` partitions only; neither: no bound."""

    every: int | None = None
    listed: Mapping[int, int] = field(default_factory=dict)

    @property
    def given(self) -> bool:
        return self.every is not None or bool(self.listed)

    def at(self, partition: int) -> int | None:
        return self.every if self.every is not None else self.listed.get(partition)


def parse_offsets(text: str) -> Offsets:
    """``N`` (every partition) or ``P:N[,P:N...]``; ValueError says what is wrong."""
    if ":" not in text:
        return Offsets(every=_whole(text, "offset"))
    listed: dict[int, int] = {}
    for item in text.split(","):
        partition, colon, offset = item.partition(":")
        if not colon:  # a bare N among P:N items: which partitions would it mean?
            raise ValueError(f"{item.strip()!r} has no partition: in a list every item is "
                             f"P:N; {_OFFSETS_FORM}")
        p = _whole(partition, "partition")
        if p in listed:
            raise ValueError(f"partition {p} is given twice in {text.strip()!r}")
        listed[p] = _whole(offset, "offset")
    return Offsets(listed=listed)


def _whole(text: str, what: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):  # isdigit alone takes "²"; int() takes "+1"
        raise ValueError(f"{what} {text!r} is not a whole number >= 0; {_OFFSETS_FORM}")
    return int(text)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with a zone; a naive one would be read in the local zone."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 instant, "
                         "e.g. 2026-11-29T00:00:00+00:00") from None
    if at.utcoffset() is None:
        raise ValueError(f"{text!r} has no time zone: add one, e.g. +00:00 or Z")
    return at


@dataclass(frozen=True)
class Span:
    """What to replay. Every bound given applies, so a record is replayed only if it is
    within all of them: ``start`` and ``from_offsets`` inclusive, ``end`` and
    ``to_offsets`` exclusive (times are the records' timestamps). ``P:N`` lists choose
    the partitions (those named in either); otherwise all are read. A start is required:
    the whole topic is ``from_offsets=Offsets(every=0)``, said on purpose."""

    start: datetime | None = None
    end: datetime | None = None
    from_offsets: Offsets = field(default_factory=Offsets)
    to_offsets: Offsets = field(default_factory=Offsets)

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem is not None:
            raise ValueError(problem)

    def _problem(self) -> str | None:
        if self.start is None and not self.from_offsets.given:
            return ("say where to start: --from TIME or --from-offset OFFSETS "
                    "(--from-offset 0 for the beginning of every partition)")
        if any(t is not None and t.utcoffset() is None for t in (self.start, self.end)):
            return "--from and --to need a time zone"
        if self.start is not None and self.end is not None and self.end <= self.start:
            return (f"nothing to replay: --to {self.end.isoformat()} is not after "
                    f"--from {self.start.isoformat()}")
        named = self.from_offsets.listed.keys() | self.to_offsets.listed.keys()
        for p in sorted(named) or [-1]:  # no list: one check, N against N (-1 is any)
            lo, hi = self.from_offsets.at(p), self.to_offsets.at(p)
            where = "" if p < 0 else f" on partition {p}"
            if hi == 0:  # whatever the start: the end is exclusive
                return f"nothing to replay{where}: --to-offset 0 ends before the first record"
            if lo is not None and hi is not None and lo >= hi:
                return (f"nothing to replay{where}: --from-offset {lo} is not before "
                        f"--to-offset {hi} (the start is inclusive, the end exclusive)")
        return None

    def partitions(self, existing: Sequence[int], topic: str) -> list[int]:
        named = self.from_offsets.listed.keys() | self.to_offsets.listed.keys()
        if not named:
            return sorted(existing)
        missing = sorted(named - set(existing))
        if missing:
            raise ValueError(f"{topic} has no partition {', '.join(map(str, missing))} "
                             f"(its partitions: {', '.join(map(str, sorted(existing)))})")
        return sorted(named)

    def window(self, partition: int, low: int, high: int, at_start: int | None
               ) -> tuple[int, int] | None:
        """The offsets [first, stop) to read on a partition that holds [low, high),
        ``at_start`` being its first offset stamped at or after ``start`` (None: no
        start time); None if nothing is left to read there."""
        first = max(low, self.from_offsets.at(partition) or 0,
                    low if at_start is None else at_start)
        to = self.to_offsets.at(partition)
        stop = high if to is None else min(high, to)
        return (first, stop) if first < stop else None


def read_events(settings: Settings, serde: AvroSerde, span: Span) -> list[Envelope]:
    """Valid events of the ingestion topic within ``span``, in a fixed order (timestamp,
    partition, offset); invalid ones are skipped."""
    topic = settings.topic(INGEST)
    consumer = reader(settings, "whatif")
    try:
        plan = _plan(consumer, topic, span)
        consumer.assign([TopicPartition(topic, p, first) for p, (first, _) in plan.items()])
        found: list[tuple[int, int, int, Envelope]] = []
        end_ms = None if span.end is None else int(span.end.timestamp() * 1000)
        _drain(consumer, {p: stop for p, (_, stop) in plan.items()}, end_ms, serde, found)
        return [e for *_, e in sorted(found, key=lambda item: item[:3])]
    finally:
        consumer.close()


def _plan(consumer: Consumer, topic: str, span: Span) -> dict[int, tuple[int, int]]:
    """Per partition, the offsets [first, stop) to read; partitions with nothing to read
    are left out. Stops never pass the partition's end as it is now, so records that
    arrive during the replay are not part of it."""
    parts = span.partitions(partitions_of(consumer, topic), topic)
    try:
        marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                 for p in parts}
        at_start: dict[int, int] = {}
        if span.start is not None:
            ms = int(span.start.timestamp() * 1000)
            for tp in consumer.offsets_for_times(
                    [TopicPartition(topic, p, ms) for p in parts], timeout=30):
                if tp.error is not None:
                    raise BrokerError(f"cannot find {span.start} in {topic}: {tp.error}")
                # -1: no record stamped at or after the start: nothing to read there.
                at_start[tp.partition] = tp.offset if tp.offset >= 0 else marks[tp.partition][1]
    except KafkaException as exc:
        raise BrokerError(f"cannot read the offsets of {topic}: {exc}") from exc
    windows = {p: span.window(p, *marks[p], at_start.get(p)) for p in parts}
    return {p: w for p, w in windows.items() if w is not None}


def _drain(consumer: Consumer, stops: dict[int, int], end_ms: int | None, serde: AvroSerde,
           found: list[tuple[int, int, int, Envelope]]) -> None:
    """Read each partition up to its stop offset, its end, or its first record stamped
    at or after ``end_ms``. A finished partition is paused: records arriving later must
    not join the replay, or two runs of one command could differ."""
    pending = set(stops)
    while pending:
        for msg in consumer.consume(2000, 1.0):
            err, partition = msg.error(), int(msg.partition() or 0)
            offset, stamp = int(msg.offset() or 0), msg.timestamp()[1]
            if partition not in pending:
                continue
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    _finish(consumer, str(msg.topic()), partition, pending)
                continue
            if offset >= stops[partition] or (end_ms is not None and stamp >= end_ms):
                _finish(consumer, str(msg.topic()), partition, pending)
                continue
            envelope = _valid(serde, msg.value())
            if envelope is not None:
                found.append((stamp, partition, offset, envelope))
            if offset + 1 >= stops[partition]:  # the last one: no need to wait for more
                _finish(consumer, str(msg.topic()), partition, pending)


def _finish(consumer: Consumer, topic: str, partition: int, pending: set[int]) -> None:
    pending.discard(partition)
    consumer.pause([TopicPartition(topic, partition)])


def _valid(serde: AvroSerde, value: bytes | str | None) -> Envelope | None:
    try:
        raw = value.encode() if isinstance(value, str) else value
        return validate_record(serde.decode(raw)[1], _FAR_FUTURE)
    except (DecodeError, ContractViolation):
        return None


def print_progress(done: int, total: int) -> None:
    print(f"\r{done:,}/{total:,} events replayed", end="", file=sys.stderr, flush=True)


def _option(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` for argparse: its ValueError's message is shown as it is."""
    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/whatif", epilog=_EXAMPLES,
        description="How would a draft of the definitions have decided, against the ones\n"
                    "in force, on the events the ingestion topic received?",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("draft", type=Path, help="a definitions directory (not published)")
    span = p.add_argument_group("what to replay", _SPAN_HELP)
    span.add_argument("--from", dest="start", metavar="TIME", type=_option(parse_instant),
                      help="ISO 8601 instant with a zone: records stamped from here")
    span.add_argument("--to", dest="end", metavar="TIME", type=_option(parse_instant),
                      help="records stamped before here")
    span.add_argument("--from-offset", metavar="OFFSETS", type=_option(parse_offsets),
                      default=Offsets(), help="records at this offset and after")
    span.add_argument("--to-offset", metavar="OFFSETS", type=_option(parse_offsets),
                      default=Offsets(), help="records before this offset")
    return p


_SPAN_HELP = """\
Give --from, --from-offset or both. Every bound given applies: a record is
replayed only if it is within all of them. Starts are inclusive, ends exclusive;
without an end, each partition is read up to its end when the replay starts.
OFFSETS is N, the same offset on every partition, or P:N[,P:N...]: a list also
chooses the partitions read (those named in either list; a single N then applies
to each of them). Records are replayed by timestamp, then partition, then offset."""
_EXAMPLES = """\
examples:
  scripts/whatif DRAFT --from 2026-11-29T00:00:00+00:00 --to 2026-11-30T00:00:00+00:00
  scripts/whatif DRAFT --from-offset 1000 --to-offset 5000    # [1000, 5000) everywhere
  scripts/whatif DRAFT --from-offset 0:1200,3:800 --to-offset 0:1500    # partitions 0, 3
  scripts/whatif DRAFT --from-offset 0 --to 2026-11-30T00:00:00Z  # the topic, up to then"""


def main(argv: list[str] | None = None) -> int:
    from streams.activation.definitions import DefinitionError, load_definitions
    from streams.activation.distribution import read_history
    from streams.errors import ActivationError
    from streams.schemas import SchemaCatalog
    from streams.serde import RegistryClient
    from streams.settings import load_settings

    p = parser()
    args = p.parse_args(argv)
    try:
        span = Span(args.start, args.end, args.from_offset, args.to_offset)
    except ValueError as exc:
        p.error(str(exc))
    try:
        settings = load_settings()
        draft = load_definitions(args.draft)
        history = read_history(settings)
        if not history:
            raise DefinitionError("no definitions in force to compare with")
        serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                          SchemaCatalog.load(settings.schemas_dir))
        events = read_events(settings, serde, span)
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
