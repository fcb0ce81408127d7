"""Re-evaluating only the audiences an event can affect gives exactly what evaluating all
of them gives: same memberships, same commands, same audience changes, same timers.

The benchmark's 50 audiences and 10 journeys over the benchmark's mixed workload, with a
clock that moves on (so stored wake times come due) and ticks in between.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import streams.activation.runtime as runtime
from bench.activation_defs import recent, write_definitions
from streams.activation.compiled import dependencies
from streams.activation.conditions import Condition
from streams.activation.definitions import Audience, DefinitionSet
from streams.activation.runtime import STATE, TIMER, load_state
from tests.integration.core.workload import workload
from tests.unit.activation.conftest import Clock
from tests.unit.activation.test_runtime import Stage

EVENTS, CUSTOMERS = 1500, 150
START = datetime(2026, 6, 1, 12, tzinfo=UTC)


def run(definitions: DefinitionSet) -> tuple[Stage, dict[str, list[str]]]:
    stage = Stage(definitions, Clock(START))
    for i, event in enumerate(recent(workload(EVENTS, CUSTOMERS), EVENTS, START)):
        stage.clock.set(START + timedelta(hours=i))  # two months over the run
        stage.event(event)
        if i % 50 == 49:
            stage.tick()
    members = {key.decode(): load_state(stage.store, key[2:].decode())[0].memberships
               for key in stage.store if key.startswith(STATE)}
    return stage, members


@pytest.fixture(scope="module")
def bench_definitions(tmp_path_factory: pytest.TempPathFactory) -> DefinitionSet:
    return write_definitions(Path(tmp_path_factory.mktemp("bench-defs")))


def test_selective_equals_full_evaluation(bench_definitions: DefinitionSet,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    selective, members = run(bench_definitions)
    with monkeypatch.context() as m:
        m.setattr(runtime, "touched", lambda before, after: None)
        full, full_members = run(bench_definitions)
    assert members == full_members
    assert sum(len(v) for v in members.values()) > 0  # the workload does enter audiences
    assert [(e.profile_id, e.commands, e.changes) for e in selective.sent] == [
        (e.profile_id, e.commands, e.changes) for e in full.sent]
    assert len(selective.sent) > 100
    timers = sorted(k for k in selective.store if k.startswith(TIMER))
    assert timers == sorted(k for k in full.store if k.startswith(TIMER))


def audience(condition: dict[str, object]) -> Condition:
    return Audience.model_validate({"id": "a", "condition": condition}).condition


def test_dependencies_name_facts_and_events() -> None:
    cond = audience({"all": [
        {"trait": "plan", "op": "eq", "value": "pro"},
        {"not": {"event": "purchase_completed", "within": "P30D"}},
        {"any": [{"date": "subscription.contract_end_date", "within_next": "P30D"},
                 {"trait": "consent.marketing:email", "op": "eq", "value": "GRANTED"},
                 {"date": "aggregates.last_purchase_at", "older_than": "P90D"}]}]})
    assert dependencies(cond) == {
        "traits.plan", "event:purchase_completed", "subscription.contract_end_date",
        "consent.marketing:email", "aggregates.last_purchase_at"}
