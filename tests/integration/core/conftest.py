"""Fixtures for the stream-core tests: topics, registered schemas, worker factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from streams.serde import AvroSerde, Encoder
from streams.settings import Settings
from streams.topics import DEAD_LETTER_RECORD, ENVELOPE, declared_topics, ensure_topics
from tests.integration.core.harness import Worker, free_port

# Both identity layouts: one partition (one owner), and three slots (the protocol).
LAYOUTS = pytest.mark.parametrize("core", [1, 3], indirect=True, ids=["single", "slots3"])
# A test of the single layout only (e.g. a rolling upgrade of a deployment created then).
SINGLE = pytest.mark.parametrize("core", [1], indirect=True, ids=["single"])


@dataclass
class CoreStack:
    settings: Settings
    ingest: str
    dead_letter: str
    encode: Encoder


@pytest.fixture
def core(
    stack_settings: Callable[..., Settings], admin: AdminClient, serde: AvroSerde,
    request: pytest.FixtureRequest,
) -> CoreStack:
    """Topics and schemas of a fresh deployment (unique prefix), as the schema workflow
    would have registered them. Parametrized indirectly, its parameter is the identity
    stage's partition count (by default the settings' default: the partitioned layout)."""
    slots = getattr(request, "param", Settings.model_fields["identity_partitions"].default)
    settings = stack_settings(worker_web_port=free_port(), ordering_window=timedelta(seconds=5),
                              identity_partitions=slots)
    specs = {s.name: s for s in declared_topics(settings)}
    ensure_topics(admin, specs.values(), settings.kafka_replication_factor)
    ingest, dead_letter = settings.topic("events.ingest"), settings.topic("events.deadletter")
    encode = serde.encoder(specs[ingest].value_subject, ENVELOPE, register=True)
    serde.encoder(specs[dead_letter].value_subject, DEAD_LETTER_RECORD, register=True)
    return CoreStack(settings, ingest, dead_letter, encode)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start workers (subprocesses); every one is stopped at the end of the test."""
    started: list[Worker] = []

    def make(settings: Settings, **overrides: Any) -> Worker:
        if overrides:
            settings = settings.model_copy(update=overrides)
        worker = Worker(settings, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker.start()

    yield make
    for worker in started:
        worker.stop()
