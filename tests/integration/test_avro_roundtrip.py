"""Avro records cross the real broker in the Confluent wire format and come back intact."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from streams.codecs import ConfluentAvroCodec
from streams.errors import TopicConfigError
from streams.records import Envelope, Identifiers
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import ENVELOPE, declared_topics, ensure_topics


def test_envelope_roundtrip_through_broker_and_registry(
    settings: Settings, admin: AdminClient, serde: AvroSerde, uid: str
) -> None:
    specs = declared_topics(settings)
    created = ensure_topics(admin, specs, settings.kafka_replication_factor)
    assert {s.name for s in specs} == set(created)
    assert ensure_topics(admin, specs, settings.kafka_replication_factor) == []  # idempotent
    # The profile topic's partition count places profiles: a changed setting is refused.
    fewer = declared_topics(settings.model_copy(
        update={"profile_partitions": settings.profile_partitions - 1}))
    with pytest.raises(TopicConfigError, match="ACTIVATION_PROFILE_PARTITIONS"):
        ensure_topics(admin, fewer, settings.kafka_replication_factor)

    ingest = specs[0]
    encode = serde.encoder(ingest.value_subject, ENVELOPE, register=True)
    now = datetime.now(UTC)
    sent = Envelope(
        event_id=str(uuid.uuid4()),
        event_name="purchase_completed",
        event_time=now,
        received_time=now,
        source="kafka:test",
        identifiers=Identifiers.from_clear(customer_id="cust_1", email=" Ann@Example.com "),
        properties={"coupon": "SPRING", "items": 2},
        payload={
            "order_id": "ord_1",
            "order_value": Decimal("149.99"),
            "currency": "EUR",
            "product_ids": ["p1", "p2"],
        },
    )
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True})
    producer.produce(ingest.name, key=sent.key.encode(), value=encode(sent.to_avro()))
    assert producer.flush(30) == 0

    consumer = Consumer(
        {**settings.kafka_client_config(), "group.id": f"g{uid}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([ingest.name])
    try:
        msg = None
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None and msg.error() is None
        schema_id, record = serde.decode(msg.value())
    finally:
        consumer.close()
    assert schema_id == encode.schema_id
    got = Envelope.from_avro(record)
    assert got.event_id == sent.event_id
    assert got.event_time == sent.event_time
    assert got.identifiers == sent.identifiers
    assert got.properties == sent.properties
    assert got.payload is not None and got.payload["order_value"] == Decimal("149.99")
    assert msg.key() == sent.key.encode()


def test_faust_codec_writes_and_reads_the_wire_format(
    settings: Settings, admin: AdminClient, serde: AvroSerde
) -> None:
    """The codec Faust topics use is the same wire format as the plain serde."""
    specs = declared_topics(settings)
    ensure_topics(admin, specs, settings.kafka_replication_factor)
    serde.encoder(specs[0].value_subject, ENVELOPE, register=True)
    codec = ConfluentAvroCodec(serde, specs[0].value_subject, ENVELOPE)
    now = datetime.now(UTC)
    sent = Envelope("e-codec", "page_viewed", now, now, "kafka:test", Identifiers(anonymous_id="a"))
    data = codec.dumps(sent.to_avro())
    assert data[0] == 0  # magic byte: readable by any Confluent-compatible consumer
    assert Envelope.from_avro(serde.decode(data)[1]) == sent
    assert Envelope.from_avro(codec.loads(data)) == sent
