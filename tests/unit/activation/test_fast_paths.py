"""The hot path's shortcuts give what the pydantic models and definitions would: records
built without validation, decisions dumped by hand, journeys' lookups cached."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from streams.activation.actions import plan_action
from streams.activation.definitions import DefinitionSet, SendSpec
from streams.activation.facts import Facts, HistoryEvent, as_datetime, facts_from_profile
from streams.activation.governance import decide
from streams.activation.journeys import JourneyState, on_audience_change
from streams.activation.model import Decision, PlannedAction, evolve
from streams.activation.plans import plan, triggers
from streams.core.profile import Profile
from streams.records import Envelope
from tests.unit.activation.conftest import T0

SEND = SendSpec(channel="email", action_type="send_email", purpose="marketing",
                payload={"template_id": "t", "n": 2, "x": 1.5, "ok": False, "none": None})


def planned() -> PlannedAction:
    return plan_action("p1", SEND, journey_id="j", journey_version=3, enrollment_id="j#1",
                       step_id="s", trigger="ev1", variants={"j/split": "b"})


def test_a_planned_action_is_what_validation_makes() -> None:
    action = planned()
    again = PlannedAction.model_validate(action.model_dump())
    assert action == again and action.model_dump_json() == again.model_dump_json()


@pytest.mark.parametrize("now", [T0, T0.astimezone(timezone(timedelta(hours=2))),
                                 T0.replace(microsecond=120),
                                 T0.astimezone(timezone(timedelta(hours=1, seconds=30)))])
def test_a_decision_dumps_as_pydantic_does(facts: Callable[..., Facts],
                                           definitions: DefinitionSet, now: datetime) -> None:
    granted = facts(consent={"marketing:email": "GRANTED"}, traits={"timezone": "UTC"})
    for who in (granted, facts()):  # allowed or delayed (quiet hours), and withheld
        for at in (now, now.replace(hour=23)):
            decision = decide(planned(), who, [], definitions.governance, at, "v1")
            again = Decision.model_validate(decision.model_dump())
            assert decision == again
            assert decision.to_timeline() == again.model_dump(mode="json")


def test_a_naive_instant_is_still_refused(facts: Callable[..., Facts],
                                          definitions: DefinitionSet) -> None:
    with pytest.raises(ValidationError):
        decide(planned(), facts(), [], definitions.governance, T0.replace(tzinfo=None),
               "v1")


def test_evolve_is_model_copy() -> None:
    state = JourneyState(profile_id="p1", enrollments={"j": 1})
    changed = evolve(state, completed=["j#1"])
    assert changed == state.model_copy(update={"completed": ["j#1"]})
    assert changed.model_dump_json() == state.model_copy(
        update={"completed": ["j#1"]}).model_dump_json()
    assert state.completed == []


def test_cached_plans_and_triggers_match_the_definitions(definitions: DefinitionSet) -> None:
    for journey in definitions.journeys.values():
        steps = plan(journey)
        assert list(steps.steps) == [s.id for s in journey.steps]
        for step in journey.steps:
            assert steps.kinds[step.id] == step.kind
            assert steps.after[step.id] == journey.after(step)
    by_event, by_audience = triggers(definitions.journeys)
    for name in {j.trigger.event for j in definitions.journeys.values()} - {None}:
        assert by_event[str(name)] == definitions.journeys_for_event(str(name))
    for aid in {j.trigger.audience for j in definitions.journeys.values()} - {None}:
        assert by_audience[str(aid)] == definitions.journeys_for_audience(str(aid))


def test_an_enrollment_is_what_validation_makes(facts: Callable[..., Facts],
                                                definitions: DefinitionSet) -> None:
    audience = next(j.trigger.audience for j in definitions.journeys.values()
                    if j.trigger.audience is not None)
    state, _ = on_audience_change(JourneyState(profile_id="p1"), facts(), [audience], [], T0,
                                  definitions, cause="ev1")
    assert state.active
    for enrollment in state.active.values():
        again = type(enrollment).model_validate(enrollment.model_dump())
        assert enrollment == again and enrollment.model_dump_json() == again.model_dump_json()


def test_dates_parse_once_and_alike() -> None:
    assert as_datetime("2026-03-02") == datetime(2026, 3, 2, tzinfo=UTC)
    assert as_datetime("2026-03-02T10:00:00+01:00") == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert as_datetime("2026-03-02T10:00:00") == datetime(2026, 3, 2, 10, tzinfo=UTC)
    assert as_datetime("not a date") is None and as_datetime("") is None


def test_facts_are_what_the_dataclasses_make(profile_of: Callable[..., Profile],
                                             envelope: Callable[..., Envelope]) -> None:
    profile = profile_of("p1", envelope("e1", "identify", T0, tier="gold"),
                         envelope("e2", "purchase_completed", T0 + timedelta(hours=1),
                                  order_id="o1", order_value=12.5, currency="EUR"))
    fast = facts_from_profile(profile)
    slow = Facts(**{f.name: getattr(fast, f.name) for f in fields(Facts)})
    assert fast == slow and fast.events
    assert [(e.event_id, e.name) for e in fast.events] == [
        (e.event_id, e.name) for e in slow.events]
    assert fast.events[0] == HistoryEvent(**fast.events[0].__dict__)
    assert fast.named("purchase_completed") == slow.named("purchase_completed")
    assert fast.subscription() == slow.subscription()
