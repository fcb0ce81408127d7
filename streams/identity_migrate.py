"""Moving a stopped, drained deployment between identity layouts: the Kafka side of
``scripts/identity migrate`` (streams/identity_migrate_cli.py).

The source layout is the deployment's current one, ``ACTIVATION_IDENTITY_PARTITIONS``
(run the tool with the workers' configuration); ``--to`` is the new one. The single
layout keeps its state in the store ``identity`` (changelog ``<app>-identity-changelog``,
one partition), the partitioned one in ``ident`` (``<app>-ident-changelog``, a partition
per slot; it may have more partitions than slots, the extra ones left empty). The tool
reads the source changelog to its end (read_committed), re-slots it
(streams/core/identity_migrate.py; a marker's home key is read from its origin record
on ``events.ingest``), and writes the destination changelog in **one transaction**: a
tombstone for every key it held that the new state lacks, the new value of every key
that changed. So a worker's local copy catches up from its stored offset to exactly the
new state, and a failed run leaves nothing half-written (run it again). Then
``internal.identity`` is given exactly N partitions (grown, or created) and the
workers' group is committed at the end of each of its partitions. Runbook:
docs/partitioned-identity.md, 7.1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewPartitions

from streams.core.batch import parse_origin
from streams.core.identity import identifier_keys
from streams.core.identity_migrate import (
    MARKER,
    HomeOf,
    MigrationError,
    family_counts,
    invariant_problems,
    marker_origin,
    misplaced,
    reslot,
)
from streams.errors import BrokerError, DecodeError
from streams.follower import partitions_of, read_to_end, reader
from streams.identity_drain import (
    TIMEOUT_S,
    commit_input_ends,
    drain_problems,
    partition_count,
    require_stopped,
)
from streams.records import Envelope
from streams.schemas import SchemaCatalog
from streams.serde import AvroSerde, RegistryClient
from streams.settings import Settings
from streams.topics import (
    IDENTITY_INPUT,
    STAGE_MAX_BYTES,
    TopicSpec,
    admin_client,
    declared_topics,
    ensure_topics,
)
from tables.state import declare_stores

TXN_TIMEOUT_MS = 900_000  # the broker's default transaction.max.timeout.ms: one big write
Slots = list[dict[bytes, bytes]]


def changelog_of(settings: Settings, slots: int) -> str:
    """The identity store's changelog in the layout of ``slots`` (the single layout's
    store is ``identity``, the partitioned one's ``ident``: tables/state.py)."""
    layout = settings.model_copy(update={"identity_partitions": slots})
    return declare_stores(layout)[0][0].topic


# --- reading ---------------------------------------------------------------------------------


def read_state(settings: Settings, topic: str) -> Slots:
    """Every partition of a changelog as of now (read_committed): the last value of each
    key, tombstones applied; [] when the topic does not exist."""
    if partition_count(admin_client(settings), topic) is None:
        return []
    consumer = reader(settings, "identity-migrate")
    try:
        parts = partitions_of(consumer, topic)
        slots: Slots = [{} for _ in parts]

        def apply(batch: list[Message]) -> None:
            for msg in batch:
                key, value, slot = msg.key() or b"", msg.value(), msg.partition() or 0
                if value is None:
                    slots[slot].pop(key, None)
                else:
                    slots[slot][key] = value

        consumer.assign([TP(topic, p, OFFSET_BEGINNING) for p in parts])
        read_to_end(consumer, apply, None, topic)
        return slots
    except KafkaException as exc:
        raise BrokerError(f"cannot read {topic}: {exc}") from exc
    finally:
        consumer.close()


def to_place(source: Slots, slots: int) -> Slots:
    """The markers whose home key is needed: all of them for several slots; for one,
    only those found with different values in two source slots (copies written to
    every slot by an earlier migration: the home slot's is the one kept up to date)."""
    if slots > 1:
        return source
    seen: dict[bytes, bytes] = {}
    differing: dict[bytes, bytes] = {}
    for store in source:
        for key, value in store.items():
            if key.startswith(MARKER) and seen.setdefault(key, value) != value:
                differing[key] = value
    return [differing]


