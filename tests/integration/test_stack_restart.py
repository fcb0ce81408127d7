"""Stopping and starting the stack keeps topics, messages and schemas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.records import Envelope, Identifiers
from streams.schemas import SchemaCatalog
from streams.serde import AvroSerde, RegistryClient
from streams.settings import Settings, load_settings
from streams.topics import ENVELOPE, declared_topics, ensure_topics
from tests.support.stack import StackHandle, free_ports, start_local, wait_ready


@pytest.fixture
def private_stack(stack: StackHandle, tmp_path: Path) -> Iterator[StackHandle]:
    """A stack of its own, so restarting it disturbs no other test or worker."""
    if not stack.kind.startswith("local"):
        yield stack  # testcontainers: restart the session's containers
        return
    handle = start_local(tmp_path / "stack", free_ports(3))  # type: ignore[arg-type]
    wait_ready(handle)
    yield handle
    handle.stop()  # a fresh home: this fixture started it, so it stops it


def read_all(settings: Settings, topic: str, partitions: int) -> list[bytes]:
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"r{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values: list[bytes] = []
    try:
        for _ in range(30):
            batch = consumer.consume(100, timeout=1.0)
            values += [m.value() for m in batch if m.error() is None]
            if not batch and values:
                break
    finally:
        consumer.close()
    return values


def test_topics_messages_and_schemas_survive_a_restart(private_stack: StackHandle) -> None:
    settings = load_settings(
        kafka_bootstrap_servers=private_stack.bootstrap,
        schema_registry_url=private_stack.registry_url,
        topic_prefix="restart.",
        ingest_partitions=2,
    )
    specs = declared_topics(settings)
    ensure_topics(AdminClient(settings.kafka_client_config()), specs, 1)
    serde = AvroSerde(
        RegistryClient(settings.registry_client_config()), SchemaCatalog.load(settings.schemas_dir)
    )
    encode = serde.encoder(specs[0].value_subject, ENVELOPE, register=True)
    now = datetime.now(UTC)
    sent = [
        Envelope(f"e{i}", "page_viewed", now, now, "kafka:test", Identifiers(customer_id=f"c{i}"))
        for i in range(20)
    ]
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True})
    for env in sent:
        producer.produce(specs[0].name, key=env.key.encode(), value=encode(env.to_avro()))
    assert producer.flush(30) == 0

    private_stack.restart()

    admin = AdminClient(settings.kafka_client_config())
    assert {s.name for s in specs} <= set(admin.list_topics(timeout=30).topics)
    fresh = RegistryClient(settings.registry_client_config())  # no cached ids
    latest = fresh.raw.get_latest_version(specs[0].value_subject)
    assert latest.schema_id == encode.schema_id
    values = read_all(settings, specs[0].name, 2)
    decoder = AvroSerde(fresh, SchemaCatalog.load(settings.schemas_dir))
    got = sorted(Envelope.from_avro(decoder.decode(v)[1]).event_id for v in values)
    assert got == sorted(e.event_id for e in sent)
