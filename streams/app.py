"""The one ``faust.App``: broker, RocksDB (rocksdict) state, and our topics.

Start a worker with ``python -m streams.app worker -l info``. Domain agents live in
``agents/<domain>.py`` and tables in ``tables/<domain>.py``; they register themselves
on the ``app`` of this module (found by autodiscovery when the worker starts).
Importing this module needs no broker: connections are opened by the worker.
"""

from __future__ import annotations

import sys
from typing import Any

import faust
from mode.utils.queues import FlowControlEvent
from prometheus_client import CollectorRegistry

from streams.errors import StartupError
from streams.schemas import SchemaCatalog
from streams.serde import AvroSerde, RegistryClient
from streams.settings import Settings, load_settings
from tables.memory import limit_heap_arenas


def faust_broker_credentials(settings: Settings) -> Any:
    if not settings.kafka_security_protocol.startswith("SASL_"):
        return None
    assert settings.kafka_sasl_password is not None  # noqa: S101 - guaranteed by Settings
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=None,
    )


def _resume_keeping_queued(self: FlowControlEvent) -> None:
    self._suspend.clear()
    self._resume.set()


def keep_queued_messages_on_resume() -> None:
    """Stop Faust from dropping fetched records when it resumes flow after recovery.

    Faust resumes the stream partitions, seeks them to their committed offsets while
    the fetcher already runs, then resumes flow control, which empties every stream
    buffer. A record fetched during that seek sits in a buffer, is emptied away, and
    is never fetched again (the position is past it); and Faust's commit tolerates a
    one-offset hole, so its offset was committed unprocessed: a lost event, seen as
    the first record after a restart going missing. Keeping the buffers on resume
    closes the hole. Buffers of revoked partitions are still emptied by Faust's
    explicit ``flow_control.clear()`` on revocation, and records of an old consumer
    generation are still skipped by the stream; at worst a record is delivered twice,
    which the profile stage already treats as a replay. One narrow window stays: Faust
    checks the generation before that seek, not after, so a revocation starting during
    the seek meets a resumed flow (as before this patch) and a record queued after the
    revocation's clear is no longer emptied by the resume but processed; if its offset
    is not committed before the partition moves, the next owner processes it again
    (at-least-once; the profile stage's effects are idempotent). Nothing is lost.
    """
    FlowControlEvent.resume = _resume_keeping_queued  # type: ignore[method-assign]


def read_committed_only() -> None:
    """Make Faust's worker consumer read only committed records.

    The profile stage's input (``internal.profiles``) is written inside the identity
    stage's transactions; a record of an aborted transaction (its writer was fenced or
    crashed) must never be applied. Faust asks for ``read_committed`` only under its own
    exactly-once mode, which would also make its producers transactional; our stages
    manage their transactions themselves (tables/state.py), so only the isolation level
    is changed. Topics written without transactions read the same either way.
    """
    from faust.transport.drivers import aiokafka as driver

    original = driver.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "read_committed", False):
        return

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._isolation_level = "read_committed"  # read when the fetcher starts
        return consumer

    create.read_committed = True  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]


def seek_fresh_partitions_to_start() -> None:
    """After a rebalance, read a partition that has no committed offset from its start.

    Faust seeks every assigned partition to its committed offset, but aiokafka only
    seeks when there is one (above 0): a partition that was already fetched from in
    the previous generation and is assigned again before any commit keeps its fetch
    position. Faust dropped the fetched records on revocation, so they would never be
    delivered, and Faust's next commit (of the records after them) would skip them for
    good: lost events, seen on the profile topic when a second worker joins right
    after the first started. Seeking those partitions to offset 0 re-reads them (the
    stages skip what they applied already: tables/state.py).
    """
    from faust.transport.consumer import Consumer

    original = Consumer.perform_seek
    if getattr(original, "fresh_to_start", False):
        return

    async def perform_seek(self: Any) -> None:
        await original(self)
        for tp in self.assignment():
            if not self._committed_offset.get(tp):  # none (or 0, which Faust keeps as None)
                await self.seek(tp, 0)

    perform_seek.fresh_to_start = True  # type: ignore[attr-defined]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


def faust_assignor_always() -> None:
    """Use Faust's partition assignor, not round-robin, even though no Faust table exists.

    Faust falls back to aiokafka's round-robin assignor when an app has no changelog
    tables (the stages keep their state in tables/state.py). Faust's own shares every
    member's web URL and partitions with the whole group, which the profile API needs
    to forward a request to the worker that owns a profile's partition (agents/api.py).
    """
    from faust.transport.drivers import aiokafka as driver

    original = driver.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "faust_assignor", False):
        return

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._partition_assignment_strategy = [self.app.assignor]  # used at start
        return consumer

    create.faust_assignor = True  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]


class ActivationApp(faust.App):
    """Faust's app, failing fast when a module of ``agents``/``tables`` does not import.

    Faust only logs such an error and starts anyway: a worker without its profile
    stage would run, screen and resolve, and apply nothing, silently.
    """

    def _on_autodiscovery_error(self, name: str) -> None:
        exc = sys.exc_info()[1]
        raise StartupError(f"module {name} failed to import: {exc!r}") from exc


def create_app(settings: Settings) -> faust.App:
    """A Faust app configured entirely from ``settings``."""
    keep_queued_messages_on_resume()
    read_committed_only()
    faust_assignor_always()
    seek_fresh_partitions_to_start()
    # Faust expects its data directory to exist; a fresh checkout has none.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    servers = ";".join(f"kafka://{s}" for s in settings.kafka_bootstrap_servers.split(","))
    return ActivationApp(
        settings.app_id,
        broker=servers,
        broker_credentials=faust_broker_credentials(settings),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_replication_factor=settings.kafka_replication_factor,
        topic_partitions=settings.ingest_partitions,
        table_standby_replicas=settings.standby_replicas,
        web_port=settings.worker_web_port,
        web_bind=settings.worker_web_host,
        # The URL other workers forward profile API requests to (agents/api.py).
        web_host=settings.advertised_host,
        # Committing only what has been fully processed is Faust's default (and it
        # flushes the producer before each commit); acks are explicit so
        # at-least-once holds when a worker dies.
        stream_wait_empty=True,
        producer_acks=-1,
        producer_enable_idempotence=True,
        consumer_auto_offset_reset="earliest",
        # A dead worker's partitions move after the session timeout. Too short a
        # timeout expels a live but CPU-starved worker, which is worse: without
        # transactions its in-flight table writes cannot be fenced (see README).
        broker_session_timeout=settings.worker_session_timeout.total_seconds(),
        broker_heartbeat_interval=1.0,
        broker_commit_interval=1.0,
        consumer_max_fetch_size=settings.worker_fetch_max_bytes,
        autodiscover=["agents", "tables"],
        origin="streams",
    )


settings = load_settings()
app = create_app(settings)
metrics_registry = CollectorRegistry()
serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                  SchemaCatalog.load(settings.schemas_dir))


def main() -> None:
    limit_heap_arenas()  # before librdkafka's, RocksDB's and the restores' threads
    app.main()


if __name__ == "__main__":
    # Run the app of the importable module, not of ``__main__``: agents import
    # ``streams.app`` and must register on the very app the worker starts.
    from streams.app import main as _main

    _main()