def read_homes(settings: Settings, slots: Slots) -> dict[str, str]:
    """Each marker's home key, from its origin record (the ingestion record its event
    came from: its strongest identifier). A marker whose record is gone (retention) or
    unreadable is missing here: it goes to every slot."""
    wanted: dict[tuple[str, int], dict[int, str]] = {}
    for store in slots:
        for key, value in store.items():
            if key.startswith(MARKER) and (origin := marker_origin(value)):
                try:
                    topic, partition, offset = parse_origin(origin)
                except ValueError:
                    continue
                wanted.setdefault((topic, partition), {})[offset] = key[2:].decode()
    if not wanted:
        return {}
    serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                      SchemaCatalog.load(settings.schemas_dir))
    homes: dict[str, str] = {}

    def apply(batch: list[Message]) -> None:
        for msg in batch:
            origin = (msg.topic() or "", msg.partition() or 0)
            event_id = wanted[origin].get(msg.offset() or 0)
            if event_id is not None and (home := _home(serde, msg.value())):
                homes[event_id] = home

    consumer = reader(settings, "identity-migrate-origins")
    try:
        consumer.assign([TP(t, p, min(offsets)) for (t, p), offsets in wanted.items()])
        read_to_end(consumer, apply, None, "the origins of the dedup markers")
    except KafkaException as exc:
        raise BrokerError(f"cannot read the markers' origin records: {exc}") from exc
    finally:
        consumer.close()
    return homes


def _home(serde: AvroSerde, value: bytes | None) -> str | None:
    try:
        keys = identifier_keys(Envelope.from_avro(serde.decode(value)[1]).identifiers)
    except (DecodeError, ValueError, KeyError, TypeError):
        return None  # not an envelope we can read: the marker goes to every slot
    return keys[0] if keys else None


# --- writing -------------------------------------------------------------------------------


def changelog_spec(topic: str, partitions: int) -> TopicSpec:
    """As tables/state.py's StateStore.claim declares a changelog."""
    return TopicSpec(topic, partitions, None, "NONE",
                     {"cleanup.policy": "compact", "max.message.bytes": str(STAGE_MAX_BYTES)})


def grow(admin: AdminClient, topic: str, partitions: int) -> None:
    try:
        admin.create_partitions([NewPartitions(topic, partitions)])[topic].result(TIMEOUT_S)
    except KafkaException as exc:
        raise BrokerError(f"cannot raise {topic} to {partitions} partitions: {exc}") from exc


def ensure_at_least(settings: Settings, spec: TopicSpec) -> None:
    admin = admin_client(settings)
    have = partition_count(admin, spec.name)
    if have is None:
        ensure_topics(admin, [spec], settings.kafka_replication_factor)
    elif have < spec.partitions:
        grow(admin, spec.name, spec.partitions)


def identity_spec(settings: Settings, slots: int) -> TopicSpec:
    target = settings.model_copy(update={"identity_partitions": slots})
    name = settings.topic(IDENTITY_INPUT)
    return next(s for s in declared_topics(target) if s.name == name)


def ensure_identity_topic(settings: Settings, slots: int) -> None:
    """internal.identity with exactly ``slots`` partitions: created, or grown (keeping
    the drained partitions' committed offsets); waits out a deletion still under way."""
    spec = identity_spec(settings, slots)
    admin = admin_client(settings)
    deadline = time.monotonic() + TIMEOUT_S
    while (have := partition_count(admin, spec.name)) != slots:
        if have is None:
            ensure_topics(admin, [spec], settings.kafka_replication_factor)
        elif have < slots:
            grow(admin, spec.name, slots)
        if time.monotonic() > deadline:
            raise BrokerError(f"{spec.name} has {have} partitions, not {slots}, after "
                              f"{TIMEOUT_S} s: is its deletion still under way? Run the "
                              "migration again (it is idempotent)")
        time.sleep(1.0)


def check_identity_topic(settings: Settings, slots: int) -> None:
    """Before anything is written: internal.identity can be given exactly ``slots``."""
    topic = settings.topic(IDENTITY_INPUT)
    have = partition_count(admin_client(settings), topic)
    if have is not None and have > slots:
        raise MigrationError(
            f"topic {topic} has {have} partitions and the target layout needs exactly "
            f"{slots}; Kafka cannot remove partitions. It holds nothing to keep once the "
            f"deployment is drained (--check-drained): delete it (kafka-topics.sh "
            f"--delete --topic {topic}) and run this migration again, which creates it")


