"""Eligibility that reads history, in the condition language: 'no refund in the last 30
days', 'not flagged fraud', 'at least 2 failed payments in 7 days' (counted since the last
successful payment: ``since``), and the last canceled subscription
(``canceled_subscription.*``) for win-back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter

from streams.activation.audiences import assess
from streams.activation.compiled import dependencies
from streams.activation.conditions import Condition
from streams.activation.facts import Facts
from streams.activation.touched import touched
from streams.core.profile import Profile, apply_event
from streams.records import Envelope
from tests.unit.activation.conftest import T0

DAY = timedelta(days=1)
CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)
TWO_FAILURES = {"event": "payment_failed", "within": "P7D", "at_least": 2,
                "since": "payment_succeeded"}
Make = Callable[..., Facts]


def holds(condition: dict[str, Any], facts: Facts) -> tuple[bool, Any]:
    return assess(CONDITION.validate_python(condition), facts, T0)


def test_failures_count_only_since_the_last_successful_payment(facts: Make) -> None:
    two = [("payment_failed", T0 - 5 * DAY, {}), ("payment_failed", T0 - DAY, {})]
    assert holds(TWO_FAILURES, facts(events=two))[0]
    settled = [*two, ("payment_succeeded", T0 - 3 * DAY, {})]  # between the two
    assert not holds(TWO_FAILURES, facts(events=settled))[0]
    again = [*settled, ("payment_failed", T0 - 2 * DAY, {})]  # two after the success
    assert holds(TWO_FAILURES, facts(events=again))[0]
    old = [("payment_failed", T0 - 8 * DAY, {}), ("payment_failed", T0 - DAY, {})]
    ok, wake = holds(TWO_FAILURES, facts(events=old))
    assert not ok and wake == T0 + 6 * DAY  # when the newer one leaves the window


def test_a_success_dated_in_the_future_takes_effect_when_due(facts: Make) -> None:
    events = [("payment_failed", T0 - 2 * DAY, {}), ("payment_failed", T0 - DAY, {}),
              ("payment_succeeded", T0 + DAY, {})]
    ok, wake = holds(TWO_FAILURES, facts(events=events))
    assert ok and wake == T0 + DAY


def test_no_refund_in_30_days_and_not_flagged_fraud(facts: Make) -> None:
    no_refund = {"event": "refund_issued", "within": "P30D", "did": False}
    assert holds(no_refund, facts())[0]
    ok, wake = holds(no_refund, facts(events=[("refund_issued", T0 - 10 * DAY, {})]))
    assert not ok and wake == T0 + 20 * DAY
    not_fraud = {"not": {"trait": "fraud_flagged", "op": "eq", "value": True}}
    assert holds(not_fraud, facts())[0]
    assert not holds(not_fraud, facts(traits={"fraud_flagged": True}))[0]


def test_the_last_canceled_subscription_is_readable_when_none_is_active(facts: Make) -> None:
    subs = {"old": {"status": "canceled", "cancel_date": "2025-01-10"},
            "new": {"status": "canceled", "cancel_date": (T0 - 40 * DAY).date().isoformat()}}
    left = facts(subscriptions=subs)
    assert left.resolve("canceled_subscription.cancel_date") == subs["new"]["cancel_date"]
    assert left.resolve("subscription.status") is None  # nothing active to read
    lapsed = {"all": [{"trait": "subscription.status", "op": "exists", "value": False},
                      {"date": "canceled_subscription.cancel_date", "older_than": "P30D"}]}
    assert holds(lapsed, left)[0]
    back = {**subs, "again": {"status": "active", "plan": "pro"}}
    assert not holds(lapsed, facts(subscriptions=back))[0]


def test_dependencies_name_both_events_and_the_new_fact_root() -> None:
    assert dependencies(CONDITION.validate_python(TWO_FAILURES)) == {
        "event:payment_failed", "event:payment_succeeded"}
    date_cond = {"date": "canceled_subscription.cancel_date", "older_than": "P30D"}
    assert dependencies(CONDITION.validate_python(date_cond)) == {
        "canceled_subscription.cancel_date"}


def test_a_cancellation_touches_the_canceled_subscription(
        envelope: Callable[..., Envelope]) -> None:
    start = envelope("s", "subscription_started", T0, "c1",
                     {"plan": "pro", "start_date": date(2025, 1, 1)})
    cancel = envelope("x", "subscription_canceled", T0 + DAY, "c1",
                      {"cancel_date": date(2026, 3, 3), "reason": "price"})
    before = apply_event(Profile("p1"), start, timedelta(days=7), 50)
    after = apply_event(before, cancel, timedelta(days=7), 50)
    changed = touched(before, after)
    assert changed is not None
    assert {"canceled_subscription.cancel_date", "subscription.status"} <= changed


def test_since_must_name_another_event() -> None:
    with pytest.raises(ValueError, match="since names another event"):
        CONDITION.validate_python({**TWO_FAILURES, "since": "payment_failed"})
