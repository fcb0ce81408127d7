"""The shortcuts taken on every event give what the general code gives: records adopting
the dict they are built from, a send history left alone when nothing is counted, no
governance copy of the state when nothing was planned, audience moves computed once,
the history's instants remembered, emissions made without the dataclass's setattrs."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.activation import facts as facts_module
from streams.activation.audiences import _moves
from streams.activation.definitions import DefinitionSet
from streams.activation.emission import Emission, made
from streams.activation.engine import ActivationState, govern
from streams.activation.facts import Facts
from streams.activation.governance import _limits, decide, record_send
from streams.activation.governance_rules import GovernanceRules
from streams.activation.model import Decision, PlannedAction, SendRecord, adopt, built
from streams.core.profile import from_micros
from tests.unit.activation.conftest import T0
from tests.unit.activation.test_fast_paths import planned

FIELDS = dict(action_id="a1", channel="email", at=T0)


def test_a_record_in_field_order_adopts_its_dict() -> None:
    in_order = dict(FIELDS)
    record = adopt(SendRecord, in_order)
    assert record.__dict__ is in_order  # the copy in order is spared
    shuffled = adopt(SendRecord, dict(reversed(list(FIELDS.items()))))
    validated = SendRecord(**FIELDS)
    for one in (record, shuffled, built(SendRecord, **FIELDS)):
        assert one == validated
        assert list(one.__dict__) == list(validated.__dict__)
        assert one.model_dump_json() == validated.model_dump_json()
        assert one.model_fields_set == validated.model_fields_set


def general_record_send(history: Sequence[SendRecord], decision: Decision,
                        rules: GovernanceRules, now: datetime) -> list[SendRecord]:
    """record_send as it was before its shortcuts (the general form)."""
    since = now - _limits(rules).keep(frozenset({r.channel for r in history}
                                                | {decision.channel}))
    kept = [r for r in history if r.at > since]
    if decision.outcome == "withheld" or decision.rule == "removal":
        return kept
    at = decision.not_before or now
    return [*kept, SendRecord(action_id=decision.action_id, channel=decision.channel, at=at)]


def _decisions(facts: Callable[..., Facts], rules: GovernanceRules) -> list[Decision]:
    remove = planned().model_copy(update={"channel": "paid_media",
                                          "action_type": "audience_remove",
                                          "payload": {"audience_id": "x"}})
    granted = facts(consent={"marketing:email": "GRANTED"}, traits={"timezone": "UTC"})
    return [decide(action, who, [], rules, at, "v1")
            for action in (planned(), remove) for who in (facts(), granted)
            for at in (T0, T0.replace(hour=23))]  # withheld, removal, sent, delayed


def test_the_send_history_is_what_the_general_code_keeps(
        facts: Callable[..., Facts], definitions: DefinitionSet) -> None:
    rules = definitions.governance
    decisions = _decisions(facts, rules)
    assert {d.outcome for d in decisions} >= {"withheld", "sent", "delayed"}
    old = SendRecord(action_id="old", channel="email", at=T0 - timedelta(days=400))
    recent = SendRecord(action_id="new", channel="email", at=T0 - timedelta(hours=1))
    for history in ([], [old], [recent], [old, recent]):
        for decision in decisions:
            fast = record_send(history, decision, rules, T0)
            general = general_record_send(history, decision, rules, T0)
            assert fast == general
            assert [r.model_dump_json() for r in fast] == [
                r.model_dump_json() for r in general]


def test_governing_nothing_keeps_the_state(facts: Callable[..., Facts],
                                           definitions: DefinitionSet) -> None:
    sends = [SendRecord(action_id="s", channel="email", at=T0 - timedelta(days=1))]
    state = ActivationState.new("p1").model_copy(update={"sends": sends})
    same, decisions, commands = govern(state, [], facts(), T0, definitions)
    assert same is state and decisions == [] and commands == []
    # the general path: a copy with the lists copied, equal to the state and its bytes
    action: PlannedAction = planned()
    copied, _, _ = govern(state, [action], facts(), T0, definitions)
    assert copied.sends == state.sends  # consent withheld: nothing counted, nothing pruned


def general_moves(kept: Collection[str], members: Collection[str], defined: frozenset[str],
                  evaluated: set[str], holding: set[str]) -> tuple[list[str], ...]:
    """audience_step's moves as they were computed before (the general form)."""
    before = set(members)
    after = ((frozenset(kept) & defined) - evaluated) | holding
    return sorted(after - before), sorted(before - after), sorted(after)


@pytest.mark.parametrize("seed", range(40))
def test_audience_moves_are_what_the_general_code_computes(seed: int) -> None:
    rng = random.Random(seed)
    ids = [f"a{i}" for i in range(12)]
    defined = frozenset(rng.sample(ids, 9))
    members = sorted(rng.sample(ids, rng.randint(0, 6)))  # may name undefined ones
    kept = rng.choice([members, sorted(rng.sample(ids, 3))])  # stored, or an empty profile's
    evaluated = set(rng.sample(sorted(defined), rng.randint(0, 9)))
    holding = {a for a in evaluated if rng.random() < 0.5}
    if seed % 4 == 0:  # nothing moves: every evaluated one answers as stored
        holding = evaluated & set(members)
        kept = members
    step = _moves(kept, members, defined, evaluated, holding, {})
    assert (step.entered, step.exited, step.members) == general_moves(
        kept, members, defined, evaluated, holding)


@pytest.mark.parametrize("stamp", [0, 1_772_445_600_000_001, "1772445600123456",
                                   -86_400_000_000, 4_102_444_800_000_007])
def test_remembered_instants_are_what_from_micros_gives(
        stamp: int | str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(facts_module, "_INSTANTS_KEPT", 2)  # cleared while in use
    for _ in range(3):
        for other in (stamp, 5, 7):
            entry = {"event_id": "e", "event_name": "x", "time_us": other}
            assert facts_module._history(entry).time == from_micros(int(other))
            assert facts_module._history(entry).time.tzinfo is UTC
    assert len(facts_module._INSTANTS) <= 2


def test_an_emission_made_is_what_the_dataclass_makes() -> None:
    parts: tuple[list[Any], ...] = ([{"action_id": "a"}], [{"change_id": "c"}],
                                    [{"decision_id": "d"}], ["j"], [{"assignment_id": "x"}])
    fast = made("p1", *parts)
    slow = Emission("p1", *parts)
    assert fast == slow and fast.to_json() == slow.to_json()
    assert [f.name for f in fields(Emission)] == list(fast.__dict__)
    assert made("p1", [], [], [], [], []).is_empty()
