"""Data actions (streams/activation/writes.py): a journey or schedule step writes the
profile like an event with its own id, once, on the timeline, and every audience sees
the write within the record that caused it; loops are refused when definitions load."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from streams.activation.actions import plan_data
from streams.activation.definitions import DefinitionError, DefinitionSet, Trigger, load_definitions
from streams.activation.facts import facts_from_profile
from streams.activation.governance_rules import GovernanceRules
from streams.activation.runtime import load_state
from streams.activation.schedules import act_on
from streams.activation.steps import UpdateProfile
from streams.activation.writes import MAX_WRITES, apply_write
from streams.core.identity import new_profile_id
from streams.core.pipeline import load_profile, pkey
from streams.core.profile import Profile
from streams.core.sandbox import DictStore
from streams.records import Envelope
from tests.unit.activation.conftest import T0, Clock
from tests.unit.activation.test_runtime import Stage

Defs = Callable[[dict[str, str]], Path]
PROMOTE = """
trigger: {audience: pros}
holdout_percent: 0
steps:
  - id: make_gold
    update_profile: {set: tier, value: gold}
"""
WELCOME = """
trigger: {audience: gold}
holdout_percent: 0
steps:
  - id: hello
    send: {channel: email, action_type: send_email, payload: {template_id: gold}}
