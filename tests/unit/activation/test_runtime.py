"""Activation inside the profile stage over dict stores: decisions, timers, merges.

The same stages the worker runs (streams/core/sandbox.py: identity resolution, then
the profile stage with the activation hook), on in-memory stores and an injected
clock: no broker, no sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from streams.activation.definitions import DefinitionSet
from streams.activation.governance import in_holdout
from streams.activation.runtime import (
    TIMER,
    Emission,
    TimerContext,
    activation_view,
    arm_timer,
    clock_now,
    drop_timer,
    due_timers,
    fire_timer,
    set_clock,
    timer_key,
)
from streams.core.identity import new_profile_id
from streams.core.pipeline import APPLIED, StageConfig, canonical_id, load_profile
from streams.core.routing import partition_of
from streams.core.sandbox import DictStore
from streams.core.sandbox import Sandbox as Stages
from streams.records import Envelope, Identifiers
from tests.unit.activation.conftest import T0, Clock, end_date

CFG = StageConfig(timedelta(days=7), timedelta(seconds=5), 100)
JOURNEY = "churn_prevention"


def customer(held_out: bool = False) -> str:
    """A customer id whose profile is (or is not) in the churn journey's holdout."""
    return next(f"cust-{n}" for n in range(10_000)
                if in_holdout(new_profile_id(f"cid:cust-{n}"), JOURNEY, 10, "2026") == held_out)


class Stage:
    """The identity and profile stages (one profile partition unless told), with the
    timers of every partition fired on ``tick``, as the agents run them."""

    def __init__(self, definitions: DefinitionSet | None, clock: Clock,
                 partitions: int = 1) -> None:
        self.stages = Stages(CFG, partitions, definitions)
        self.definitions, self.clock = definitions, clock
        self.store = self.stages.parts[0]
        self.sent = self.stages.sent

    def event(self, env: Envelope) -> str:
        return self.stages.send(env, self.clock.now).status

    def tick(self) -> list[Emission]:
        fired: list[Emission] = []
        for store in self.stages.parts:
            ctx = TimerContext(lambda p, s=store: load_profile(s, p),
                               lambda p, s=store: canonical_id(s, p), 100)
            self.stages.position += 1
            out = [fire_timer(store, key, pid, self.stages.position, self.clock.now,
                              self.definitions, ctx)
                   for key, pid in due_timers(store.scan(TIMER, 100), self.clock.now)]
            fired += [e for e in out if e is not None]
        self.sent.extend(fired)
        return fired

    def commands(self) -> list[tuple[str, str]]:
        return [(c["channel"], c["action_type"]) for e in self.sent for c in e.commands]


@pytest.fixture
def stage(definitions: DefinitionSet, clock: Clock) -> Stage:
    return Stage(definitions, clock)


@pytest.fixture
def onboard(envelope: Callable[..., Envelope]) -> Callable[..., None]:
    def run(stage: Stage, cust: str, email: str = "GRANTED") -> None:
        at = stage.clock.now
        stage.event(envelope(f"{cust}-tz", "identify", at, cust, timezone="Europe/Berlin"))
        for consent, status in (("marketing:email", email), ("marketing:paid_media", "GRANTED")):
            stage.event(envelope(f"{cust}-{consent}", "consent_updated", at, cust,
                                 {"consent_type": consent, "status": status}))

    return run


def subscribe(envelope: Callable[..., Envelope], cust: str, at: datetime, days: int) -> Envelope:
    return envelope(f"{cust}-sub", "subscription_started", at, cust,
                    {"plan": "pro", "start_date": at.date(), "contract_end_date": end_date(days)})


