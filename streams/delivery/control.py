"""Disabled destinations, shared by every executor through the compacted topic
``delivery.control`` (key: destination id; value: ``{"disabled", "reason", "at", "by"}``).

A destination answering 410 Gone is disabled by the executor that saw it (in the
transaction of that outcome); ``scripts/delivery enable <id>`` enables it again and
``disable`` stops one by hand. Every executor follows the topic from its start, so all
agree within a second. While disabled, its commands are dead-lettered at once with
reason ``destination_disabled`` (re-drive them once it is back).
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from streams.errors import BrokerError
from streams.settings import Settings

log = logging.getLogger(__name__)


class Control:
    """Which destinations are disabled, as the executor knows it now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._disabled: dict[str, dict[str, object]] = {}

    def is_disabled(self, destination: str) -> bool:
        with self._lock:
            return destination in self._disabled

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if not key:
            return
        doc = orjson.loads(value) if value else {"disabled": False}
        with self._lock:
            if doc.get("disabled"):
                self._disabled[key.decode()] = doc
            else:
                self._disabled.pop(key.decode(), None)

    def disabled(self) -> dict[str, dict[str, object]]:
        with self._lock:
            return dict(self._disabled)


class ControlFollower:
    """Reads ``delivery.control`` from its start, then follows it (daemon thread)."""

    def __init__(self, settings: Settings, topic: str, control: Control) -> None:
        self._settings, self._topic, self._control = settings, topic, control
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delivery-control",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer = Consumer({**self._settings.kafka_client_config(),
                                 "group.id": f"control-{uuid.uuid4()}",
                                 "enable.auto.commit": False})
            try:
                consumer.assign([TopicPartition(self._topic, 0, OFFSET_BEGINNING)])
                while not self._stop.is_set():
                    msg = consumer.poll(0.5)
                    if msg is not None and msg.error() is None:
                        self._control.apply(msg.key(), msg.value())
            except KafkaException as exc:
                log.warning("delivery control topic unavailable, retrying: %s", exc)
                self._stop.wait(2.0)
            finally:
                consumer.close()


def write_control(settings: Settings, topic: str, destination: str, disabled: bool,
                  reason: str, by: str) -> None:
    """Disable or enable ``destination`` for every executor (the CLI's enable/disable)."""
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True})
    value = orjson.dumps({"disabled": disabled, "reason": reason, "at": datetime.now(UTC),
                          "by": by})
    producer.produce(topic, value, destination.encode())
    if producer.flush(30) != 0:
        raise BrokerError(f"could not write to {topic} within 30 s")
