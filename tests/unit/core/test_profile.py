"""Profiles: last-writer-wins by event time, aggregates, bounded timeline, late flags."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import pytest

from streams.core.profile import Profile, apply_event, merge_profiles, timeline_page, to_api
from streams.records import Envelope

WINDOW = timedelta(seconds=5)


def run(events: list[Envelope], limit: int = 20) -> Profile:
    profile = Profile("p1")
    for ev in events:
        profile = apply_event(profile, ev, WINDOW, limit)
    return profile


def test_purchase_aggregates_are_exact_decimals(event: Callable[..., Envelope]) -> None:
    p = run([event("a", "purchase_completed", 0, value="0.10", order_id="o1"),
             event("b", "purchase_completed", 10, value="0.20", order_id="o2"),
             event("c", "purchase_completed", 5, value="5", currency="usd", order_id="o3")])
    api = to_api(p)["aggregates"]
    assert api["order_count"] == 3
    assert Decimal(api["lifetime_value"]["EUR"]) == Decimal("0.30")
    assert Decimal(api["lifetime_value"]["USD"]) == Decimal("5")
    assert api["last_purchase"]["order_id"] == "o2"  # newest by event time, not arrival


def test_old_event_never_overwrites_newer_consent(event: Callable[..., Envelope]) -> None:
    new = event("n", "consent_updated", 100, status="DENIED")
    old = event("o", "consent_updated", 10, status="GRANTED")
    assert to_api(run([new, old]))["consent"] == {"marketing:email": "DENIED"}
    assert to_api(run([old, new]))["consent"] == {"marketing:email": "DENIED"}


def test_consent_is_per_purpose_and_channel(event: Callable[..., Envelope]) -> None:
    p = run([event("a", "consent_updated", 1, consent_type="marketing:email", status="GRANTED"),
             event("b", "consent_updated", 2, consent_type="marketing:sms", status="DENIED")])
    assert to_api(p)["consent"] == {"marketing:email": "GRANTED", "marketing:sms": "DENIED"}


def test_subscription_lifecycle_with_dates(event: Callable[..., Envelope]) -> None:
    started = event("s", "subscription_started", 0, plan="pro", end=date(2026, 12, 31))
    canceled = event("c", "subscription_canceled", 50, cancel=date(2026, 6, 1), reason="price")
    renewed = event("r", "contract_renewed", 100, end=date(2027, 12, 31))
    for order in itertools.permutations([started, canceled, renewed]):
        sub = to_api(run(list(order)))["subscriptions"]["s1"]
        assert sub == {"status": "active", "plan": "pro", "start_date": "2026-01-01",
                       "contract_end_date": "2027-12-31", "cancel_date": None,
                       "cancel_reason": "price"}


def test_traits_last_writer_wins_per_attribute(event: Callable[..., Envelope]) -> None:
    a = event("a", "identify", 10, props={"tier": "gold", "city": "Oslo"})
    b = event("b", "identify", 5, props={"tier": "silver", "lang": "no"})
    assert to_api(run([a, b]))["traits"] == {"city": "Oslo", "lang": "no", "tier": "gold"}


def test_order_of_arrival_does_not_change_state(event: Callable[..., Envelope]) -> None:
    events = [event("a", "purchase_completed", 3, order_id="x"),
              event("b", "consent_updated", 1, status="GRANTED"),
              event("c", "consent_updated", 2, status="WITHDRAWN"),
              event("d", "identify", 4, props={"tier": "gold"})]
    states = {str(to_api(run(list(p)))) for p in itertools.permutations(events)}
    assert len(states) == 1


def test_timeline_newest_first_bounded_and_late_flagged(event: Callable[..., Envelope]) -> None:
    events = [event(f"e{i}", "page_viewed", i * 10) for i in range(30)]
    late = event("late", "page_viewed", 1)
    p = run([*events, late], limit=20)
    times = [e["time_us"] for e in p.timeline]
    assert times == sorted(times, reverse=True) and len(p.timeline) == 20
    assert p.timeline[0]["event_id"] == "e29"
    assert all(not e["late"] for e in p.timeline)  # the late one is older than all kept
    q = run([*events[:5], event("l2", "page_viewed", 2)])
    flagged = {e["event_id"]: e["late"] for e in q.timeline}
    assert flagged["l2"] is True and flagged["e4"] is False


def test_event_within_ordering_window_is_not_late(event: Callable[..., Envelope]) -> None:
    p = run([event("a", at_s=10), event("b", at_s=6)])
    assert {e["event_id"]: e["late"] for e in p.timeline} == {"a": False, "b": False}


def test_timeline_summary_and_pagination(event: Callable[..., Envelope]) -> None:
    p = run([event(f"e{i}", "purchase_completed", i, order_id=f"o{i}") for i in range(5)])
    page = timeline_page(p, 0, 2)
    assert [i["event_id"] for i in page["items"]] == ["e4", "e3"]
    assert page["next_offset"] == 2 and page["total"] == 5
    assert page["items"][0]["summary"] == "order o4: 10.00 EUR"
    assert timeline_page(p, 4, 2)["next_offset"] is None


def test_json_roundtrip_keeps_lww_working(event: Callable[..., Envelope]) -> None:
    p = run([event("a", "consent_updated", 10, status="DENIED")])
    back = Profile.from_json(p.to_json())
    assert back == p
    again = apply_event(back, event("b", "consent_updated", 5, status="GRANTED"), WINDOW, 20)
    assert to_api(again)["consent"] == {"marketing:email": "DENIED"}


def test_merge_profiles_unions_histories(event: Callable[..., Envelope]) -> None:
    a = run([event("a1", "purchase_completed", 1, value="1"),
             event("a2", "consent_updated", 50, status="DENIED")])
    b = apply_event(Profile("p2"), event("b1", "purchase_completed", 2, value="2",
                                         customer=None, anon="x"), WINDOW, 20)
    b = apply_event(b, event("b2", "consent_updated", 20, status="GRANTED", customer=None,
                             anon="x"), WINDOW, 20)
    merged = merge_profiles(a, b, 20)
    api = to_api(merged)
    assert api["profile_id"] == "p1" and api["aggregates"]["order_count"] == 2
    assert Decimal(api["aggregates"]["lifetime_value"]["EUR"]) == Decimal(3)
    assert api["consent"] == {"marketing:email": "DENIED"}
    assert api["identifiers"] == {"customer_id": ["c1"], "anonymous_id": ["x"]}
    assert [e["event_id"] for e in merged.timeline] == ["a2", "b2", "b1", "a1"]


@pytest.mark.parametrize("limit", [1, 3])
def test_timeline_never_exceeds_limit(event: Callable[..., Envelope], limit: int) -> None:
    assert len(run([event(f"e{i}", at_s=i) for i in range(5)], limit).timeline) == limit
