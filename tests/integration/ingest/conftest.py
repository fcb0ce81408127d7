"""A gateway running in-process on a free port against the real test broker and registry."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from ingest.app import GATEWAY, create_app
from ingest.auth import KeyTable
from ingest.sink import EventSink
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import ENVELOPE, INGEST, declared_topics, ensure_topics
from tests.support.stack import free_ports

ADMIN_KEY = "local-test-admin-key"


@dataclass
class Running:
    client: httpx.AsyncClient
    settings: Settings
    app: web.Application
    url: str

    def auth(self, key: str = ADMIN_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


async def wait_for(check: Callable[[], Awaitable[bool]], deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while not await check():
        if time.monotonic() > end:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.1)


@pytest.fixture
def gw_settings(stack_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        overrides.setdefault("bootstrap_api_key", ADMIN_KEY)
        overrides.setdefault("gateway_produce_timeout", 5)
        return stack_settings(**overrides)

    return make


@pytest.fixture
def prepared(settings: Settings, admin: AdminClient, serde: AvroSerde) -> Settings:
    """Topics exist and the envelope schema is registered (the schema CLI does it in prod)."""
    specs = declared_topics(settings)
    ensure_topics(admin, specs, 1)
    serde.encoder(specs[0].value_subject, ENVELOPE, register=True)
    return settings


@pytest.fixture
async def start_gateway(
    prepared: Settings,
) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    servers: list[tuple[TestServer, httpx.AsyncClient]] = []

    async def start(settings: Settings, sink: EventSink | None = None,
                    keys: KeyTable | None = None) -> Running:
        app = create_app(settings, sink=sink, keys=keys)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        url = str(server.make_url("")).rstrip("/")
        client = httpx.AsyncClient(base_url=url, timeout=30)
        servers.append((server, client))
        reader = app[GATEWAY].reader
        if reader is not None:
            await wait_for(lambda: asyncio.sleep(0, reader.loaded.is_set()), 30)
        return Running(client, settings, app, url)

    yield start
    for server, client in servers:
        await client.aclose()
        await server.close()


@pytest.fixture
async def gateway(
    start_gateway: Callable[..., Awaitable[Running]], gw_settings: Callable[..., Settings]
) -> Running:
    return await start_gateway(gw_settings())


def consume(settings: Settings, serde: AvroSerde, count: int, deadline: float = 30.0
            ) -> list[tuple[bytes, dict[str, Any]]]:
    """(key, decoded record) of the first ``count`` messages on the ingest topic."""
    topic = settings.topic(INGEST)
    consumer = Consumer({**settings.kafka_client_config(), "group.id": "unused",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    meta = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions])
    found: list[tuple[bytes, dict[str, Any]]] = []
    end = time.monotonic() + deadline
    try:
        while len(found) < count and time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                found.append((msg.key() or b"", serde.decode(msg.value())[1]))
        # Let anything beyond ``count`` (an unwanted duplicate) show up too.
        msg = consumer.poll(1.0)
        while msg is not None:
            if msg.error() is None:
                found.append((msg.key() or b"", serde.decode(msg.value())[1]))
            msg = consumer.poll(0.5)
    finally:
        consumer.close()
    return found


REPO = Path(__file__).resolve().parents[3]


def gateway_env(settings: Settings, port: int) -> dict[str, str]:
    """Environment for ``python -m ingest`` serving ``settings`` on ``port``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVATION_")}
    env.update({
        "ACTIVATION_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "ACTIVATION_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
        "ACTIVATION_TOPIC_PREFIX": settings.topic_prefix,
        "ACTIVATION_INGEST_PARTITIONS": str(settings.ingest_partitions),
        "ACTIVATION_BOOTSTRAP_API_KEY": ADMIN_KEY,
        "ACTIVATION_GATEWAY_PORT": str(port),
        "ACTIVATION_GATEWAY_PRODUCE_TIMEOUT":
            f"PT{int(settings.gateway_produce_timeout.total_seconds())}S",
        "ACTIVATION_GATEWAY_RATE_LIMIT_PER_SECOND": str(settings.gateway_rate_limit_per_second),
        "ACTIVATION_GATEWAY_RATE_LIMIT_BURST": str(settings.gateway_rate_limit_burst),
        "ACTIVATION_LOG_LEVEL": "WARNING",
    })
    return env


@contextmanager
def gateway_process(settings: Settings, deadline: float = 60.0) -> Iterator[str]:
    """``python -m ingest`` as a subprocess; yields its base URL once /readyz answers 200."""
    (port,) = free_ports(1)
    proc = subprocess.Popen([sys.executable, "-m", "ingest"], cwd=REPO,
                            env=gateway_env(settings, port))
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + deadline
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"gateway exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > end:
                raise AssertionError("gateway not ready before the deadline")
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