"""
FILES = {"audiences/pros.yaml": "condition: {trait: plan, op: eq, value: pro}\n",
         "audiences/gold.yaml": "condition: {trait: tier, op: eq, value: gold}\n",
         "journeys/promote.yaml": PROMOTE, "journeys/welcome.yaml": WELCOME}


def action(op: str, **spec: object) -> UpdateProfile:
    return UpdateProfile.model_validate({op: "score", **spec})


def base(profile_of: Callable[..., Profile], envelope: Callable[..., Envelope],
         **traits: object) -> Profile:
    return profile_of("p1", envelope("e1", "identify", T0, "c1", **traits))


def test_set_clear_and_increment_write_the_trait_as_timeline_events(
        profile_of: Callable[..., Profile], envelope: Callable[..., Envelope]) -> None:
    profile = base(profile_of, envelope, score="x")  # not a number: counts as 0
    steps = [action("increment", by=5), action("increment"), action("set", value=40),
             action("clear")]
    seen = []
    for i, spec in enumerate(steps):
        write = plan_data("p1", spec, journey_id="j", step_id=f"s{i}", enrollment_id="j#1",
                          trigger="e1")
        applied = apply_write(profile, write, T0, 50)
        assert applied is not None
        profile, event = applied
        seen.append(facts_from_profile(profile).traits["score"])
        assert event.event_id == write.action_id
    assert seen == [5, 6, 40, None]
    names = [e["event_name"] for e in profile.timeline][:4]
    assert names == ["trait_cleared", "trait_set", "score_incremented", "score_incremented"]
    entry = profile.timeline[0]
    assert entry["detail"] == {"journey_id": "j", "step_id": "s3", "op": "clear",
                               "trait": "score", "caused_by": "e1"}
    assert entry["summary"] == "cleared score (by journey j step s3)"


def test_a_write_is_applied_once_and_after_what_the_profile_saw(
        profile_of: Callable[..., Profile], envelope: Callable[..., Envelope]) -> None:
    later = T0 + timedelta(hours=1)  # an event stamped after activation's "now"
    profile = profile_of("p1", envelope("e1", "identify", later, "c1", tier="silver"))
    write = plan_data("p1", UpdateProfile.model_validate({"set": "tier", "value": 1}),
                      journey_id="j", step_id="s", enrollment_id="j#1", trigger="e1")
    applied = apply_write(profile, write, T0, 50)
    assert applied is not None
    written, event = applied
    assert written.traits["tier"][0] == 1  # not lost to the newer stamp it was decided on
    assert event.time > later and written.newest_event_us == profile.newest_event_us
    assert apply_write(written, write, T0, 50) is None  # its id is on the timeline: once


def test_a_write_moves_the_profile_into_another_audience_within_the_same_record(
        tmp_definitions: Defs, clock: Clock, envelope: Callable[..., Envelope]) -> None:
    """One event: pros entered, the promote journey writes tier=gold, the gold audience
    is entered and its journey emails: all in that event's one emission (one record, one
    transaction), and the stored profile has the trait."""
    stage = Stage(load_definitions(tmp_definitions(FILES)), clock)
    stage.event(envelope("c1-consent", "consent_updated", clock.now, "c1",
                         {"consent_type": "marketing:email", "status": "GRANTED"}))
    stage.sent.clear()
    stage.event(envelope("c1-pro", "identify", clock.now, "c1", plan="pro"))
    assert len(stage.sent) == 1
    emission = stage.sent[0]
    pid = new_profile_id("cid:c1")
    [write] = emission.writes
    assert (write["op"], write["trait"], write["journey_id"]) == ("set", "tier", "promote")
    assert [(c["audience_id"], c["change"], c["caused_by"]) for c in emission.changes] == [
        ("pros", "entered", "c1-pro"), ("gold", "entered", write["action_id"])]
    assert [(c["channel"], c["journey_id"]) for c in emission.commands] == [
        ("email", "welcome")]
    profile = load_profile(stage.store, pid)
    assert profile is not None and profile.traits["tier"][0] == "gold"
    assert load_state(stage.store, pid)[0].memberships == ["gold", "pros"]
    timeline = stage.stages.timeline(pid)
    assert [e["event_name"] for e in timeline if e["event_id"] == write["action_id"]] == [
        "trait_set"]


def test_a_scheduled_write(tmp_definitions: Defs, profile_of: Callable[..., Profile],
                           envelope: Callable[..., Envelope]) -> None:
    schedule = ("cron: '0 9 * * *'\ntimezone: UTC\naudience: pros\n"
                "update_profile: {set: tier, value: gold}\n")
    defs = load_definitions(tmp_definitions({**FILES, "schedules/nightly.yaml": schedule}))
    store = DictStore()
    profile = profile_of("p1", envelope("e1", "identify", T0, "c1", plan="pro"))
    store[pkey("p1")] = profile.to_json()
    emission = act_on(store, defs.schedules["nightly"], T0, profile, T0, defs, 50)
    assert emission is not None
    assert [c["audience_id"] for c in emission.changes] == ["gold", "pros"]
    assert emission.writes[0]["schedule_id"] == "nightly"
    stored = load_profile(store, "p1")
    assert stored is not None and stored.traits["tier"][0] == "gold"
    assert act_on(store, defs.schedules["nightly"], T0, stored, T0, defs, 50) is None


@pytest.mark.parametrize(("files", "expected"), [
    ({"audiences/pros.yaml": "condition: {trait: tier, op: ne, value: gold}\n",
      "journeys/promote.yaml": PROMOTE},
     "journeys/promote.yaml: steps[0].update_profile: a loop: journey promote writes "
     "traits.tier, which audience pros reads, and entering it starts journey promote"),
    ({**FILES, "journeys/welcome.yaml": WELCOME.replace(
        "send: {channel: email, action_type: send_email, payload: {template_id: gold}}",
        "update_profile: {set: plan, value: pro}")},
     "a loop: journey promote writes traits.tier, which audience gold reads, and entering "
     "it starts journey welcome; journey welcome writes traits.plan"),
    ({"journeys/echo.yaml": "trigger: {event: trait_set}\nsteps:\n"
                            "  - {id: again, update_profile: {set: x, value: 1}}\n"},
     "journeys/echo.yaml: steps[0].update_profile: a loop: journey echo writes the "
     "trait_set event, which starts journey echo"),
])
def test_loops_are_refused_with_the_chain(tmp_definitions: Defs, files: dict[str, str],
                                          expected: str) -> None:
    with pytest.raises(DefinitionError) as info:
        load_definitions(tmp_definitions(files))
    assert expected in str(info.value)


def test_a_loop_the_validation_did_not_see_stops_at_the_bound(
        tmp_definitions: Defs, clock: Clock, envelope: Callable[..., Envelope],
        caplog: pytest.LogCaptureFixture) -> None:
    """Built without load_definitions' checks (two versions of a staged rollout can loop
    together though each alone does not): the record still ends."""
    count = load_definitions(tmp_definitions({"journeys/count.yaml": (
        "trigger: {event: poke}\nholdout_percent: 0\nsteps:\n"
        "  - {id: up, update_profile: {increment: n}}\n")})).journeys["count"]
    echo = count.model_copy(update={"id": "echo", "reentry": "after_exit",
                                    "trigger": Trigger(event="score_incremented")})
    defs = DefinitionSet(version="loop", audiences={}, journeys={"count": count, "echo": echo},
                         governance=GovernanceRules())
    stage = Stage(defs, clock)
    with caplog.at_level(logging.WARNING, logger="streams.activation.writes"):
        stage.event(envelope("p", "poke", clock.now, "c1"))
    profile = load_profile(stage.store, new_profile_id("cid:c1"))
    assert profile is not None and profile.traits["n"][0] == MAX_WRITES
    assert "left unapplied" in caplog.text


@pytest.mark.parametrize(("spec", "message"), [
    ({"set": "a"}, "set needs a value"),
    ({"set": "a", "clear": "b", "value": 1}, "exactly one of set, clear, increment"),
    ({"clear": "a", "value": 1}, "value goes with set only"),
    ({"set": "a", "value": 1, "by": 2}, "by goes with increment only"),
    ({"increment": "traits.x"}, "String should match pattern"),
])
def test_update_profile_is_validated(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UpdateProfile.model_validate(spec)


def test_repository_definitions_have_no_loop_and_write_in_dunning_and_win_back(
        definitions: DefinitionSet) -> None:
    writes = {(jid, s.id, s.update_profile.op) for jid, j in definitions.journeys.items()
              for s in j.steps if s.update_profile is not None}
    assert writes == {("dunning", "mark_at_risk", "set"), ("dunning", "clear_mark", "clear"),
                      ("win_back", "count_offer", "increment")}
