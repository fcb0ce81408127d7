"""Event factories for the stream-core tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from streams.records import Envelope, Identifiers

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def purchase(event_id: str, customer: str, value: str = "10.00", *,
             at: datetime | None = None, **ids: Any) -> Envelope:
    when = at or BASE_TIME
    return Envelope(
        event_id=event_id, event_name="purchase_completed", event_time=when,
        received_time=when + timedelta(seconds=1), source="kafka:test",
        identifiers=Identifiers(customer_id=customer, **ids),
        payload={"order_id": f"o-{event_id}", "order_value": Decimal(value), "currency": "EUR",
                 "product_ids": []},
    )


def page_view(event_id: str, customer: str, at: datetime | None = None) -> Envelope:
    when = at or BASE_TIME
    return Envelope(event_id=event_id, event_name="page_viewed", event_time=when,
                    received_time=when, source="kafka:test",
                    identifiers=Identifiers(customer_id=customer), properties={"path": "/"})
