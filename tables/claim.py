"""The Kafka clients of a store's claim and catch-up (``StateStore.claim`` and
``StateStore.catch_up``, tables/state.py explains both): the compacted changelog topic,
the transactional producer whose start fences every earlier owner, and the
read_committed consumer that reads the changelog back into the local database."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaException, Producer

from streams.errors import BrokerError
from streams.settings import Settings
from streams.topics import STAGE_MAX_BYTES, TopicSpec, admin_client, ensure_topics

TXN_TIMEOUT_S = 60.0


def ensure_changelog(settings: Settings, topic: str, partitions: int) -> None:
    ensure_topics(admin_client(settings), [TopicSpec(
        topic, partitions, None, "NONE",
        {"cleanup.policy": "compact", "max.message.bytes": str(STAGE_MAX_BYTES)})],
        settings.kafka_replication_factor)


def transactional_producer(settings: Settings, transactional_id: str) -> Producer:
    """A store's one producer: its writes, what the stage emits and the input offsets
    applied, in transactions. Not yet usable: :func:`fence` starts it."""
    return Producer({
        **settings.kafka_client_config(), "log_level": 3,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": int(TXN_TIMEOUT_S * 1000), "linger.ms": 5,
        "message.max.bytes": STAGE_MAX_BYTES + 65_536})


def fence(producer: Producer, label: str) -> None:
    """Initialise ``producer``'s transactions: this aborts what an earlier owner of its
    transactional id left open, and fences that owner for good."""
    try:
        producer.init_transactions(TXN_TIMEOUT_S)
    except KafkaException as exc:
        raise BrokerError(f"cannot claim state {label}: {exc}") from exc


def restore_consumer(settings: Settings, name: str) -> Consumer:
    """A consumer of the committed changelog records (read_committed), told where a
    partition ends."""
    return Consumer({
        **settings.kafka_client_config(), "log_level": 3,
        "group.id": f"{settings.app_id}-{name}-restore",
        "enable.auto.commit": False, "isolation.level": "read_committed",
        "enable.partition.eof": True,
        # librdkafka prefetches up to 64 MB per consumer by default; a takeover
        # restores several stores at once (one consumer each): two fetches' worth,
        # so the next fetch overlaps the writing of the last.
        "fetch.max.bytes": settings.worker_fetch_max_bytes,
        "max.partition.fetch.bytes": settings.worker_fetch_max_bytes,
        "queued.max.messages.kbytes": max(1024, 2 * settings.worker_fetch_max_bytes
                                          // 1024)})
