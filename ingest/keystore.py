"""The API key store shared by every gateway: a compacted Kafka topic of key records.

Each gateway reads the whole topic at start (no consumer group: every instance
needs every key) and then follows it (streams/follower.py), so a revocation written by
``scripts/apikeys revoke`` takes effect on all gateways within one poll
interval. Values are JSON :class:`KeyRecord` s keyed by key id; revocation
writes ``revoked: true`` (kept for audit), a tombstone deletes a key outright.
"""

from __future__ import annotations

import json
import logging

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from ingest.auth import ADMIN, BOOTSTRAP_ID, SCOPES, KeyRecord, KeyTable, hash_key
from streams.errors import BrokerError
from streams.follower import Follower, read_topic
from streams.settings import Settings
from streams.topics import API_KEYS as KEYS_TOPIC
from streams.topics import TopicSpec, declared_topics, ensure_topics

log = logging.getLogger("ingest.keystore")


def keys_topic_spec(settings: Settings) -> TopicSpec:
    name = settings.topic(KEYS_TOPIC)
    return next(spec for spec in declared_topics(settings) if spec.name == name)


def ensure_keys_topic(settings: Settings) -> None:
    admin = AdminClient(dict(settings.kafka_client_config()))
    ensure_topics(admin, [keys_topic_spec(settings)], settings.kafka_replication_factor, 10.0)


class KeyWriter:
    """Writes key records, waiting for the broker's acknowledgement."""

    def __init__(self, settings: Settings) -> None:
        self._topic = settings.topic(KEYS_TOPIC)
        self._producer = Producer({**settings.kafka_client_config(), "acks": "all",
                                   "enable.idempotence": True, "message.timeout.ms": 10_000})

    def put(self, record: KeyRecord) -> None:
        value = json.dumps(record.to_json()).encode()
        self._send(record.key_id, value)

    def delete(self, key_id: str) -> None:
        self._send(key_id, None)

    def _send(self, key_id: str, value: bytes | None) -> None:
        errors: list[str] = []

        def on_delivery(err: object, _msg: object) -> None:
            if err is not None:
                errors.append(str(err))

        try:
            self._producer.produce(self._topic, key=key_id.encode(), value=value,
                                   on_delivery=on_delivery)
        except (KafkaException, BufferError) as exc:
            raise BrokerError(f"cannot write API key {key_id}: {exc}") from exc
        if self._producer.flush(15) != 0 or errors:
            raise BrokerError(f"API key {key_id} not acknowledged: {errors or 'timeout'}")


def bootstrap_record(settings: Settings) -> KeyRecord | None:
    if settings.bootstrap_api_key is None:
        return None
    key = settings.bootstrap_api_key.get_secret_value()
    digest = hash_key(key, settings.api_key_pepper.get_secret_value())
    return KeyRecord(BOOTSTRAP_ID, digest, SCOPES, name="bootstrap (settings)")


class KeyTopicReader:
    """The key topic read fully at start, then followed (streams/follower.py)."""

    def __init__(self, settings: Settings, table: KeyTable) -> None:
        self._settings = settings
        self._table = table
        self._follower = Follower(settings, settings.topic(KEYS_TOPIC), self._apply,
                                  "key-topic-reader", on_loaded=self._loaded,
                                  prepare=lambda: ensure_keys_topic(settings))
        self.loaded = self._follower.loaded

    def start(self) -> None:
        self._follower.start()

    def stop(self) -> None:
        self._follower.stop()

    def _loaded(self) -> None:
        self._ensure_bootstrap()
        log.info("key store loaded: %d keys", len(self._table.records()))

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        key_id = key.decode()
        try:
            record = None if value is None else KeyRecord.from_json(json.loads(value))
        except (ValueError, KeyError, TypeError):
            log.error("ignoring malformed key record %s", key_id)
            return
        self._table.apply(record, key_id)

    def _ensure_bootstrap(self) -> None:
        wanted = bootstrap_record(self._settings)
        if wanted is None:
            return
        current = self._table.get(BOOTSTRAP_ID)
        if current and current.key_hash == wanted.key_hash and not current.revoked \
                and ADMIN in current.scopes:
            return
        KeyWriter(self._settings).put(wanted)
        self._table.apply(wanted, BOOTSTRAP_ID)


def load_once(settings: Settings, table: KeyTable, timeout: float = 15.0) -> None:
    """Read the key topic up to its current end (the CLI's view; gateways tail instead)."""
    ensure_keys_topic(settings)
    for msg in read_topic(settings, settings.topic(KEYS_TOPIC), timeout, "apikeys-cli"):
        key, value = msg.key(), msg.value()
        if key is not None:
            raw = value.encode() if isinstance(value, str) else value
            record = None if raw is None else KeyRecord.from_json(json.loads(raw))
            table.apply(record, key.decode() if isinstance(key, bytes) else key)
