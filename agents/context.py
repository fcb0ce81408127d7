"""What a worker's stages share, built once by :func:`agents.worker.build` and passed
to each stage's wiring: no module of ``agents/`` holds settings, stores, clients or
metrics of its own at import time, so a test (or a second app in one process) builds
its own worker from its own settings.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from agents.metrics import ActivationMetrics, StreamMetrics
from streams.serde import AvroSerde, Encoder
from streams.settings import Settings
from streams.topics import DEAD_LETTER, DEAD_LETTER_RECORD, IDENTITY_INPUT, PROFILES
from tables.state import StateStore

if TYPE_CHECKING:
    from streams.app import ActivationApp

MAX_BACKOFF_S = 10.0


@dataclass
class Worker:
    """The app, its settings, its one metrics registry, the Avro serde, the stores, and
    the two internal topics between the stages."""

    settings: Settings
    app: ActivationApp
    registry: CollectorRegistry
    serde: AvroSerde
    identity_states: list[StateStore]  # the identity stage's, one per slot
    profile_states: list[StateStore]  # the profile stage's, one per partition
    metrics: StreamMetrics = field(init=False)
    activation_metrics: ActivationMetrics = field(init=False)
    identity_topic: Any = field(init=False)  # the identity stage's input (Faust topic)
    profiles_topic: Any = field(init=False)  # the profile stage's input (Faust topic)
    _letters: list[Encoder] = field(default_factory=list, init=False)
    # The ingestion partitions the screening thread owns (replaced whole on a rebalance).
    screening_partitions: list[int] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.metrics = StreamMetrics(self.registry)
        self.activation_metrics = ActivationMetrics(self.registry)
        raw: dict[str, Any] = dict(internal=True, key_type=bytes, value_type=bytes,
                                   key_serializer="raw", value_serializer="raw")
        self.identity_topic = self.app.topic(self.topic(IDENTITY_INPUT),
                                             partitions=self.slots, **raw)
        self.profiles_topic = self.app.topic(self.topic(PROFILES),
                                             partitions=self.partitions, **raw)

    @property
    def partitions(self) -> int:
        """The profile stage's partition count."""
        return self.settings.profile_partitions

    @property
    def slots(self) -> int:
        """The identity stage's partition count (1: today's single-owner layout)."""
        return self.settings.identity_partitions

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def dead_letter_encoder(self) -> Encoder:
        """Resolved once (a registry lookup; the schema workflow registers the schema)."""
        if not self._letters:
            subject = f"{self.topic(DEAD_LETTER)}-value"
            self._letters.append(self.serde.encoder(subject, DEAD_LETTER_RECORD))
        return self._letters[0]

    async def retrying(self, stage: str, attempt: int) -> int:
        """Back off after a transient error; the partition waits, nothing is dropped."""
        self.metrics.retries.labels(stage).inc()
        await asyncio.sleep(min(MAX_BACKOFF_S, 0.2 * 2**attempt))
        return attempt + 1
