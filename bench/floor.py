"""The floor under the speed targets: what no Python worker of this design goes below.

    .venv/bin/python -m bench.floor [--events 40000] [--customers 2000]

``make bench-stream`` measures the worker against its targets (core at least 6x the
plain Faust agent's events/s, activation at most +30% CPU per event). This bench
measures, in one run on the real broker, what those targets leave once the parts no
implementation of this design can avoid are paid, each at its cheapest:

1. **the plain Faust agent** (``bench.stream``'s baseline, same workload): the 6x
   target is a budget of its CPU-µs per event divided by six;
2. **one exactly-once hop**, bare: a confluent-kafka consumer and transactional
   producer in a loop that does nothing else. Each record is produced on, with one
   state record (a changelog write), and each batch's offsets commit in its
   transaction (``send_offsets_to_transaction``). The core has three such hops
   (screening, the identity stage, the profile stage), the last two with state, as any
   layout that partitions identity apart from profiles must;
3. **one transactional produce**: what each record activation emits costs at least;
4. **the libraries' own calls** on the workload, in this process: the envelope's Avro
   decode (fastavro, the design card's), a stored profile's JSON decode and encode
   (msgspec and orjson, the fastest known to us, at the sizes the workload's profiles
   reach), and the Avro encode of an audience change;
5. **activation's evaluation alone**: the audiences each event touches, evaluated by
   the real compiled conditions (``streams.activation.audiences.audience_step``), and
   the audience changes and decisions per event of the benchmark's definitions.

It prints the best case of the core (three bare hops, the first without its state
record, and the library calls: no validation, dedup, identity, profile logic,
partitioning protocol or Faust) as a ratio to the plain Faust agent, and the least
activation can add (the audiences evaluated, each change and command encoded, at an
audience change's cost, and produced) against the +30% budget. CPU time is the
process's, all threads (librdkafka's included).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import msgspec
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.cimpl import NewTopic

from bench import stream
from bench.activation_defs import recent, write_definitions
from streams.activation import audiences as audience_module
from streams.core.identity_stage import route_event
from streams.core.pipeline import APPLIED, StageConfig, apply_resolved, pkey
from streams.core.sandbox import DictStore
from streams.schemas import SchemaCatalog
from streams.settings import Settings
from streams.topics import AUDIENCE_CHANGE_RECORD, ENVELOPE, admin_client
from tests.integration.core.harness import produce
from tests.integration.core.workload import workload

CFG = StageConfig(timedelta(days=7), timedelta(seconds=5), 200)
BATCH = 500  # records per consume call and per transaction, as the stages take them
STATE_VALUE = b"x" * 100  # a state record: the hop's one changelog write
STALL_S = 60.0  # the bare hop gives up after this long without a record


def _cpu_us_per(count: int, run: Callable[[], object]) -> float:
    started = time.process_time()
    run()
    return (time.process_time() - started) / count * 1e6


# --- Kafka: the bare hop and the bare produce --------------------------------------------

def _topics(settings: Settings, names: list[str]) -> None:
    admin = admin_client(settings)  # kept until the futures are done
    for future in admin.create_topics([NewTopic(n, 1, 1) for n in names]).values():
        future.result()


def _producer(settings: Settings, tid: str) -> Producer:
    producer = Producer({**settings.kafka_client_config(), "transactional.id": tid,
                         "linger.ms": 5, "log_level": 3})
    producer.init_transactions(30)
    return producer


def bare_hop(settings: Settings, source: str, expected: int) -> float:
    """CPU-µs per record of consume, produce on, one state record, batch transactions."""
    out, state = f"{source}.out", f"{source}.state"
    _topics(settings, [out, state])
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"{source}.floor",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(source, 0, 0)])
    producer = _producer(settings, f"{source}.floor")
    while not consumer.consume(1, 10):  # connected and fetching: the clock starts here
        pass
    consumer.seek(TopicPartition(source, 0, 0))
    done = [0]

    def relay() -> None:
        deadline = time.monotonic() + STALL_S
        while done[0] < expected:
            records = consumer.consume(BATCH, 1.0)
            if not records:
                if time.monotonic() > deadline:
                    raise SystemExit(f"bare hop: {done[0]} of {expected} records after "
                                     f"{STALL_S:.0f} s without progress")
                continue
            deadline = time.monotonic() + STALL_S
            producer.begin_transaction()
            for record in records:
                producer.produce(out, record.value(), record.key())
                producer.produce(state, STATE_VALUE, record.key())
            next_offset = (records[-1].offset() or 0) + 1
            producer.send_offsets_to_transaction(
                [TopicPartition(source, 0, next_offset)],
                consumer.consumer_group_metadata())
            producer.commit_transaction(30)
            done[0] += len(records)

    cost = _cpu_us_per(expected, relay)
    consumer.close()
    return cost


def bare_produce(settings: Settings, topic: str, count: int) -> float:
    """CPU-µs per record produced in transactions of BATCH records."""
    producer = _producer(settings, f"{topic}.produce")
    value = b"y" * 300  # about an encoded audience change

    def send() -> None:
        for first in range(0, count, BATCH):
            producer.begin_transaction()
            for i in range(first, min(count, first + BATCH)):
                producer.produce(topic, value, str(i).encode())
            producer.commit_transaction(30)

    return _cpu_us_per(count, send)


# --- the libraries' calls and activation's evaluation, in this process --------------------

def _pure_run(events: list[Any], definitions: Any, now: datetime
              ) -> tuple[list[bytes], list[dict[str, Any]], dict[str, float]]:
    """The workload through the pure stages (as bench.stages): each stored profile as
    written, the audience changes emitted, and activation's counts and audience CPU."""
    from streams.activation import engine
    from streams.activation.runtime import activate_event

    identity, profiles = DictStore(), DictStore()
    stored: list[bytes] = []  # each profile as written after its event
    changes: list[dict[str, Any]] = []
    tally = {"audience_cpu_s": 0.0, "decisions": 0.0, "commands": 0.0}
    real_step = audience_module.audience_step

    def timed_step(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return real_step(*args, **kwargs)
        finally:
            tally["audience_cpu_s"] += time.process_time() - started

    def hook(before: Any, profile: Any, env: Any, at: int) -> Any:
        profile, emission = activate_event(profiles, before, profile, env, at, now,
                                           definitions, CFG.timeline_limit)
        if emission is not None:
            changes.extend(emission.changes)
            tally["decisions"] += len(emission.decisions)
            tally["commands"] += len(emission.commands)
        return profile

    setattr(engine, "audience_step", timed_step)  # noqa: B010 (the engine's own name)
    try:
        for position, envelope in enumerate(events):
            routed = route_event(identity, envelope, now, CFG.dedup_window, f"o{position}")
            if routed.status != APPLIED:
                continue
            apply_resolved(profiles, envelope, routed.profile_id, position, CFG, hook)
            stored.append(profiles[pkey(routed.profile_id)])
    finally:
        setattr(engine, "audience_step", real_step)  # noqa: B010
    return stored, changes, tally


def library_floors(settings: Settings, events: list[Any], raws: list[bytes],
                   definitions: Any) -> dict[str, float]:
    """CPU-µs per event of the library calls, and activation's evaluation and counts."""
    catalog = SchemaCatalog.load(settings.schemas_dir)
    envelope_schema = catalog.parsed(ENVELOPE)
    change_schema = catalog.parsed(AUDIENCE_CHANGE_RECORD)
    bodies = [raw[5:] for raw in raws]  # past the registry's 5-byte frame
    n = len(events)
    avro = _cpu_us_per(n, lambda: [fastavro.schemaless_reader(io.BytesIO(b), envelope_schema,
                                                              None) for b in bodies])
    _, changes, tally = _pure_run(events, definitions, datetime.now(UTC))
    plain, _, _ = _pure_run(events, None, datetime.now(UTC))
    decode = msgspec.json.decode
    profile_json = _cpu_us_per(n, lambda: [orjson.dumps(decode(raw)) for raw in plain])

    def encode_changes() -> None:
        for change in changes:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, change_schema, change)

    return {"avro_decode": avro, "profile_json": profile_json,
            "profile_bytes": sum(map(len, plain)) / len(plain),
            "change_encode": _cpu_us_per(max(1, len(changes)), encode_changes),
            "changes": len(changes) / n, "decisions": tally["decisions"] / n,
            "commands": tally["commands"] / n,
            "audiences": tally["audience_cpu_s"] / n * 1e6}


