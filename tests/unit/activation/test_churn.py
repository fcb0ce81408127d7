"""The guide's churn scenario, end to end through the pure functions (no Kafka, no sleeps).

Billing sends a contract end date; the customer enters "contract ending" exactly 30 days
before it (the one timer per profile says when); the churn journey emails and retargets;
renewing ends audience and journey at once and removes the paid-media entry again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from streams.activation.definitions import DefinitionSet
from streams.activation.engine import (
    ActivationState,
    Output,
    on_profile_event,
    on_profile_merged_away,
    on_profile_timer,
)
from streams.activation.facts import HistoryEvent, facts_from_profile
from streams.core.profile import Profile
from streams.records import Envelope
from tests.unit.activation.conftest import T0, Clock, pick_profile_id

END = date(2026, 5, 1)
ENTRY = datetime(2026, 4, 1, tzinfo=UTC)  # END (UTC midnight) - 30 days; 02:00 in Berlin
RELEASE = datetime(2026, 4, 1, 6, 0, tzinfo=UTC)  # 08:00 in Berlin: quiet hours end
JOURNEY = "churn_prevention"


class Customer:
    """One customer's profile and activation state, driven like the runtime would."""

    def __init__(self, profile_id: str, definitions: DefinitionSet,
                 envelope: Callable[..., Envelope], profile_of: Callable[..., Profile]) -> None:
        self.definitions, self.envelope, self.profile_of = definitions, envelope, profile_of
        self.profile = Profile(profile_id=profile_id)
        self.state = ActivationState.new(profile_id)
        self.outputs: list[Output] = []

    def event(self, event_id: str, name: str, at: datetime,
              payload: dict[str, Any] | None = None, **props: Any) -> Output:
        env = self.envelope(event_id, name, at, customer=self.profile.profile_id,
                            payload=payload, **props)
        self.profile = self.profile_of(self.profile.profile_id, env, base=self.profile)
        seen = HistoryEvent(event_id=event_id, name=name, time=at, properties=props)
        self.state, out = on_profile_event(self.state, facts_from_profile(self.profile), seen,
                                           at, self.definitions)
        self.outputs.append(out)
        return out

    def timer(self, at: datetime) -> Output:
        self.state, out = on_profile_timer(self.state, facts_from_profile(self.profile), at,
                                           self.definitions)
        self.outputs.append(out)
        return out

    def onboard(self, at: datetime, *, email_consent: str = "GRANTED") -> Output:
        self.event("e-tz", "identify", at, timezone="Europe/Berlin")
        self.event("e-c1", "consent_updated", at,
                   {"consent_type": "marketing:email", "status": email_consent})
        self.event("e-c2", "consent_updated", at,
                   {"consent_type": "marketing:paid_media", "status": "GRANTED"})
        return self.event("e-sub", "subscription_started", at, {
            "plan": "pro", "start_date": date(2025, 5, 1), "subscription_id": "s1",
            "contract_end_date": END})


@pytest.fixture
def customer(definitions: DefinitionSet, envelope: Callable[..., Envelope],
             profile_of: Callable[..., Profile]) -> Callable[..., Customer]:
    gov = definitions.governance

    def make(*, held_out: bool = False) -> Customer:
        pid = pick_profile_id(JOURNEY, gov.holdout_percent, gov.holdout_salt, held_out=held_out)
        return Customer(pid, definitions, envelope, profile_of)

    return make


def by_channel(out: Output) -> dict[str, dict[str, Any]]:
    return {c["channel"]: c for c in out.commands}


def test_enters_30_days_before_end_and_journey_starts(customer: Callable[..., Customer],
                                                      clock: Clock) -> None:
    c = customer()
    out = c.onboard(clock.now)
    assert out.entered == [] and out.commands == []
    assert out.wake_at == ENTRY  # next_change: contract_end_date - 30 days

    out = c.timer(clock.set(ENTRY))
    assert out.entered == ["contract_ending"]
    commands = by_channel(out)
    # 02:00 in Berlin: the email is held until the end of quiet hours (08:00 CEST =
    # 06:00 UTC); only what is due now leaves.
    assert set(commands) == {"paid_media"}
    assert commands["paid_media"]["action_type"] == "audience_add"
    assert commands["paid_media"]["not_before"] is None
    assert {(d.channel, d.outcome) for d in out.decisions} == {
        ("email", "delayed"), ("paid_media", "sent")}
    assert [h.not_before for h in c.state.held] == [RELEASE]
    assert c.state.journeys.active[JOURNEY].waiting_for == "email_clicked"
    assert out.wake_at == RELEASE  # before the wait_for_event timeout (14 days)

    out = c.timer(clock.set(RELEASE))
    email = by_channel(out)["email"]
    assert email["payload"] == {"template_id": "churn_reminder"}
    assert email["not_before"] is None and email["created_at"] == RELEASE
    assert [(d.outcome, d.rule) for d in out.decisions] == [("sent", "released")]
    assert c.state.held == []
    assert out.wake_at == ENTRY + timedelta(days=14)


