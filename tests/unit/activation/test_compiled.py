"""Compiled conditions answer exactly as the interpreter (streams.activation.audiences.assess):
on the benchmark's 50 audiences over profiles built from its workload, at instants before,
inside and after their windows, and on hand-made edge cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from bench.activation_defs import recent, write_definitions
from streams.activation.audiences import assess
from streams.activation.compiled import compile_condition
from streams.activation.conditions import Condition
from streams.activation.facts import Facts, HistoryEvent, facts_from_profile
from streams.core.profile import Profile, apply_event
from tests.integration.core.workload import workload
from tests.unit.activation.conftest import T0

START = datetime(2026, 6, 1, 12, tzinfo=UTC)
NOWS = [START + timedelta(days=d) for d in (-400, -200, -90, -30, -1, 0, 1, 29, 31, 95, 400)]


def workload_facts(events: int = 1200, customers: int = 60) -> list[Facts]:
    profiles: dict[str, Profile] = {}
    for event in recent(workload(events, customers), events, START):
        cid = event.identifiers.customer_id or event.identifiers.anonymous_id or "anon"
        profile = profiles.get(cid, Profile(cid))
        profiles[cid] = apply_event(profile, event, timedelta(seconds=5), 100)
    return [facts_from_profile(p) for p in profiles.values()]


def test_bench_audiences_compile_to_the_interpreters_answers(tmp_path: Path) -> None:
    definitions = write_definitions(tmp_path / "defs")
    all_facts = workload_facts()
    held = 0
    for audience in definitions.audiences.values():
        compiled = compile_condition(audience.condition)
        for facts in all_facts:
            for now in NOWS:
                expected = assess(audience.condition, facts, now)
                assert compiled(facts, now) == expected, (audience.id, facts.profile_id, now)
                held += expected[0]
    assert held > 100  # the check saw audiences hold, not only fail


def cond(data: dict[str, Any]) -> Condition:
    return TypeAdapter(Condition).validate_python(data)


EDGE_CASES = [
    {"trait": "plan", "op": "in", "value": ["pro", "basic"]},
    {"trait": "traits.plan", "op": "exists", "value": False},
    {"trait": "age", "op": "gte", "value": "30"},
    {"trait": "renewal_date", "op": "lt", "value": "2026-04-01"},
    {"trait": "nowhere.x", "op": "exists"},
    {"trait": "aggregates.lifetime_value.EUR", "op": "gt", "value": 100},
    {"trait": "consent.marketing:email", "op": "eq", "value": "granted"},
    {"event": "purchase_completed", "within": "P30D", "sum_of": "order_value",
     "sum_at_least": "50"},
    {"event": "purchase_completed", "within": "P7D", "at_least": 2, "did": False},
    {"event": "purchase_completed"},
    {"date": "subscription.contract_end_date", "within_next": "P30D"},
    {"date": "aggregates.last_purchase_at", "older_than": "P90D", "if_missing": True},
    {"date": "traits.trial_end_date", "within_last": "P3D"},
    {"not": {"any": [{"trait": "plan", "op": "eq", "value": "pro"},
                     {"event": "purchase_completed", "within": "P1D"}]}},
]


@pytest.mark.parametrize("data", EDGE_CASES)
def test_edge_cases_match_the_interpreter(data: dict[str, Any]) -> None:
    day = timedelta(days=1)
    variants = [
        Facts("p"),
        Facts("p", traits={"plan": "pro", "age": 31, "renewal_date": "2026-03-15",
                           "trial_end_date": (T0 - day).date().isoformat()},
              consent={"marketing:email": "granted"},
              subscriptions={"s": {"status": "active",
                                   "contract_end_date": (T0 + 20 * day).date().isoformat()}},
              lifetime_value={"EUR": Decimal("120")},
              last_purchase_at=T0 - 100 * day,
              events=tuple(facts_events())),
        Facts("p", traits={"age": "x", "renewal_date": "not a date", "plan": None}),
    ]
    c = cond(data)
    compiled = compile_condition(c)
    for facts in variants:
        for now in (T0 - 40 * day, T0 - day, T0, T0 + day, T0 + 25 * day, T0 + 200 * day):
            assert compiled(facts, now) == assess(c, facts, now), (data, facts, now)


def facts_events() -> list[HistoryEvent]:
    day = timedelta(days=1)
    return [HistoryEvent(f"e{i}", "purchase_completed", T0 + offset, {"order_value": value})
            for i, (offset, value) in enumerate(
                [(2 * day, "10"), (-day / 2, "30"), (-3 * day, 25), (-20 * day, "x"),
                 (-60 * day, "5")])]
