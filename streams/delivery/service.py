"""The delivery executor process, wired explicitly: settings, registry, definitions,
control, executor, Kafka side and a loopback listener for probes and metrics.

``python -m streams.delivery run`` (``make executor``). Several can run: they share the
action topics' partitions through their consumer group.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streams.activation.definitions import DefinitionSet
from streams.activation.distribution import DefinitionsFollower
from streams.delivery.control import Control, ControlFollower
from streams.delivery.destinations import missing_secrets
from streams.delivery.executor import Executor
from streams.delivery.kafka import KafkaSide
from streams.delivery.metrics import DeliveryMetrics
from streams.delivery.types import Topics
from streams.errors import ConfigError
from streams.lag import LagWatcher
from streams.schemas import SchemaCatalog
from streams.serde import AvroSerde, Encoder, RegistryClient
from streams.settings import Settings
from streams.topics import (
    ACTION_CHANNELS,
    DEAD_LETTER_RECORD,
    DELIVERY_CONTROL,
    DELIVERY_DEAD_LETTER,
    DELIVERY_LEDGER,
    DELIVERY_OUTCOME_RECORD,
    DELIVERY_OUTCOMES,
    PROFILES,
    action_topic,
    admin_client,
    delivery_topics,
    ensure_topics,
)

log = logging.getLogger(__name__)


@dataclass
class AvroCodec:
    serde: AvroSerde
    outcomes: Encoder
    letters: Encoder

    def command(self, value: bytes) -> dict[str, Any]:
        return self.serde.decode(value)[1]

    def outcome(self, record: dict[str, Any]) -> bytes:
        return self.outcomes(record)

    def dead_letter(self, record: dict[str, Any]) -> bytes:
        return self.letters(record)


def action_topics(settings: Settings, definitions: DefinitionSet | None) -> list[str]:
    """The topics of the channels in force (definitions/channels/; the built-in four's
    before any definitions are published)."""
    if definitions is None:
        return [settings.topic(action_topic(c)) for c in ACTION_CHANNELS]
    return sorted({settings.topic(c.topic_name) for c in definitions.all_channels.values()})


def topics_of(settings: Settings) -> Topics:
    return Topics(settings.topic(DELIVERY_LEDGER), settings.topic(DELIVERY_OUTCOMES),
                  settings.topic(DELIVERY_DEAD_LETTER), settings.topic(DELIVERY_CONTROL),
                  settings.topic(PROFILES), settings.profile_partitions)


def codec_of(settings: Settings, topics: Topics) -> AvroCodec:
    serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                      SchemaCatalog.load(settings.schemas_dir))
    return AvroCodec(serde, serde.encoder(f"{topics.outcomes}-value", DELIVERY_OUTCOME_RECORD),
                     serde.encoder(f"{topics.dead_letters}-value", DEAD_LETTER_RECORD))


def check_secrets(settings: Settings, definitions: DefinitionSet | None) -> None:
    """Fail fast: a destination naming a secret that settings do not hold."""
    if definitions is None:
        return
    missing = missing_secrets(definitions.destinations, set(settings.delivery_secrets))
    if missing:
        lines = "; ".join(f"{d}: {', '.join(names)}" for d, names in missing.items())
        raise ConfigError(f"destinations name secrets missing from ACTIVATION_DELIVERY_SECRETS "
                          f"({lines}); add them as a JSON object of name -> value")


class Service:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = DeliveryMetrics(self.registry)
        self.topics = topics_of(settings)
        self.control = Control()
        self.definitions = DefinitionsFollower(settings)

    def current(self) -> DefinitionSet | None:
        published = self.definitions.current()
        return None if published is None else published.definitions

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        ensure_topics(admin_client(s), delivery_topics(s), s.kafka_replication_factor)
        codec = codec_of(s, self.topics)
        self.definitions.start()
        follower = ControlFollower(s, self.topics.control, self.control)
        follower.start()
        await self._await_loaded(follower)
        check_secrets(s, self.current())
        loop = asyncio.get_running_loop()
        executor = Executor(s, self.current, self.control.is_disabled, codec, self.topics,
                            self.metrics)
        kafka = KafkaSide(s, executor, loop, lambda: action_topics(s, self.current()),
                          self.topics.ledger, self.metrics)
        executor.bind(kafka)
        kafka.start()
        lag = LagWatcher(s, {"delivery": (s.delivery_group, action_topics(s, self.current()))},
                         lambda _, n: self.metrics.lag.set(n))
        lag.start()
        runner = await self._serve(kafka)
        # What start-up built lives as long as the process (modules, clients, schemas,
        # definitions). Frozen, a full collection no longer walks it: those walks were
        # most of the executor's garbage-collection time, and each stalled every lane.
        gc.collect()
        gc.freeze()
        try:
            while not stop.is_set() and kafka.failed is None:
                self._gauges(executor)
                await asyncio.sleep(0.5)
        finally:
            kafka.stop()
            lag.stop()
            await executor.close()
            follower.stop()
            self.definitions.stop()
            await runner.cleanup()
        if kafka.failed is not None:
            raise kafka.failed

    async def _await_loaded(self, follower: ControlFollower) -> None:
        # Neither a command routed by no definitions nor one sent to a destination
        # disabled before this start: read both topics to their ends first.
        for what, loaded in (("definitions", self.definitions.loaded),
                             ("disabled destinations", follower.loaded)):
            while not await asyncio.to_thread(loaded.wait, 30):
                log.warning("still reading the %s topic before delivering anything", what)

    def _gauges(self, executor: Executor) -> None:
        executor.refresh(datetime.now(UTC))
        self.metrics.waiting.set(executor.waiting)
        for did, lane in executor.lanes.items():
            self.metrics.queued.labels(did).set(lane.queue.qsize())
            self.metrics.in_flight.labels(did).set(lane.in_flight)
            self.metrics.breaker_open.labels(did).set(
                int(lane.breaker.state(time.monotonic()) == "open"))
            self.metrics.disabled.labels(did).set(int(self.control.is_disabled(did)))

    async def _serve(self, kafka: KafkaSide) -> web.AppRunner:
        async def healthz(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def readyz(_: web.Request) -> web.Response:
            ready = kafka.ever_assigned.is_set() and kafka.failed is None
            return web.json_response({"ready": ready}, status=200 if ready else 503)

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        s = self.settings
        await web.TCPSite(runner, s.delivery_metrics_host, s.delivery_metrics_port).start()
        log.info("executor probes and metrics on http://%s:%d", s.delivery_metrics_host,
                 s.delivery_metrics_port)
        return runner


def run_forever(settings: Settings) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await Service(settings).run(stop)

    asyncio.run(main())
