"""The SDK keeps sending through a broker restart; every event ends up on the topic.

Uses its OWN throwaway stack (scripts/stack in a temporary home, free ports),
never the shared test stack, and the gateway as a real ``python -m ingest``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from activation_client import Client, RetryPolicy, make_event
from streams.schemas import SchemaCatalog
from streams.serde import AvroSerde, RegistryClient
from streams.settings import Settings
from streams.topics import ENVELOPE, declared_topics, ensure_topics
from tests.integration.ingest.conftest import ADMIN_KEY, consume, gateway_process
from tests.support.stack import free_ports, start_local, wait_ready

EVENTS = 40


def test_sdk_survives_broker_restart(
    tmp_path: Path, uid: str, settings_factory: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="activation_client")
    own = start_local(tmp_path / "stack", free_ports(3))  # type: ignore[arg-type]
    try:
        wait_ready(own)
        settings = settings_factory(kafka_bootstrap_servers=own.bootstrap,
                                    schema_registry_url=own.registry_url,
                                    topic_prefix=f"t{uid}.", ingest_partitions=3,
                                    gateway_produce_timeout=3)
        specs = declared_topics(settings)
        ensure_topics(AdminClient(settings.kafka_client_config()), specs, 1)
        serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                          SchemaCatalog.load(settings.schemas_dir))
        serde.encoder(specs[0].value_subject, ENVELOPE, register=True)
        with gateway_process(settings) as url:
            sent: list[str] = []
            errors: list[BaseException] = []

            def sender() -> None:
                policy = RetryPolicy(max_attempts=60, base_delay=0.2, max_delay=2.0)
                try:
                    with Client(url, ADMIN_KEY, retry=policy, timeout=10) as client:
                        for i in range(EVENTS):
                            event = make_event("page_viewed", datetime.now(UTC),
                                               customer_id=f"c{i % 7}")
                            client.send(event)
                            sent.append(event["event_id"])
                            time.sleep(0.2)
                except BaseException as exc:  # reported to the test thread below
                    errors.append(exc)

            thread = threading.Thread(target=sender)
            thread.start()
            deadline = time.monotonic() + 30
            while len(sent) < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
            own.restart()  # down, then up on the same data: the outage is mid-stream
            thread.join(180)
            assert not thread.is_alive() and errors == [], errors
        ids = {r["event_id"] for _, r in consume(settings, serde, EVENTS, deadline=60)}
        assert ids == set(sent) and len(sent) == EVENTS
        retried = [r for r in caplog.records if "answered 503" in r.getMessage()
                   or "unreachable" in r.getMessage()]
        assert retried, "the restart should have made the SDK retry at least once"
    finally:
        own.stop()