def test_entry_on_event_sends_commands_and_notes_the_timeline(
        stage: Stage, onboard: Callable[..., None], envelope: Callable[..., Envelope]) -> None:
    cust = customer()
    onboard(stage, cust)
    assert stage.event(subscribe(envelope, cust, T0, 20)) == APPLIED
    assert stage.commands() == [("email", "send_email"), ("paid_media", "audience_add")]
    change = next(c for e in stage.sent for c in e.changes)
    assert (change["audience_id"], change["change"]) == ("contract_ending", "entered")
    timeline = stage.stages.timeline(new_profile_id(f"cid:{cust}"))
    kinds = [e["kind"] for e in timeline]
    assert kinds.count("decision") == 2 and kinds.count("audience") == 1
    # The notes are beside the profile, not in its event history (which audiences read).
    profile = load_profile(stage.store, new_profile_id(f"cid:{cust}"))
    assert profile is not None and len(profile.timeline) == kinds.count("event") == 4


def test_renewal_exits_and_removes_the_paid_media_entry(
        stage: Stage, onboard: Callable[..., None], envelope: Callable[..., Envelope]) -> None:
    cust = customer()
    onboard(stage, cust)
    stage.event(subscribe(envelope, cust, T0, 20))
    stage.clock.advance(timedelta(days=1))
    stage.event(envelope(f"{cust}-renew", "contract_renewed", stage.clock.now, cust,
                         {"new_end_date": end_date(400)}))
    assert stage.commands()[-1] == ("paid_media", "audience_remove")
    changes = [(c["audience_id"], c["change"]) for e in stage.sent for c in e.changes]
    assert changes == [("contract_ending", "entered"), ("contract_ending", "exited")]


def test_no_consent_no_email_and_the_timeline_says_why(
        stage: Stage, onboard: Callable[..., None], envelope: Callable[..., Envelope]) -> None:
    cust = customer()
    onboard(stage, cust, email="DENIED")
    stage.event(subscribe(envelope, cust, T0, 20))
    assert ("email", "send_email") not in stage.commands()
    timeline = stage.stages.timeline(new_profile_id(f"cid:{cust}"))
    withheld = [e for e in timeline if e["event_name"] == "decision.withheld"]
    assert withheld and withheld[0]["detail"]["rule"] == "consent"


def test_time_alone_brings_the_customer_in_through_the_timer(
        stage: Stage, onboard: Callable[..., None], envelope: Callable[..., Envelope]) -> None:
    cust = customer()
    onboard(stage, cust)
    stage.event(subscribe(envelope, cust, T0, 40))
    assert stage.commands() == [] and stage.tick() == []
    stage.clock.advance(timedelta(days=10, hours=2))  # past "30 days before the end", noon UTC
    fired = stage.tick()
    assert [c["audience_id"] for e in fired for c in e.changes] == ["contract_ending"]
    assert stage.commands() == [("email", "send_email"), ("paid_media", "audience_add")]
    assert stage.tick() == []  # re-armed for the next change, not due again


def test_a_profile_merged_away_leaves_its_audiences_and_journeys(
        definitions: DefinitionSet, clock: Clock, onboard: Callable[..., None],
        envelope: Callable[..., Envelope]) -> None:
    """Both profiles are in the churn journey (paid-media audience added), in different
    partitions; an event links them. The merged-away one exits its audience and journey
    (removal included) on its partition and keeps no timer; the survivor, evaluated
    again with the merged facts, stays in the audience; the loser's notes travel with the
    merge into the survivor's timeline."""
    stage = Stage(definitions, clock, partitions=3)
    eligible = [c for c in (f"cust-{n}" for n in range(10_000))
                if not in_holdout(new_profile_id(f"cid:{c}"), JOURNEY, 10, "2026")]
    one = eligible[0]
    two = next(c for c in eligible
               if partition_of(new_profile_id(f"cid:{c}"), 3)
               != partition_of(new_profile_id(f"cid:{one}"), 3))
    for cust in (one, two):
        onboard(stage, cust)
        stage.event(subscribe(envelope, cust, T0, 20))
    winner, loser = sorted(new_profile_id(f"cid:{c}") for c in (one, two))
    stage.sent.clear()
    link = replace(envelope("link", "identify", stage.clock.now, one),
                   identifiers=Identifiers(customer_id=one, anonymous_id="device-9"))
    stage.event(link)
    again = replace(envelope("link-2", "identify", stage.clock.now, two),
                    identifiers=Identifiers(customer_id=two, anonymous_id="device-9"))
    stage.event(again)
    assert stage.stages.locate(loser)[1] == winner
    # Published under the winner's key, before anything the winner adds (same partition
    # of each action topic), though the commands name the loser.
    retired = next(e for e in stage.sent if e.commands and e.commands[0]["profile_id"] == loser)
    assert retired.profile_id == winner
    assert [c["action_type"] for c in retired.commands] == ["audience_remove"]
    assert [(c["audience_id"], c["change"]) for c in retired.changes] == \
        [("contract_ending", "exited")]
    loser_store = stage.stages.parts[partition_of(loser, 3)]
    view = activation_view(loser_store, loser)
    assert view["audiences"] == [] and view["journeys"] == {} and view["next_timer"] is None
    winner_store = stage.stages.parts[partition_of(winner, 3)]
    assert activation_view(winner_store, winner)["audiences"] == ["contract_ending"]
    survivor = stage.stages.profile(winner)
    assert survivor is not None and survivor.order_count == 0
    noted = [e for e in stage.stages.timeline(winner) if e["kind"] == "audience"
             and e["detail"]["change"] == "exited"]
    assert noted and noted[0]["event_id"] == retired.changes[0]["change_id"]
    assert noted[0]["detail"]["profile_id"] == loser