def test_renewal_before_quiet_hours_end_cancels_the_held_reminder(
        customer: Callable[..., Customer], clock: Clock) -> None:
    """The guide's scenario: the customer renews at 02:46; no reminder is ever sent."""
    c = customer()
    c.onboard(clock.now)
    c.timer(clock.set(ENTRY))
    out = c.event("e-renew", "contract_renewed", clock.set(ENTRY + timedelta(minutes=46)),
                  {"new_end_date": date(2027, 5, 1), "subscription_id": "s1"})
    assert [x["action_type"] for x in out.commands] == ["audience_remove"]
    cancelled = next(d for d in out.decisions if d.outcome == "cancelled")
    assert (cancelled.channel, cancelled.rule) == ("email", "journey_exit")
    assert "left journey churn_prevention" in cancelled.reason
    assert c.state.held == []
    out = c.timer(clock.set(RELEASE))
    assert out.commands == [] and out.decisions == []
    assert not any(x["channel"] == "email" for o in c.outputs for x in o.commands)


def test_consent_revoked_while_held_cancels_with_the_consent_rule(
        customer: Callable[..., Customer], clock: Clock) -> None:
    c = customer()
    c.onboard(clock.now)
    c.timer(clock.set(ENTRY))
    c.event("e-c3", "consent_updated", clock.set(ENTRY + timedelta(hours=1)),
            {"consent_type": "marketing:email", "status": "WITHDRAWN"})
    out = c.timer(clock.set(RELEASE))
    assert out.commands == []
    assert [(d.channel, d.outcome, d.rule) for d in out.decisions] == [
        ("email", "cancelled", "consent")]
    assert c.state.held == [] and all(s.channel != "email" for s in c.state.sends)


def test_a_merge_cancels_every_held_action(customer: Callable[..., Customer],
                                           clock: Clock) -> None:
    c = customer()
    c.onboard(clock.now)
    c.timer(clock.set(ENTRY))
    c.state, out = on_profile_merged_away(c.state, facts_from_profile(c.profile),
                                          ENTRY + timedelta(minutes=5), c.definitions, "e-link")
    assert [(d.channel, d.outcome, d.rule) for d in out.decisions if d.channel == "email"] == [
        ("email", "cancelled", "merge")]
    assert c.state.held == []


def test_renewal_exits_audience_and_journey_and_removes_paid_media(
        customer: Callable[..., Customer], clock: Clock) -> None:
    c = customer()
    c.onboard(clock.now)
    added = by_channel(c.timer(clock.set(ENTRY)))["paid_media"]
    out = c.event("e-renew", "contract_renewed", clock.advance(timedelta(days=4)),
                  {"new_end_date": date(2027, 5, 1), "subscription_id": "s1"})
    assert out.exited == ["contract_ending"]
    assert [(x["channel"], x["action_type"]) for x in out.commands] == [
        ("paid_media", "audience_remove")]
    remove = out.commands[0]
    assert remove["payload"] == added["payload"] == {"audience_id": "churn_risk"}
    assert remove["caused_by_event_id"] == "e-renew"
    assert out.decisions[0].rule == "removal"
    assert c.state.journeys.active == {} and c.state.memberships == []
    # the next timer is the new end date - 30 days
    assert out.wake_at == datetime(2027, 4, 1, tzinfo=UTC)


def test_no_email_consent_means_no_email_and_a_decision_saying_why(
        customer: Callable[..., Customer], clock: Clock) -> None:
    c = customer()
    c.onboard(clock.now, email_consent="WITHDRAWN")
    out = c.timer(clock.set(ENTRY))
    assert [x["channel"] for x in out.commands] == ["paid_media"]
    email = next(d for d in out.decisions if d.channel == "email")
    assert (email.outcome, email.rule) == ("withheld", "consent")
    assert "marketing:email is WITHDRAWN" in email.reason
    assert email.to_timeline()["decision_id"] == email.decision_id


def test_holdout_is_the_same_on_every_channel(customer: Callable[..., Customer],
                                              clock: Clock) -> None:
    c = customer(held_out=True)
    c.onboard(clock.now)
    out = c.timer(clock.set(ENTRY))
    assert out.commands == []
    assert {(d.channel, d.rule) for d in out.decisions} == {
        ("email", "holdout"), ("paid_media", "holdout")}
    # never added, so renewing removes nothing
    out = c.event("e-renew", "contract_renewed", clock.advance(timedelta(days=1)),
                  {"new_end_date": date(2027, 5, 1), "subscription_id": "s1"})
    assert out.exited == ["contract_ending"] and out.commands == []


