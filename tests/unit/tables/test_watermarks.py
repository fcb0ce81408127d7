"""A store's changelog watermarks are read again while the broker says the partition is
not ready yet (a changelog created a moment ago), and not for other errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stamina
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from tables.restore import retriable, watermarks


@pytest.fixture(autouse=True)
def no_waits() -> Iterator[None]:
    stamina.set_testing(True, attempts=20)
    yield
    stamina.set_testing(False)


class Consumer:
    """Answers with ``errors`` first, then the watermarks."""

    def __init__(self, *errors: int) -> None:
        self.errors, self.calls = list(errors), 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 3, 42


def test_a_partition_without_a_leader_yet_is_asked_again() -> None:
    consumer = Consumer(KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError._UNKNOWN_PARTITION)
    assert watermarks(consumer, TopicPartition("t", 0)) == (3, 42)  # type: ignore[arg-type]
    assert consumer.calls == 3


def test_other_errors_are_not_retried() -> None:
    consumer = Consumer(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        watermarks(consumer, TopicPartition("t", 0))  # type: ignore[arg-type]
    assert consumer.calls == 1
    assert not retriable(ValueError("not Kafka's"))
