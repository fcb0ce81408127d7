"""Factories for pure stream-core tests (no broker)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from streams.core.pipeline import StageConfig
from streams.records import Envelope, Identifiers

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


from streams.core.sandbox import DictStore  # noqa: E402  (re-exported for the tests)


@pytest.fixture
def store() -> DictStore:
    return DictStore()


@pytest.fixture
def cfg() -> StageConfig:
    return StageConfig(timedelta(days=7), timedelta(seconds=5), timeline_limit=20)


PAYLOADS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "purchase_completed": lambda kw: {
        "order_id": kw.get("order_id", "o1"), "order_value": Decimal(kw.get("value", "10.00")),
        "currency": kw.get("currency", "EUR"), "product_ids": []},
    "consent_updated": lambda kw: {"consent_type": kw.get("consent_type", "marketing:email"),
                                   "status": kw.get("status", "GRANTED")},
    "subscription_started": lambda kw: {
        "plan": kw.get("plan", "pro"), "start_date": kw.get("start", date(2026, 1, 1)),
        "subscription_id": kw.get("sid", "s1"), "contract_end_date": kw.get("end")},
    "subscription_canceled": lambda kw: {
        "cancel_date": kw.get("cancel", date(2026, 6, 1)), "reason": kw.get("reason"),
        "subscription_id": kw.get("sid", "s1")},
    "contract_renewed": lambda kw: {"new_end_date": kw.get("end", date(2027, 12, 31)),
                                    "subscription_id": kw.get("sid", "s1")},
}


@pytest.fixture
def event() -> Callable[..., Envelope]:
    """event(id, name, seconds after T0, customer=..., email=..., anon=..., props=..., **payload)"""

    def make(event_id: str, name: str = "page_viewed", at_s: float = 0, *,
             customer: str | None = "c1", email: str | None = None, anon: str | None = None,
             props: dict[str, Any] | None = None, **payload: Any) -> Envelope:
        when = T0 + timedelta(seconds=at_s)
        build = PAYLOADS.get(name)
        return Envelope(
            event_id=event_id, event_name=name, event_time=when, received_time=when,
            source="kafka:test",
            identifiers=Identifiers(customer_id=customer, email_sha256=email, anonymous_id=anon),
            properties=props or {}, payload=build(payload) if build else None)

    return make
