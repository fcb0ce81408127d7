"""Nothing is acknowledged that Kafka did not persist: unreachable services give 503."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from ingest.auth import ADMIN, BOOTSTRAP_ID, KeyRecord, KeyTable, hash_key
from ingest.metrics import Metrics
from ingest.sink import EventSink
from streams.settings import Settings
from tests.integration.ingest.conftest import ADMIN_KEY, Running

EVENT = {"event": "page_viewed", "customer_id": "c1"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keys(settings: Settings) -> KeyTable:
    pepper = settings.api_key_pepper.get_secret_value()
    table = KeyTable(pepper)
    table.apply(KeyRecord(BOOTSTRAP_ID, hash_key(ADMIN_KEY, pepper), (ADMIN,)), BOOTSTRAP_ID)
    return table


async def _post(running: Running) -> tuple[int, dict[str, str]]:
    answer = await running.client.post("/v1/events", headers=running.auth(),
                                       json={**EVENT, "timestamp": datetime.now(UTC).isoformat()})
    return answer.status_code, dict(answer.headers)


async def test_broker_unreachable_answers_503(
    start_gateway: Callable[..., Awaitable[Running]], gw_settings: Callable[..., Settings]
) -> None:
    settings = gw_settings(gateway_produce_timeout=2)
    dead = gw_settings(kafka_bootstrap_servers=f"127.0.0.1:{_closed_port()}",
                       gateway_produce_timeout=2)
    sink = EventSink(dead, Metrics(CollectorRegistry()))
    running = await start_gateway(settings, sink=sink, keys=_keys(settings))
    status, headers = await _post(running)
    assert status == 503
    assert int(headers["retry-after"]) >= 1
    ready = await running.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"] is False


async def test_registry_unreachable_answers_503(
    start_gateway: Callable[..., Awaitable[Running]], gw_settings: Callable[..., Settings]
) -> None:
    dead = gw_settings(schema_registry_url=f"http://127.0.0.1:{_closed_port()}/apis/ccompat/v7")
    running = await start_gateway(dead, sink=EventSink(dead, Metrics(CollectorRegistry())),
                                  keys=_keys(dead))
    status, headers = await _post(running)
    assert status == 503
    assert "retry-after" in headers
    assert (await running.client.get("/readyz")).json()["checks"]["registry"] is False
