from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter

from streams.activation.audiences import evaluate, next_audience_change, next_change, transitions
from streams.activation.conditions import Condition
from streams.activation.definitions import DefinitionSet
from streams.activation.facts import Facts
from tests.unit.activation.conftest import T0

DAY = timedelta(days=1)
Make = Callable[..., Facts]


def cond(data: dict[str, Any]) -> Condition:
    return TypeAdapter(Condition).validate_python(data)


@pytest.mark.parametrize(("op", "value", "expected"), [
    ("eq", "pro", True), ("ne", "pro", False), ("in", ["basic", "pro"], True),
    ("exists", None, True), ("exists", False, False),
])
def test_trait_string_ops(facts: Make, op: str, value: Any, expected: bool) -> None:
    c = cond({"trait": "plan", "op": op, "value": value})
    assert evaluate(c, facts(traits={"plan": "pro"}), T0) is expected


@pytest.mark.parametrize(("op", "value", "expected"), [
    ("gt", 4, True), ("gte", 5, True), ("lt", 5, False), ("lte", "5", True), ("gt", "x", False),
])
def test_trait_numeric_ops(facts: Make, op: str, value: Any, expected: bool) -> None:
    c = cond({"trait": "aggregates.order_count", "op": op, "value": value})
    assert evaluate(c, facts(order_count=5), T0) is expected


def test_missing_trait_never_matches_order_ops(facts: Make) -> None:
    assert not evaluate(cond({"trait": "age", "op": "gt", "value": 1}), facts(), T0)
    assert evaluate(cond({"trait": "age", "op": "exists", "value": False}), facts(), T0)
    assert next_change(cond({"trait": "age", "op": "exists"}), facts(), T0) is None


def test_contract_end_within_next_30_days(facts: Make) -> None:
    end = (T0 + 40 * DAY).date().isoformat()
    f = facts(subscriptions={"s1": {"status": "active", "contract_end_date": end}})
    c = cond({"date": "subscription.contract_end_date", "within_next": "P30D"})
    entry = next_change(c, f, T0)
    assert entry == T0.replace(hour=0) + 10 * DAY  # end (UTC midnight) - 30 days
    assert not evaluate(c, f, entry - timedelta(microseconds=1))
    assert evaluate(c, f, entry)
    leave = next_change(c, f, entry)
    assert leave == T0.replace(hour=0) + 40 * DAY
    assert not evaluate(c, f, leave)
    assert next_change(c, f, leave) is None


def test_latest_ending_active_subscription_counts(facts: Make) -> None:
    f = facts(subscriptions={
        "old": {"status": "active", "contract_end_date": "2026-03-10"},
        "new": {"status": "active", "contract_end_date": "2027-01-01"},
        "gone": {"status": "canceled", "contract_end_date": "2030-01-01"}})
    assert f.resolve("subscription.contract_end_date") == "2027-01-01"


def test_no_purchase_in_90_days(facts: Make) -> None:
    c = cond({"date": "aggregates.last_purchase_at", "older_than": "P90D", "if_missing": True})
    last = T0 - 10 * DAY
    f = facts(last_purchase_at=last)
    assert not evaluate(c, f, T0)
    assert next_change(c, f, T0) == last + 90 * DAY
    assert evaluate(c, f, last + 90 * DAY)
    assert next_change(c, f, last + 90 * DAY) is None
    assert evaluate(c, facts(), T0)  # never bought: if_missing


def test_trial_ends_in_3_days(facts: Make) -> None:
    c = cond({"date": "traits.trial_end_date", "within_next": "P3D"})
    f = facts(traits={"trial_end_date": (T0 + 5 * DAY).isoformat()})
    assert next_change(c, f, T0) == T0 + 2 * DAY
    assert evaluate(c, f, T0 + 2 * DAY)


def test_event_count_in_window_and_when_it_expires(facts: Make) -> None:
    c = cond({"event": "login", "within": "P7D", "at_least": 2})
    f = facts(events=[("login", T0 - 6 * DAY, {}), ("login", T0 - 1 * DAY, {}),
                      ("page_viewed", T0, {})])
    assert evaluate(c, f, T0)
    assert next_change(c, f, T0) == T0 + DAY  # the older login leaves the window
    assert not evaluate(c, f, T0 + DAY)
    did_not = cond({"event": "login", "within": "P7D", "did": False})
    assert not evaluate(did_not, f, T0)
    assert evaluate(did_not, f, T0 + 6 * DAY)


def test_future_dated_event_counts_from_its_time(facts: Make) -> None:
    c = cond({"event": "login", "within": "P1D"})
    f = facts(events=[("login", T0 + DAY, {})])
    assert not evaluate(c, f, T0)
    assert next_change(c, f, T0) == T0 + DAY


def test_sum_of_property(facts: Make) -> None:
    c = cond({"event": "purchase_completed", "within": "P30D", "sum_of": "order_value",
              "sum_at_least": 100})
    f = facts(events=[("purchase_completed", T0 - 20 * DAY, {"order_value": "60.5"}),
                      ("purchase_completed", T0 - 2 * DAY, {"order_value": 40})])
    assert evaluate(c, f, T0)
    assert next_change(c, f, T0) == T0 + 10 * DAY
    assert not evaluate(c, f, T0 + 10 * DAY)


def test_combinators_and_earliest_change(facts: Make) -> None:
    c = cond({"any": [
        {"date": "traits.a", "within_next": "P1D"},
        {"not": {"date": "traits.b", "within_next": "P1D"}},
        {"all": [{"trait": "plan", "op": "eq", "value": "pro"}]},
    ]})
    f = facts(traits={"a": (T0 + 5 * DAY).isoformat(), "b": (T0 + 3 * DAY).isoformat()})
    assert evaluate(c, f, T0)  # not(b within 1 day)
    assert next_change(c, f, T0) == T0 + 2 * DAY


def test_transitions(facts: Make, definitions: DefinitionSet) -> None:
    end = (T0 + 20 * DAY).date().isoformat()
    f = facts(subscriptions={"s1": {"status": "active", "contract_end_date": end}})
    entered, exited = transitions(definitions.audiences, f, {"lapsed_buyers", "retired"}, T0)
    assert entered == ["contract_ending"]
    assert exited == ["lapsed_buyers", "retired"]
    renewed = facts(subscriptions={"s1": {"status": "active", "contract_end_date": end}},
                    traits={"renewal_confirmed": True})
    assert transitions(definitions.audiences, renewed, {"contract_ending"}, T0) == (
        [], ["contract_ending"])
    assert next_audience_change(definitions.audiences, f, T0) == T0.replace(hour=0) + 20 * DAY