def test_without_definitions_nothing_is_emitted(
        clock: Clock, envelope: Callable[..., Envelope]) -> None:
    stage = Stage(None, clock)
    stage.event(subscribe(envelope, "c1", T0, 20))
    assert stage.sent == []


def test_emission_json_round_trip_keeps_times(stage: Stage, onboard: Callable[..., None],
                                              envelope: Callable[..., Envelope]) -> None:
    cust = customer()
    onboard(stage, cust)
    stage.event(subscribe(envelope, cust, T0, 20))
    emission = next(e for e in stage.sent if e.commands)
    again = Emission.from_json(emission.to_json())
    assert again == emission
    assert isinstance(again.commands[0]["created_at"], datetime)


def test_arm_timer_keeps_one_timer_per_profile() -> None:
    store = DictStore()
    arm_timer(store, "p1", T0)
    arm_timer(store, "p1", T0 + timedelta(days=1))
    assert [k for k in store if k.startswith(TIMER)] == [timer_key(T0 + timedelta(days=1), "p1")]
    arm_timer(store, "p1", None)
    assert store == {}


def test_a_dropped_timer_takes_its_pointer_and_the_same_wake_arms_again() -> None:
    store = DictStore()
    arm_timer(store, "p1", T0)
    drop_timer(store, timer_key(T0, "p1"), "p1")  # e.g. its check raised
    assert store == {}
    arm_timer(store, "p1", T0)
    assert store[timer_key(T0, "p1")] == b"" and store[b"w:p1"] == timer_key(T0, "p1")


def test_due_timers_stop_at_now() -> None:
    store = DictStore()
    for pid, days in (("a", 1), ("b", 2), ("c", 3)):
        arm_timer(store, pid, T0 + timedelta(days=days))
    due = due_timers(store.scan(TIMER, 10), T0 + timedelta(days=2))
    assert [pid for _, pid in due] == ["a", "b"]


def test_manual_clock() -> None:
    store = DictStore()
    wall = T0 + timedelta(days=3)
    assert clock_now(store, True, wall) == wall
    set_clock(store, T0)
    assert clock_now(store, True, wall) == T0
    assert clock_now(store, False, wall) == wall


def test_activation_view_explains_the_state(
        stage: Stage, onboard: Callable[..., None], envelope: Callable[..., Envelope]) -> None:
    cust = customer()
    onboard(stage, cust)
    stage.event(subscribe(envelope, cust, T0, 20))
    view = activation_view(stage.store, new_profile_id(f"cid:{cust}"))
    assert view["audiences"] == ["contract_ending"]
    assert view["journeys"][JOURNEY]["step_id"] == "wait_for_click"
    assert view["next_timer"] is not None
