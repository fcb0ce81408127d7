"""Writes envelopes to the ingestion topic and tells the caller when Kafka has them.

confluent-kafka calls delivery callbacks from ``poll()``; a dedicated thread
polls and hands each result to the event loop with ``call_soon_threadsafe``,
so a request handler simply awaits a future that resolves only once the broker
acknowledged the write (``acks=all`` with idempotence: no duplicates from
librdkafka's own retries, no loss of an acknowledged event). A batch wakes the
event loop once, when its last delivery report arrives: waking it per event (a
self-pipe write each) was the gateway's biggest cost after Avro encoding.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from ingest.errors import Unavailable
from ingest.metrics import Metrics
from streams.errors import RegistryError
from streams.records import Envelope
from streams.schemas import SchemaCatalog
from streams.serde import AvroSerde, Encoder, RegistryClient
from streams.settings import Settings
from streams.topics import ENVELOPE, INGEST

RETRY_AFTER = 2.0


class EventSink:
    """Async facade over one idempotent confluent-kafka producer."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.topic = settings.topic(INGEST)
        self._metrics = metrics
        self._timeout = settings.gateway_produce_timeout.total_seconds()
        self._serde = AvroSerde(RegistryClient(settings.registry_client_config()),
                                SchemaCatalog.load(settings.schemas_dir))
        self._encoder: Encoder | None = None
        self._producer = Producer({
            **settings.kafka_client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "compression.type": "lz4",
            "message.timeout.ms": int(self._timeout * 1000),
        })
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="producer-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, then stop the polling thread."""
        self._producer.flush(timeout)
        self._stop.set()
        self._poller.join(timeout=2)

    @property
    def encoder_ready(self) -> bool:
        return self._encoder is not None

    def encoder(self) -> Encoder:
        """The envelope encoder; looked up lazily so a registry outage is a 503, not a crash."""
        if self._encoder is None:
            try:
                self._encoder = self._serde.encoder(f"{self.topic}-value", ENVELOPE, register=False)
            except RegistryError as exc:
                raise Unavailable(f"schema registry unavailable: {exc}", RETRY_AFTER) from exc
        return self._encoder

    def encode(self, envelope: Envelope) -> tuple[bytes, bytes]:
        """(key, value); an :class:`EncodeError` here means validation missed a rule."""
        return envelope.key.encode(), self.encoder()(envelope.to_avro())

    async def send(self, key: bytes, value: bytes) -> None:
        """Resolve once the broker acknowledged; :class:`Unavailable` otherwise."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        started = time.perf_counter()
        self._produce(key, value, _bridge(loop, future))
        try:
            # librdkafka's message.timeout.ms fires first; this is a backstop.
            await asyncio.wait_for(asyncio.shield(future), self._timeout + 5)
        except TimeoutError as exc:
            raise Unavailable("Kafka did not acknowledge in time", RETRY_AFTER) from exc
        finally:
            self._metrics.produce_seconds.observe(time.perf_counter() - started)

    async def send_many(self, frames: list[tuple[bytes, bytes]]) -> list[Exception | None]:
        """Write every (key, value); per frame None once the broker acknowledged it, else
        the :class:`Unavailable` that says why not. All are attempted whatever happens."""
        loop = asyncio.get_running_loop()
        batch = _Batch(loop, len(frames))
        started = time.perf_counter()
        for index, (key, value) in enumerate(frames):
            try:
                self._produce(key, value, batch.callback(index))
            except Unavailable as exc:
                batch.report(index, exc)
        try:
            await asyncio.wait_for(asyncio.shield(batch.done), self._timeout + 5)
        except TimeoutError:
            pass  # a backstop, as in send(): reports still missing become timeouts
        finally:
            elapsed = time.perf_counter() - started
            for _ in frames:
                self._metrics.produce_seconds.observe(elapsed)
        return batch.outcomes()

    def _produce(self, key: bytes, value: bytes, callback: Callable[..., None]) -> None:
        for _ in range(2):
            try:
                self._producer.produce(self.topic, key=key, value=value, on_delivery=callback)
                return
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain once
            except KafkaException as exc:
                raise Unavailable(f"Kafka refused the write: {exc}", RETRY_AFTER) from exc
        raise Unavailable("producer queue is full", RETRY_AFTER)

    def reachable(self, timeout: float = 2.0) -> bool:
        """Broker answers metadata requests and the ingest topic exists."""
        try:
            meta = self._producer.list_topics(self.topic, timeout=timeout)
        except KafkaException:
            return False
        topic = meta.topics.get(self.topic)
        return topic is not None and topic.error is None

    def registry_ready(self) -> bool:
        try:
            self.encoder()
        except Unavailable:
            return False
        return True


def _bridge(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> Callable[..., None]:
    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        loop.call_soon_threadsafe(_settle, future, err)

    return on_delivery


class _Batch:
    """Delivery reports of one batch, collected on the polling thread; the event loop
    is woken once, when the last one is in."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._results: list[Exception | None] = [None] * size
        self._reported = [False] * size
        self._pending = size
        self.done: asyncio.Future[None] = loop.create_future()
        if size == 0:
            self.done.set_result(None)

    def callback(self, index: int) -> Callable[..., None]:
        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            self.report(index, None if err is None else Unavailable(
                f"Kafka did not persist the event: {err.str()}", RETRY_AFTER))

        return on_delivery

    def report(self, index: int, error: Exception | None) -> None:
        with self._lock:
            if self._reported[index]:
                return
            self._reported[index], self._results[index] = True, error
            self._pending -= 1
            last = self._pending == 0
        if last:
            self._loop.call_soon_threadsafe(_finish, self.done)

    def outcomes(self) -> list[Exception | None]:
        with self._lock:
            return [r if seen else Unavailable("Kafka did not acknowledge in time", RETRY_AFTER)
                    for r, seen in zip(self._results, self._reported, strict=True)]


def _finish(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _settle(future: asyncio.Future[None], err: KafkaError | None) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(Unavailable(f"Kafka did not persist the event: {err.str()}",
                                         RETRY_AFTER))
