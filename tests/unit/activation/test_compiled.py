"""Compiled conditions on edge cases: each answer (holds, next change) pinned to what the
tree-walking interpreter they replaced gave (the two were compared on the benchmark's
50 audiences over its workload before the interpreter was removed)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter

from streams.activation.audiences import assess, assessor
from streams.activation.conditions import Condition
from streams.activation.facts import Facts, HistoryEvent
from tests.unit.activation.conftest import T0

DAY = timedelta(days=1)
Answer = tuple[bool, timedelta | None]  # holds, next change relative to T0


def cond(data: dict[str, Any]) -> Condition:
    return TypeAdapter(Condition).validate_python(data)


def rich_facts() -> Facts:
    purchases = [(2 * DAY, "10"), (-DAY / 2, "30"), (-3 * DAY, 25), (-20 * DAY, "x"),
                 (-60 * DAY, "5")]
    return Facts(
        "p", traits={"plan": "pro", "age": 31, "renewal_date": "2026-03-15",
                     "trial_end_date": (T0 - DAY).date().isoformat()},
        consent={"marketing:email": "granted"},
        subscriptions={"s": {"status": "active",
                             "contract_end_date": (T0 + 20 * DAY).date().isoformat()}},
        lifetime_value={"EUR": Decimal("120")}, last_purchase_at=T0 - 100 * DAY,
        events=tuple(HistoryEvent(f"e{i}", "purchase_completed", T0 + offset,
                                  {"order_value": value})
                     for i, (offset, value) in enumerate(purchases)))


CASES: list[tuple[dict[str, Any], Answer, Answer]] = [  # condition, at T0, at T0 + 25 days
    ({"trait": "plan", "op": "in", "value": ["pro", "basic"]}, (True, None), (True, None)),
    ({"trait": "traits.plan", "op": "exists", "value": False}, (False, None), (False, None)),
    ({"trait": "age", "op": "gte", "value": "30"}, (True, None), (True, None)),
    ({"trait": "renewal_date", "op": "lt", "value": "2026-04-01"}, (True, None), (True, None)),
    ({"trait": "nowhere.x", "op": "exists"}, (False, None), (False, None)),
    ({"trait": "aggregates.lifetime_value.EUR", "op": "gt", "value": 100},
     (True, None), (True, None)),
    ({"trait": "consent.marketing:email", "op": "eq", "value": "granted"},
     (True, None), (True, None)),
    ({"event": "purchase_completed", "within": "P30D", "sum_of": "order_value",
      "sum_at_least": "50"}, (True, 2 * DAY), (True, 27 * DAY)),
    ({"event": "purchase_completed", "within": "P7D", "at_least": 2, "did": False},
     (False, 2 * DAY), (True, None)),
    ({"event": "purchase_completed"}, (True, 2 * DAY), (True, None)),
    ({"date": "subscription.contract_end_date", "within_next": "P30D"},
     (True, timedelta(days=19, hours=14)), (False, None)),
    ({"date": "aggregates.last_purchase_at", "older_than": "P90D", "if_missing": True},
     (True, None), (True, None)),
    ({"date": "traits.trial_end_date", "within_last": "P3D"},
     (True, timedelta(days=1, hours=14)), (False, None)),
    ({"not": {"any": [{"trait": "plan", "op": "eq", "value": "pro"},
                      {"event": "purchase_completed", "within": "P1D"}]}},
     (False, timedelta(hours=12)), (False, None)),
]


@pytest.mark.parametrize(("data", "at_t0", "later"), CASES)
def test_edge_cases(data: dict[str, Any], at_t0: Answer, later: Answer) -> None:
    c = cond(data)
    for now, (holds, wake) in ((T0, at_t0), (T0 + 25 * DAY, later)):
        assert assess(c, rich_facts(), now) == (holds, None if wake is None else T0 + wake)


def test_an_empty_profile_answers_without_a_wake() -> None:
    """What lets a new profile skip the audiences its first event does not touch."""
    for data, _, _ in CASES:
        assert assess(cond(data), Facts("p"), T0)[1] is None


def test_a_condition_compiles_once() -> None:
    c = cond(CASES[0][0])
    assert assessor(c) is assessor(c)
