from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from streams.activation.definitions import DefinitionSet, load_definitions
from streams.activation.facts import Facts, HistoryEvent
from streams.activation.journeys import (
    JourneyState,
    next_wake,
    on_audience_change,
    on_event,
    on_timer,
)
from tests.unit.activation.conftest import T0

DAY = timedelta(days=1)
AUDIENCE = "condition: {trait: plan, op: eq, value: pro}\n"
JOURNEY = """
trigger: {event: cart_abandoned}
reentry: REENTRY
exit_when: {events: [order_placed]}
steps:
  - id: add
    send: {channel: paid_media, action_type: audience_add, payload: {audience_id: carts}}
  - id: listen
    wait_for_event: {event: email_opened, timeout: P2D, on_event: pick, on_timeout: bye}
  - id: pick
    branch:
      cases: [{when: {trait: plan, op: eq, value: pro}, next: pro_mail}]
      otherwise: bye
  - id: pro_mail
    send: {channel: email, action_type: send_email, payload: {template_id: pro}}
  - id: nap
    wait: {duration: PT6H}
  - id: bye
    exit: {}
"""
LOOP = """
trigger: {audience: pros}
steps:
  - id: a
    branch: {cases: [{when: {trait: plan, op: eq, value: pro}, next: b}], otherwise: b}
  - id: b
    send: {channel: email, action_type: send_email}
    next: a
"""


@pytest.fixture
def defs(tmp_definitions: Callable[[dict[str, str]], Path]) -> Callable[..., DefinitionSet]:
    def make(reentry: str = "never", extra: dict[str, str] | None = None) -> DefinitionSet:
        files = {"audiences/pros.yaml": AUDIENCE,
                 "journeys/cart.yaml": JOURNEY.replace("REENTRY", reentry), **(extra or {})}
        return load_definitions(tmp_definitions(files))

    return make


def ev(name: str, at_days: float = 0, event_id: str | None = None) -> HistoryEvent:
    return HistoryEvent(event_id=event_id or f"{name}@{at_days}", name=name,
                        time=T0 + at_days * DAY)


@pytest.fixture
def pro(facts: Callable[..., Facts]) -> Facts:
    return facts(traits={"plan": "pro"})


def test_event_trigger_enrolls_once(defs: Callable[..., DefinitionSet], pro: Facts) -> None:
    d = defs()
    state, actions = on_event(JourneyState(profile_id="p1"), pro, ev("cart_abandoned"), T0, d)
    assert [(a.action_type, a.enrollment_id) for a in actions] == [("audience_add", "cart#1")]
    assert next_wake(state) == T0 + 2 * DAY
    again, more = on_event(state, pro, ev("cart_abandoned", 0.5), T0 + 0.5 * DAY, d)
    assert more == [] and again == state  # one enrollment at a time


def test_wait_for_event_branch_and_wait(defs: Callable[..., DefinitionSet], pro: Facts) -> None:
    d = defs()
    state, _ = on_event(JourneyState(profile_id="p1"), pro, ev("cart_abandoned"), T0, d)
    state, actions = on_event(state, pro, ev("email_opened", 1), T0 + DAY, d)
    assert [a.step_id for a in actions] == ["pro_mail"]
    assert state.active["cart"].step_id == "nap"
    assert next_wake(state) == T0 + DAY + timedelta(hours=6)
    state, actions = on_timer(state, pro, T0 + 2 * DAY, d)
    assert [(a.action_type, a.step_id) for a in actions] == [("audience_remove", "add")]
    assert state.active == {}


def test_timeout_path(defs: Callable[..., DefinitionSet], facts: Callable[..., Facts]) -> None:
    d, f = defs(), facts()
    state, _ = on_event(JourneyState(profile_id="p1"), f, ev("cart_abandoned"), T0, d)
    same, nothing = on_timer(state, f, T0 + DAY, d)
    assert same == state and nothing == []
    state, actions = on_timer(state, f, T0 + 2 * DAY, d)
    assert [a.action_type for a in actions] == ["audience_remove"]
    assert actions[0].caused_by == f"timer:{(T0 + 2 * DAY).isoformat()}"


def test_exit_criteria_win(defs: Callable[..., DefinitionSet], pro: Facts) -> None:
    d = defs()
    state, _ = on_event(JourneyState(profile_id="p1"), pro, ev("cart_abandoned"), T0, d)
    state, actions = on_event(state, pro, ev("order_placed", 1, "o-1"), T0 + DAY, d)
    assert [(a.action_type, a.caused_by) for a in actions] == [("audience_remove", "o-1")]
    assert state.active == {} and state.last_exit["cart"] == T0 + DAY


@pytest.mark.parametrize(("reentry", "at_days", "enrolls"), [
    ("never", 30, False), ("after_exit", 1.5, True),
    ("{after: P7D}", 5, False), ("{after: P7D}", 8, True),
])
def test_reentry_policy(defs: Callable[..., DefinitionSet], pro: Facts, reentry: str,
                        at_days: float, enrolls: bool) -> None:
    d = defs(reentry)
    state, _ = on_event(JourneyState(profile_id="p1"), pro, ev("cart_abandoned"), T0, d)
    state, _ = on_event(state, pro, ev("order_placed", 1), T0 + DAY, d)
    state, actions = on_event(state, pro, ev("cart_abandoned", at_days), T0 + at_days * DAY, d)
    assert bool(actions) is enrolls
    if enrolls:
        assert actions[0].enrollment_id == "cart#2"


def test_removed_journey_ends_enrollment(defs: Callable[..., DefinitionSet], pro: Facts) -> None:
    state, _ = on_event(JourneyState(profile_id="p1"), pro, ev("cart_abandoned"), T0, defs())
    without = defs().model_copy(update={"journeys": {}})
    state, actions = on_timer(state, pro, T0 + 3 * DAY, without)
    assert [a.action_type for a in actions] == ["audience_remove"] and state.active == {}


def test_audience_trigger_and_loop_guard(defs: Callable[..., DefinitionSet], pro: Facts) -> None:
    d = defs(extra={"journeys/loop.yaml": LOOP})
    state, actions = on_audience_change(JourneyState(profile_id="p1"), pro, ["pros"], [], T0, d,
                                        cause="aud-1")
    assert 1 <= len(actions) <= 2 * 2 + 1  # bounded, not infinite
    assert state.active == {} and state.enrollments == {"loop": 1}
