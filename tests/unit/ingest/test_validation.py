"""The event contract: every problem is listed with its path; valid events become envelopes."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ingest.errors import InvalidEvent
from ingest.validation import Policy, parse_json, validate_event
from streams.records import sha256_hex
from tests.unit.ingest.conftest import NOW


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"event": "page_viewed", "timestamp": "2025-03-01T11:00:00+01:00",
                             "customer_id": "c1", "properties": {"path": "/"}}
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def _problems(raw: Any, policy: Policy) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as info:
        validate_event(raw, policy, NOW, "http:k")
    return {p.path: p.message for p in info.value.problems}


def test_valid_unknown_event_keeps_properties(policy: Policy) -> None:
    env = validate_event(_event(), policy, NOW, "http:k", "fallback-id")
    assert env.event_name == "page_viewed"
    assert env.event_id == "fallback-id"
    assert env.payload is None
    assert env.properties == {"path": "/"}
    assert env.event_time.utcoffset() == timedelta(hours=1)
    assert env.key == "cid:c1"


def test_every_problem_is_listed_with_its_path(policy: Policy) -> None:
    problems = _problems({"event": "Bad Name", "timestamp": "2025-03-01T11:00:00",
                          "email": "not-an-address", "extra": 1, "properties": []}, policy)
    assert set(problems) == {"$.event", "$.timestamp", "$.email", "$.extra", "$.properties"}
    assert "time zone" in problems["$.timestamp"]


def test_identifier_required_and_hashed(policy: Policy) -> None:
    assert "$" in _problems(_event(customer_id=None), policy)
    env = validate_event(_event(customer_id=None, email=" Ann@Example.com ",
                                phone="+49 151 1234 5678"), policy, NOW, "s")
    assert env.identifiers.email_sha256 == sha256_hex("ann@example.com")
    assert env.identifiers.phone_sha256 == sha256_hex("+4915112345678")
    assert env.key.startswith("em:")


def test_future_timestamp_beyond_skew_refused(policy: Policy) -> None:
    ok = (NOW + timedelta(minutes=4)).isoformat()
    late = (NOW + timedelta(minutes=6)).isoformat()
    validate_event(_event(timestamp=ok), policy, NOW, "s")
    assert "future" in _problems(_event(timestamp=late), policy)["$.timestamp"]


def test_unknown_events_rejected_when_configured(policy: Policy) -> None:
    strict = replace(policy, unknown_events="reject")
    assert "unknown event" in _problems(_event(), strict)["$.event"]


def test_purchase_payload_typed_from_properties(policy: Policy) -> None:
    raw = parse_json(b'{"event":"purchase_completed","timestamp":"2025-03-01T10:00:00Z",'
                     b'"customer_id":"c1","properties":{"order_id":"o1","order_value":149.99,'
                     b'"currency":"EUR","product_ids":["p1"],"coupon":"X","n":{"a":1.5}}}')
    env = validate_event(raw, policy, NOW, "s")
    assert env.payload == {"order_id": "o1", "order_value": Decimal("149.9900"),
                           "currency": "EUR", "product_ids": ["p1"]}
    assert env.properties == {"coupon": "X", "n": '{"a":1.5}'}


def test_payload_type_problems(policy: Policy) -> None:
    problems = _problems(_event(event="purchase_completed", properties={
        "order_value": "1.23456", "currency": "eur", "product_ids": [1]}), policy)
    assert problems == {
        "$.properties.order_id": "required: string",
        "$.properties.order_value": "at most 4 decimal places",
        "$.properties.currency": "expected an ISO 4217 code (EUR)",
        "$.properties.product_ids[0]": "expected string",
    }


def test_dates_enums_and_optionals(policy: Policy) -> None:
    env = validate_event(_event(event="subscription_started", properties={
        "plan": "pro", "start_date": "2025-03-01"}), policy, NOW, "s")
    assert env.payload == {"plan": "pro", "start_date": date(2025, 3, 1),
                           "subscription_id": None, "contract_end_date": None}
    problems = _problems(_event(event="consent_updated", properties={
        "consent_type": "marketing", "status": "MAYBE"}), policy)
    assert set(problems) == {"$.properties.consent_type", "$.properties.status"}
    assert "GRANTED" in problems["$.properties.status"]
    bad_date = _problems(_event(event="contract_renewed", properties={
        "new_end_date": "2025-02-30"}), policy)
    assert bad_date == {"$.properties.new_end_date": "expected date (YYYY-MM-DD)"}


def test_not_json_and_not_object(policy: Policy) -> None:
    with pytest.raises(InvalidEvent):
        parse_json(b"{nope")
    assert _problems([1, 2], policy) == {"$": "expected a JSON object"}


def test_integer_outside_long_range(policy: Policy) -> None:
    problems = _problems(_event(properties={"big": 2**64}), policy)
    assert problems == {"$.properties.big": "integer outside the 64-bit range"}
