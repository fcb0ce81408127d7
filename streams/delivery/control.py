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
from datetime import UTC, datetime

import orjson
from confluent_kafka import Producer

from streams.errors import BrokerError
from streams.follower import Follower
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
        try:
            doc = orjson.loads(value) if value else {"disabled": False}
        except orjson.JSONDecodeError:  # not ours: skipped, the others still apply
            log.warning("ignoring a malformed delivery.control record for %r", key)
            return
        with self._lock:
            if doc.get("disabled"):
                self._disabled[key.decode()] = doc
            else:
                self._disabled.pop(key.decode(), None)

    def disabled(self) -> dict[str, dict[str, object]]:
        with self._lock:
            return dict(self._disabled)


class ControlFollower:
    """Reads ``delivery.control`` from its start, then follows it (streams/follower.py)."""

    def __init__(self, settings: Settings, topic: str, control: Control) -> None:
        self._follower = Follower(settings, topic, control.apply, "delivery-control")
        self.loaded = self._follower.loaded

    def start(self) -> None:
        self._follower.start()

    def stop(self) -> None:
        self._follower.stop()


def control_value(disabled: bool, reason: str, at: datetime, by: str = "executor") -> bytes:
    """A ``delivery.control`` record: a destination disabled (or enabled again)."""
    return orjson.dumps({"disabled": disabled, "reason": reason, "at": at, "by": by})


def write_control(settings: Settings, topic: str, destination: str, disabled: bool,
                  reason: str, by: str) -> None:
    """Disable or enable ``destination`` for every executor (the CLI's enable/disable)."""
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True})
    producer.produce(topic, control_value(disabled, reason, datetime.now(UTC), by),
                     destination.encode())
    if producer.flush(30) != 0:
        raise BrokerError(f"could not write to {topic} within 30 s")
