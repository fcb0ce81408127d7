"""The live deployment's side of an identity layout migration (streams/identity_migrate.py):
its workers stopped, its internal topics drained, and the workers' group moved to the
end of the new ``internal.identity``."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient

from streams.core.identity_migrate import MigrationError
from streams.errors import BrokerError
from streams.follower import partitions_of, reader
from streams.settings import Settings
from streams.topics import IDENTITY_INPUT, PROFILES, admin_client

TIMEOUT_S = 30.0


def partition_count(admin: AdminClient, topic: str) -> int | None:
    try:
        meta = admin.list_topics(timeout=TIMEOUT_S).topics.get(topic)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka to describe {topic}: {exc}") from exc
    return None if meta is None or meta.error is not None else len(meta.partitions)


def require_stopped(settings: Settings) -> None:
    """The workers' groups (Faust's and screening's) have no members."""
    admin = admin_client(settings)
    groups = [settings.app_id, settings.screen_group]
    for group, future in admin.describe_consumer_groups(groups).items():
        try:
            members = future.result(TIMEOUT_S).members
        except KafkaException as exc:
            raise BrokerError(f"cannot describe consumer group {group}: {exc}") from exc
        if members:
            raise MigrationError(
                f"consumer group {group} has {len(members)} live member(s): stop every "
                "worker of this deployment before migrating (a worker killed without a "
                "clean stop leaves after ACTIVATION_WORKER_SESSION_TIMEOUT)")


def drain_problems(settings: Settings) -> list[str]:
    """What the workers' group has not committed yet on the internal topics (nothing
    but transaction markers may lie past a committed offset)."""
    problems: list[str] = []
    consumer = Consumer({**settings.kafka_client_config(), "group.id": settings.app_id,
                         "enable.auto.commit": False, "log_level": 3,
                         "isolation.level": "read_committed"})
    try:
        for name in (IDENTITY_INPUT, PROFILES):
            topic = settings.topic(name)
            if partition_count(admin_client(settings), topic) is None:
                continue
            parts = [TP(topic, p) for p in partitions_of(consumer, topic)]
            for tp in consumer.committed(parts, timeout=TIMEOUT_S):
                _, high = consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S)
                done = max(tp.offset, 0)
                if done < high and _records_past(settings, tp.topic, tp.partition, done):
                    problems.append(f"{tp.topic}[{tp.partition}]: committed {done}, "
                                    f"end {high}")
    except KafkaException as exc:
        raise BrokerError(f"cannot read the workers' committed offsets: {exc}") from exc
    finally:
        consumer.close()
    return problems


def _records_past(settings: Settings, topic: str, partition: int, offset: int) -> bool:
    """Whether a committed record lies at or past ``offset`` (the first one answers)."""
    probe = reader(settings, "identity-migrate-probe")
    try:
        probe.assign([TP(topic, partition, offset)])
        while True:
            msg = probe.poll(TIMEOUT_S)
            if msg is None:
                raise BrokerError(f"no answer reading {topic}[{partition}] within "
                                  f"{TIMEOUT_S} s")
            err = msg.error()
            if err is None:
                return True
            if err.code() == KafkaError._PARTITION_EOF:
                return False
            raise BrokerError(f"reading {topic}[{partition}] failed: {err}")
    finally:
        probe.close()


def commit_input_ends(settings: Settings, topic: str) -> None:
    """The workers' group committed at the end of each partition of ``topic``: a new
    partition starts at 0, a drained one stays where it was, and an offset left over
    from an earlier topic of that name cannot skip new records."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": settings.app_id,
                         "enable.auto.commit": False, "log_level": 3})
    try:
        ends = [TP(topic, p, consumer.get_watermark_offsets(TP(topic, p), TIMEOUT_S)[1])
                for p in partitions_of(consumer, topic)]
        consumer.commit(offsets=ends, asynchronous=False)
    except KafkaException as exc:
        raise BrokerError(f"cannot commit the workers' offsets on {topic}: {exc}") from exc
    finally:
        consumer.close()