# --- the run and the report ----------------------------------------------------------------

def measure(events: int, customers: int) -> dict[str, float]:
    bench = stream.new_bench()
    try:
        work = stream.prepare(bench, events, customers, returning=False)
        plain = bench.plain
        faust = stream.run([sys.executable, "-m", "bench.stream", "plain-worker", "worker",
                            "-l", "info"], stream._env(plain), plain, work,
                           bench.root / "plain.log")
        source = f"{bench.core.topic_prefix}floor.{uuid.uuid4().hex[:6]}"
        _topics(bench.core, [source])
        produce(bench.core, source, work.records)
        figures = {"faust": faust.cpu_us, "hop": bare_hop(bench.core, source, len(work.records)),
                   "produce": bare_produce(bench.core, f"{source}.out", len(work.records))}
    finally:
        stream.cleanup(bench)
    data = recent(workload(events, customers), events, datetime.now(UTC))
    with tempfile.TemporaryDirectory() as tmp:
        definitions = write_definitions(Path(tmp) / "defs")
    raws = [value for _, value in work.records]
    return figures | library_floors(bench.core, data, raws, definitions)


def report(f: dict[str, float], measured_core: float | None) -> None:
    budget = f["faust"] / 6
    # Screening writes no state: its hop is one produce cheaper than the other two.
    core = 3 * f["hop"] - f["produce"] + f["avro_decode"] + f["profile_json"]
    least = f["audiences"] + (f["changes"] + f["commands"]) * (f["change_encode"] + f["produce"])
    print(f"plain Faust agent: {f['faust']:.0f} CPU-us/event; the 6x target leaves "
          f"{budget:.0f} CPU-us/event for the core")
    print(f"one bare exactly-once hop (consume, produce on, one state record): "
          f"{f['hop']:.1f} CPU-us/record; one transactional produce: {f['produce']:.1f}")
    print(f"library calls per event: Avro decode {f['avro_decode']:.1f}, profile JSON "
          f"decode+encode {f['profile_json']:.1f} (profiles of {f['profile_bytes']:,.0f} "
          "bytes on average)")
    print(f"best case of the core (3 hops, 2 with state, those calls, nothing else): "
          f"{core:.1f} CPU-us/event = {f['faust'] / core:.2f}x the plain Faust agent "
          "(target 6x)")
    print(f"activation on the benchmark's definitions, per event: {f['changes']:.2f} audience "
          f"changes, {f['decisions']:.2f} decisions, {f['commands']:.2f} commands; the "
          f"touched audiences' evaluation alone {f['audiences']:.1f} CPU-us; an audience "
          f"change's Avro encode {f['change_encode']:.1f}")
    print(f"least activation adds (evaluation, each change and command encoded and "
          f"produced, nothing else): {least:.1f} CPU-us/event = "
          f"{least / core:+.0%} of the core's best case"
          + (f", {least / measured_core:+.0%} of the core measured at {measured_core:.0f}"
             if measured_core else "") + " (target at most +30%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--core-cpu-us", type=float, default=None,
                        help="the core's CPU-us per event from a bench-stream run, to "
                        "compare activation's least with")
    args = parser.parse_args()
    report(measure(args.events, args.customers), args.core_cpu_us)


if __name__ == "__main__":
    main()
