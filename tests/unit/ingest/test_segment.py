"""Segment calls map onto the gateway's event format without leaking PII into properties."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest.errors import InvalidEvent
from ingest.segment import batch_calls, map_call, snake_case

NOW = datetime(2025, 3, 1, tzinfo=UTC)


def test_snake_case() -> None:
    assert snake_case("Order Completed") == "order_completed"
    assert snake_case("orderCompleted") == "order_completed"
    assert snake_case("purchase_completed") == "purchase_completed"


def test_track_mapping() -> None:
    event = map_call({"event": "Order Completed", "userId": 42, "messageId": "m-1",
                      "originalTimestamp": "2025-02-01T00:00:00Z",
                      "context": {"traits": {"email": "a@b.io"}}, "properties": {"x": 1},
                      "integrations": {}}, "track", NOW)
    assert event == {"event": "order_completed", "customer_id": "42", "event_id": "m-1",
                     "timestamp": "2025-02-01T00:00:00Z", "email": "a@b.io",
                     "properties": {"x": 1}}


def test_identify_moves_pii_out_of_traits() -> None:
    event = map_call({"anonymousId": "anon", "traits": {"email": "a@b.io", "plan": "pro",
                                                        "phone": "+4915112345678"}},
                     "identify", NOW)
    assert event["event"] == "identify"
    assert event["properties"] == {"plan": "pro"}
    assert event["phone"] == "+4915112345678"
    assert event["timestamp"] == NOW.isoformat()


def test_batch_lists_problems_per_call() -> None:
    with pytest.raises(InvalidEvent) as info:
        batch_calls({"batch": [{"type": "track"}, {"type": "page"}]}, NOW)
    assert [p.path for p in info.value.problems] == ["$.batch[0].event", "$.batch[1].type"]
    assert len(batch_calls({"batch": [{"type": "identify", "userId": "u"}]}, NOW)) == 1
