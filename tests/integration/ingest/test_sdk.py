"""The SDK against a real gateway: events arrive once, refusals are raised, not retried."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from activation_client import AsyncClient, Client, RejectedError, RetryPolicy, make_event
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


async def _read_message(reader: asyncio.StreamReader) -> bytes | None:
    """One whole HTTP/1.1 message (head and Content-Length body); None once the peer closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # an idle keep-alive connection being closed
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        assert name.strip().lower() != b"transfer-encoding", "chunked bodies are not relayed"
    return head + await reader.readexactly(length)


class DroppingProxy:
    """TCP proxy that loses the gateway's answer to the requests numbered in ``drop``.

    Every request is forwarded and its whole answer read first, so the gateway has
    written the event; for a dropped one the client's connection is then closed with
    no answer, which is what a client sees when a load balancer or network fails.
    """

    def __init__(self, upstream: str, drop: set[int]) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._drop = drop
        self.requests = 0
        self.dropped = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> DroppingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await _read_message(reader)) is not None:
                self.requests += 1
                answer = await self._forward(request)
                if self.requests in self._drop:
                    self.dropped += 1
                    return  # closes the connection below without answering
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    async def _forward(self, request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(*self._upstream)
        try:
            writer.write(request)
            await writer.drain()
            answer = await _read_message(reader)
            assert answer is not None, "the gateway closed without answering"
            return answer
        finally:
            writer.close()
            await writer.wait_closed()


def _purchase(customer: str) -> dict[str, Any]:
    """A hand-written event with no event_id: the SDK must give it one before sending."""
    return {"event": "purchase_completed", "timestamp": datetime.now(UTC).isoformat(),
            "customer_id": customer,
            "properties": {"order_id": f"o-{customer}", "order_value": 10, "currency": "EUR"}}


async def test_a_lost_answer_is_retried_without_a_second_event(
    gateway: Running, serde: AvroSerde
) -> None:
    # Requests 1, 3 and 5 (the first attempt of send, send_batch and the queued batch)
    # reach the gateway, which writes them, but their answers never reach the client.
    async with DroppingProxy(gateway.url, drop={1, 3, 5}) as proxy:

        def sync_part() -> tuple[dict[str, Any], dict[str, Any], str]:
            with Client(proxy.url, ADMIN_KEY, retry=RetryPolicy(base_delay=0.05)) as client:
                single = client.send(_purchase("c1"))
                batch = client.send_batch([_purchase("c2"), _purchase("c3")])
                queued = client.enqueue(_purchase("c4"))
            assert client.failed == []
            return single, batch, queued

        single, batch, queued = await asyncio.to_thread(sync_part)
    assert (proxy.requests, proxy.dropped) == (6, 3)
    assert single["status"] == "accepted" and batch["accepted"] == 2
    # The retry found the first attempt's events already written.
    assert all(r.get("duplicate") for r in batch["results"])
    sent = [single["event_id"], *batch["event_ids"], queued]
    found = Counter(r["event_id"] for _, r in consume(gateway.settings, serde, 4))
    assert found == Counter(sent)  # each exactly once, nothing else
