from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from streams.activation.facts import as_datetime, facts_from_profile, parse_duration
from streams.core.profile import Profile
from streams.records import Envelope
from tests.unit.activation.conftest import T0


@pytest.mark.parametrize(("text", "expected"), [
    ("P30D", timedelta(days=30)), ("PT36H", timedelta(hours=36)), ("-P7D", timedelta(days=-7)),
    ("P2W", timedelta(weeks=2)), ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
])
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["P1M", "P1Y", "30 days", "P", "PT", "P1DT"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_duration(text)


def test_as_datetime() -> None:
    midnight = datetime(2026, 5, 1, tzinfo=UTC)
    assert as_datetime("2026-05-01") == as_datetime(date(2026, 5, 1)) == midnight
    assert as_datetime("2026-05-01T02:00:00+02:00") == midnight
    assert as_datetime("soon") is None and as_datetime(None) is None


def test_facts_from_profile(envelope: Callable[..., Envelope],
                            profile_of: Callable[..., Profile]) -> None:
    def at(hours: int) -> datetime:
        return T0 + timedelta(hours=hours)

    events: list[tuple[str, str, int, dict[str, Any] | None, dict[str, Any]]] = [
        ("e1", "identify", 0, None, {"plan": "pro", "timezone": "Europe/Paris"}),
        ("e2", "consent_updated", 1, {"consent_type": "marketing:email", "status": "GRANTED"}, {}),
        ("e3", "purchase_completed", 2, {"order_id": "o1", "order_value": Decimal("12.50"),
                                         "currency": "eur", "product_ids": []}, {}),
        ("e4", "subscription_started", 3, {"plan": "pro", "start_date": date(2026, 1, 1),
                                           "subscription_id": "s1",
                                           "contract_end_date": date(2026, 12, 31)}, {}),
    ]
    profile = profile_of("p1", *(envelope(i, n, at(h), payload=p, **props)
                                 for i, n, h, p, props in events))
    f = facts_from_profile(profile)
    assert f.traits == {"plan": "pro", "timezone": "Europe/Paris"}
    assert f.consent == {"marketing:email": "GRANTED"}
    assert f.resolve("subscription.contract_end_date") == "2026-12-31"
    assert f.resolve("aggregates.order_count") == 1
    assert f.resolve("aggregates.lifetime_value.EUR") == Decimal("12.50")
    assert f.last_purchase_at == at(2)
    assert [e.name for e in f.events][:2] == ["subscription_started", "purchase_completed"]
    assert f.identifiers == {"customer_id": ["c1"]}
    assert f.resolve("nowhere.x") is None and f.resolve("plan") == "pro"
