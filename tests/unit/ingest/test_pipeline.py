"""Pipeline decisions with an in-memory sink: idempotent answers, no double write in flight."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from ingest.auth import Principal
from ingest.limits import AnswerCache
from ingest.metrics import Metrics
from ingest.pipeline import Pipeline
from ingest.validation import Policy
from streams.records import Envelope


class MemorySink:
    """Stands in for EventSink in unit tests; the Kafka path is tested in integration."""

    encoder_ready = True

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.gate = asyncio.Event()

    def encode(self, envelope: Envelope) -> tuple[bytes, bytes]:
        return envelope.key.encode(), envelope.event_id.encode()

    async def send(self, key: bytes, value: bytes) -> None:
        await self.gate.wait()
        self.written.append(value)

    async def send_many(self, frames: list[tuple[bytes, bytes]]) -> list[Exception | None]:
        for key, value in frames:
            await self.send(key, value)
        return [None] * len(frames)


def _pipeline(policy: Policy, sink: MemorySink) -> Pipeline:
    return Pipeline(policy, sink, AnswerCache(60), Metrics(CollectorRegistry()))  # type: ignore[arg-type]


def _raw(**extra: Any) -> dict[str, Any]:
    return {"event": "page_viewed", "timestamp": datetime.now(UTC).isoformat(),
            "customer_id": "c", **extra}


async def test_concurrent_resends_write_once(policy: Policy) -> None:
    sink = MemorySink()
    pipeline = _pipeline(policy, sink)
    who = Principal("k", frozenset({"events:write"}))
    first = asyncio.create_task(pipeline.accept_one(who, _raw(), "idem-1"))
    second = asyncio.create_task(pipeline.accept_one(who, _raw(), "idem-1"))
    await asyncio.sleep(0.01)
    sink.gate.set()
    a, b = await asyncio.gather(first, second)
    assert sink.written == [b"idem-1"]
    assert a.body == b.body and b.replayed and not a.replayed


async def test_batch_results_per_event_and_cached(policy: Policy) -> None:
    sink = MemorySink()
    sink.gate.set()
    pipeline = _pipeline(policy, sink)
    who = Principal("k", frozenset({"events:write"}))
    answer = await pipeline.accept_many(who, [_raw(event_id="e1"), _raw()], "$.events")
    assert answer.status == 200 and answer.body["accepted"] == 2
    again = await pipeline.accept_many(who, [_raw(event_id="e1")], "$.events")
    assert again.body["results"] == [{"status": "accepted", "event_id": "e1", "duplicate": True}]
    assert len(sink.written) == 2
