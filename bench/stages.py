"""CPU-µs per event of each stage's own work: the pure stages, in one process, no broker.

    .venv/bin/python -m bench.stages [--events 20000] [--customers 2000]

Runs the stream-core workload (``bench.stream``'s, rebased to the year before now)
through the sandbox's stages (streams/core/sandbox.py, the pure modules the workers
drive), with and without the benchmark's 50 audiences and 10 journeys, and charges
``time.process_time`` around each call to the stage it belongs to:

- **screening**: Avro decoding and the contract check of the ingestion record;
- **identity**: deduplication and identity resolution on the single layout
  (``route_event``);
- **identity, N slots** (its own table): the same on the partitioned layout, through the
  protocol's real steps (``streams/core/identity_protocol.handle``) and its message codec,
  the slots in one process (tests/unit/core/partitioned.py), the events arriving in
  takes of ``--take`` as the worker takes them; the protocol records per event say
  how much travelling between slots the protocol did;
- **profile**: applying the event to its profile (``apply_resolved`` without activation);
- **activation**: what activation adds on top (audiences, journeys, governance, notes,
  timers) with the benchmark's definitions.

What the workers add on top of this (Kafka I/O, Faust, transactions, RocksDB, changelog
writes) is the difference to ``make bench-stream``'s CPU per event. docs/capacity.md
derives partitions, workers and brokers from these figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.activation_defs import recent, write_definitions
from streams.activation.definitions import DefinitionSet
from streams.core import carried
from streams.core.contract import validate_record
from streams.core.identity import identifier_keys
from streams.core.identity_messages import EventRef
from streams.core.identity_stage import route_event
from streams.core.pipeline import APPLIED, StageConfig, apply_resolved
from streams.core.profile import micros
from streams.core.sandbox import DictStore
from streams.records import Envelope
from streams.schemas import SchemaCatalog
from streams.settings import load_settings
from tests.integration.core.workload import workload
from tests.unit.core.partitioned import Partitioned

CFG = StageConfig(timedelta(days=7), timedelta(seconds=5), 200)


def _encoded(events: list[Envelope]) -> tuple[list[bytes], object]:
    import io

    import fastavro

    catalog = SchemaCatalog.load(load_settings().schemas_dir)
    schema = catalog.parsed("io.activation.events.EventEnvelope")
    out = []
    for e in events:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, e.to_avro())
        out.append(buf.getvalue())
    return out, schema


def _hook(store: DictStore, definitions: DefinitionSet, cpu: dict[str, float],
          now: datetime) -> Any:
    """The profile stage's activation hook, its time charged to ``activation``. Its clock
    is ``now``, as the worker's is the wall clock (streams/core/stages/profiles.py), not
    each event's time: audiences are evaluated as of now, as in ``make bench-stream``."""
    from streams.activation.runtime import activate_event

    def hook(before: Any, profile: Any, env: Envelope, at: int) -> Any:
        started = time.process_time()
        profile, _ = activate_event(store, before, profile, env, at, now,
                                    definitions, CFG.timeline_limit)
        cpu["activation"] += time.process_time() - started
        return profile

    return hook


def run(events: list[Envelope], definitions: DefinitionSet | None) -> dict[str, float]:
    """CPU seconds per stage over ``events``."""
    import io

    import fastavro

    raws, schema = _encoded(events)
    cpu: dict[str, float] = defaultdict(float)
    identity, profiles = DictStore(), DictStore()
    now = datetime.now(UTC)
    for position, raw in enumerate(raws):
        t0 = time.process_time()
        envelope = validate_record(fastavro.schemaless_reader(io.BytesIO(raw), schema, None),
                                   now)
        t1 = time.process_time()
        routed = route_event(identity, envelope, now, CFG.dedup_window, f"o{position}")
        t2 = time.process_time()
        cpu["screening"] += t1 - t0
        cpu["identity"] += t2 - t1
        if routed.status != APPLIED:
            continue
        before_act = cpu["activation"]
        t3 = time.process_time()
        apply_resolved(profiles, envelope, routed.profile_id, position, CFG,
                       None if definitions is None else _hook(profiles, definitions, cpu, now))
        cpu["profile"] += time.process_time() - t3 - (cpu["activation"] - before_act)
    return dict(cpu)


def partitioned(events: list[Envelope], raws: list[bytes], slots: int, take: int
                ) -> tuple[float, float]:
    """CPU seconds of the identity stage's protocol over ``slots`` slots, and the records
    the slots handled per event beyond the batches they came in. As in the worker: each
    take of events arrives at its home slots (a screened batch's events, handled at once),
    then every protocol record they cause is delivered, pairs of slots served in turn.
    The events carry what the worker's do (their Avro record and their envelope)."""
    stage = Partitioned(slots)
    now = datetime.now(UTC)
    refs = [EventRef(e.event_id, micros(e.event_time), tuple(identifier_keys(e.identifiers)),
                     f"o{i}", None, raw, carried.encode(e))
            for i, (e, raw) in enumerate(zip(events, raws, strict=True))]
    started = time.process_time()
    for first in range(0, len(refs), take):
        for ref in refs[first:first + take]:
            stage.arrive_at_home(ref, now)
        while ready := stage.ready():
            for pair in ready:
                stage.deliver(pair)
    return time.process_time() - started, stage.delivered / len(events)


def report(count: int, customers: int, take: int = 500) -> None:
    """Both runs over the workload, and the table of CPU-us per event by stage."""
    events = recent(workload(count, customers), count, datetime.now(UTC))
    with tempfile.TemporaryDirectory() as tmp:
        definitions = write_definitions(Path(tmp) / "defs")
    core = run(events, None)
    with_act = run(events, definitions)
    raws, _ = _encoded(events)
    print(f"{count:,} events, {customers:,} customers; CPU-us per event of each stage's "
          "own work (pure stages, no broker)")
    print(f"{'stage':<12} {'core':>8} {'with activation':>16}")
    for stage in ("screening", "identity", "profile", "activation"):
        print(f"{stage:<12} {core.get(stage, 0) / count * 1e6:>8.1f} "
              f"{with_act.get(stage, 0) / count * 1e6:>16.1f}")
    total_core = sum(core.values()) / count * 1e6
    total_act = sum(with_act.values()) / count * 1e6
    print(f"{'total':<12} {total_core:>8.1f} {total_act:>16.1f}")
    print(f"\nidentity on the partitioned layout (the protocol's steps, takes of {take})")
    print(f"{'slots':<12} {'CPU-us':>8} {'protocol records/event':>24}")
    for slots in (1, 4, 16):
        cpu, records = partitioned(events, raws, slots, take)
        print(f"{slots:<12} {cpu / count * 1e6:>8.1f} {records:>24.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--take", type=int, default=500,
                        help="arrivals fed to the partitioned identity stage at once")
    args = parser.parse_args()
    report(args.events, args.customers, args.take)


if __name__ == "__main__":
    main()