def write_changelog(settings: Settings, topic: str, new: Slots, old: Slots) -> int:
    """One transaction: tombstones for keys ``old`` has and ``new`` lacks, values that
    changed; partitions past ``new``'s are emptied. Returns the records written."""
    producer = Producer({**settings.kafka_client_config(), "log_level": 3,
                         "transactional.id": f"{settings.app_id}-identity-migrate",
                         "transaction.timeout.ms": TXN_TIMEOUT_MS, "linger.ms": 20,
                         "message.max.bytes": STAGE_MAX_BYTES + 65_536})
    written = 0
    try:
        producer.init_transactions(TIMEOUT_S)
        producer.begin_transaction()
        for p in range(max(len(new), len(old))):
            after, before = new[p] if p < len(new) else {}, old[p] if p < len(old) else {}
            records = [(k, None) for k in before if k not in after] + [
                (k, v) for k, v in after.items() if before.get(k) != v]
            for key, value in records:
                _produce(producer, topic, key, value, p)
            written += len(records)
        producer.commit_transaction(TXN_TIMEOUT_MS / 1000)
    except KafkaException as exc:
        raise BrokerError(f"writing {topic} failed (nothing of it is visible; run the "
                          f"migration again): {exc}") from exc
    return written


def _produce(producer: Producer, topic: str, key: bytes, value: bytes | None,
             partition: int) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, partition=partition)
            producer.poll(0)
            return
        except BufferError:  # the local queue is full: let librdkafka send some first
            producer.poll(0.5)


# --- the steps -------------------------------------------------------------------------------


@dataclass
class Plan:
    source: Slots
    target: Slots
    homes: dict[str, str]

    def home_of(self) -> HomeOf:
        return lambda event_id, _: self.homes.get(event_id)


def plan(settings: Settings, slots: int) -> Plan:
    source = read_state(settings, changelog_of(settings, settings.identity_partitions))
    homes = read_homes(settings, to_place(source, slots))
    return Plan(source, reslot([s.items() for s in source], slots,
                               lambda eid, _: homes.get(eid)), homes)


def migrate(settings: Settings, slots: int, dry_run: bool = False,
            say: Callable[[str], None] = print) -> Plan:
    """The whole migration (see the module's docstring); ``dry_run`` writes nothing."""
    if slots == settings.identity_partitions:
        raise MigrationError(f"ACTIVATION_IDENTITY_PARTITIONS is {slots} already: set it "
                             "to the deployment's current layout and --to to the new one")
    require_stopped(settings)
    if problems := drain_problems(settings):
        raise MigrationError("the deployment is not drained (run the workers with "
                             "ACTIVATION_SCREENING=off until it is): " + "; ".join(problems))
    check_identity_topic(settings, slots)
    p = plan(settings, slots)
    topic = changelog_of(settings, slots)
    say(f"source: {settings.identity_partitions} slot(s), {family_counts(p.source)}")
    say(f"target: {slots} slot(s) on {topic}, {family_counts(p.target)}; markers placed "
        f"by their origin: {len(p.homes)}")
    if dry_run:
        return p
    ensure_at_least(settings, changelog_spec(topic, slots))
    written = write_changelog(settings, topic, p.target, read_state(settings, topic))
    ensure_identity_topic(settings, slots)
    commit_input_ends(settings, settings.topic(IDENTITY_INPUT))
    say(f"wrote {written} records to {topic}; start the workers with "
        f"ACTIVATION_IDENTITY_PARTITIONS={slots}")
    return p


def check(settings: Settings, slots: int, say: Callable[[str], None] = print) -> list[str]:
    """After a migration, before the workers start: the destination holds the source's
    keys (per family), each where it belongs, and the invariant of design 2.2 holds."""
    p = plan(settings, slots)
    written = read_state(settings, changelog_of(settings, slots))[:slots]
    want, have = family_counts(p.target), family_counts(written)
    say(f"source {family_counts(p.source)}; destination {have}")
    problems = [f"family {f}: {have.get(f, 0)} keys, expected {n}"
                for f, n in want.items() if have.get(f, 0) != n]
    problems += misplaced(written, p.home_of())[:20]
    for slot, (want_slot, have_slot) in enumerate(zip(p.target, written, strict=False)):
        differ = {k for k in want_slot.keys() | have_slot.keys()
                  if k[:1] != b"\x00" and want_slot.get(k) != have_slot.get(k)}
        if differ:
            problems.append(f"slot {slot}: {len(differ)} keys differ from the re-slotted "
                            f"source, e.g. {sorted(differ)[0][:60]!r}")
    problems += invariant_problems({k: v for s in written for k, v in s.items()})
    if len(written) < slots:
        problems.append(f"the destination changelog has {len(written)} of {slots} slots")
    return problems