def test_journey_runs_to_the_end_without_renewal(customer: Callable[..., Customer],
                                                 clock: Clock) -> None:
    c = customer()
    c.onboard(clock.now)
    c.timer(clock.set(ENTRY))
    c.timer(clock.set(RELEASE))  # the held reminder leaves
    out = c.timer(clock.set(ENTRY + timedelta(days=14)))  # no click: on to last_week
    assert out.commands == []
    assert out.wake_at == datetime(2026, 4, 24, tzinfo=UTC)  # END - 7 days
    out = c.timer(clock.set(datetime(2026, 4, 24, 9, 0, tzinfo=UTC)))
    assert [x["payload"] for x in out.commands] == [{"template_id": "churn_final_reminder"}]
    out = c.timer(clock.set(datetime(2026, 5, 1, 12, 0, tzinfo=UTC)))
    assert out.exited == ["contract_ending"]
    assert [x["action_type"] for x in out.commands] == ["audience_remove"]
    assert c.state.journeys.active == {}


def test_replay_gives_the_same_ids(customer: Callable[..., Customer]) -> None:
    runs = []
    for _ in range(2):
        c = customer()
        c.onboard(T0)
        c.timer(ENTRY)
        c.timer(RELEASE)
        c.event("e-renew", "contract_renewed", ENTRY + timedelta(days=1),
                {"new_end_date": date(2027, 5, 1), "subscription_id": "s1"})
        runs.append([(x["action_id"], x["decision_id"]) for o in c.outputs for x in o.commands])
    assert runs[0] == runs[1] and len(runs[0]) == 3
    assert len({a for a, _ in runs[0]}) == 3


def test_state_is_json_serialisable(customer: Callable[..., Customer], clock: Clock) -> None:
    c = customer()
    c.onboard(clock.now)
    c.timer(clock.set(ENTRY))
    raw = c.state.model_dump_json()
    assert ActivationState.model_validate_json(raw) == c.state


def short_journey_customer(definitions: DefinitionSet, envelope: Callable[..., Envelope],
                           profile_of: Callable[..., Profile]) -> Customer:
    """A customer of the churn journey cut to its first step (the reminder email)."""
    journey = definitions.journeys[JOURNEY]
    short = journey.model_copy(update={"steps": journey.steps[:1]})
    defs = definitions.model_copy(update={"journeys": {**definitions.journeys,
                                                       JOURNEY: short}})
    gov = defs.governance
    return Customer(pick_profile_id(JOURNEY, gov.holdout_percent, gov.holdout_salt,
                                    held_out=False), defs, envelope, profile_of)


def test_a_held_send_that_ends_its_journey_still_leaves(
        definitions: DefinitionSet, envelope: Callable[..., Envelope],
        profile_of: Callable[..., Profile], clock: Clock) -> None:
    """A journey whose last step is a send in quiet hours completes at once: its held
    action is not cancelled by that completion (only an exit cancels)."""
    journey = definitions.journeys[JOURNEY]
    short = journey.model_copy(update={"steps": journey.steps[:1]})
    defs = definitions.model_copy(update={"journeys": {**definitions.journeys,
                                                       JOURNEY: short}})
    gov = defs.governance
    c = Customer(pick_profile_id(JOURNEY, gov.holdout_percent, gov.holdout_salt,
                                 held_out=False), defs,
                 envelope, profile_of)
    c.onboard(clock.now)
    out = c.timer(clock.set(ENTRY))
    assert [(d.channel, d.outcome) for d in out.decisions] == [("email", "delayed")]
    assert JOURNEY not in c.state.journeys.active and len(c.state.held) == 1
    out = c.timer(clock.set(RELEASE))
    assert [(x["channel"], x["payload"]) for x in out.commands] == [
        ("email", {"template_id": "churn_reminder"})]


def test_a_renewal_cancels_the_held_send_of_a_completed_journey(
        definitions: DefinitionSet, envelope: Callable[..., Envelope],
        profile_of: Callable[..., Profile], clock: Clock) -> None:
    c = short_journey_customer(definitions, envelope, profile_of)
    c.onboard(clock.now)
    c.timer(clock.set(ENTRY))
    out = c.event("e-renew", "contract_renewed", clock.set(ENTRY + timedelta(minutes=46)),
                  {"new_end_date": date(2027, 5, 1), "subscription_id": "s1"})
    assert [(d.channel, d.outcome, d.rule) for d in out.decisions] == [
        ("email", "cancelled", "journey_exit")]
    assert c.timer(clock.set(RELEASE)).commands == []
