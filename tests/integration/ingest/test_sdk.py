"""The SDK against a real gateway: events arrive once, refusals are raised, not retried."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from activation_client import AsyncClient, Client, RejectedError, make_event
from streams.serde import AvroSerde
from tests.integration.ingest.conftest import ADMIN_KEY, Running, consume


async def test_sync_and_async_clients_deliver(gateway: Running, serde: AvroSerde) -> None:
    events = [make_event("purchase_completed", datetime.now(UTC), customer_id=f"c{i}",
                         properties={"order_id": f"o{i}", "order_value": 10 + i,
                                     "currency": "EUR"}) for i in range(4)]

    def sync_part() -> None:
        with Client(gateway.url, ADMIN_KEY) as client:
            client.send(events[0])
            client.send(events[0])  # a resend: answered from the cache, not written again
            client.enqueue(events[1])
        assert client.failed == []

    await asyncio.to_thread(sync_part)
    async with AsyncClient(gateway.url, ADMIN_KEY) as client:
        await client.send_batch(events[2:3])
        await client.enqueue(events[3])
        with pytest.raises(RejectedError) as info:
            await client.send({**events[0], "event_id": "new-1", "properties": {"order_id": 1}})
        assert info.value.status == 400
    assert client.failed == []
    ids = sorted(r["event_id"] for _, r in consume(gateway.settings, serde, 4))
    assert ids == sorted(e["event_id"] for e in events)
