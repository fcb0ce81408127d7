"""The cheaper forms of the per-event work give what the general code gives: change ids
hashed from joined parts, notes built as dict literals, one formatted instant per
record's decisions, cached history windows, ints compared without Decimal, the facts'
index built in one pass."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from streams.activation.channels import ActionTypeSpec, ChannelCap, ChannelDef
from streams.activation.compiled import compile_condition
from streams.activation.conditions import TraitCondition
from streams.activation.definitions import DefinitionSet
from streams.activation.emission import emission_of
from streams.activation.engine import ActivationState, Output
from streams.activation.facts import Facts, facts_from_profile
from streams.activation.governance import decide, record_send
from streams.activation.model import Decision, SendRecord, json_time, stable_id
from streams.activation.notes import _CHANGE_DETAIL, _DECISION_DETAIL, _iso_micros, notes_of
from streams.activation.runtime import history_event
from streams.core.profile import Profile, apply_event, micros
from streams.core.timeline_json import ENTRIES, encode_entry
from streams.records import Envelope
from tests.unit.activation.conftest import T0
from tests.unit.activation.test_fast_paths import planned


def _note(entry_id: str, name: str, at_us: int, summary: str, detail: dict[str, Any]
          ) -> dict[str, Any]:
    return {"event_id": entry_id, "event_name": name, "time_us": at_us,
            "summary": summary[:120], "late": False, "kind": name.split(".")[0],
            "detail": detail}


def reference_notes(profile_id: str, decisions: list[dict[str, Any]],
                    changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """notes_of as it was written before its dict literals (the general form)."""
    notes = []
    for d in decisions:
        summary = f"{d['channel']} {d['action_type']} {d['outcome']}: {d['rule']} ({d['reason']})"
        detail = {k: d[k] for k in _DECISION_DETAIL if d.get(k) not in (None, {})}
        notes.append(_note(d["decision_id"], f"decision.{d['outcome']}",
                           _iso_micros(d["decided_at"]), summary, detail))
    for c in changes:
        detail = {k: c[k] for k in _CHANGE_DETAIL if k in c}
        if c["profile_id"] != profile_id:
            detail["profile_id"] = c["profile_id"]
        notes.append(_note(c["change_id"], f"audience.{c['change']}", micros(c["changed_at"]),
                           f"{c['change']} audience {c['audience_id']}", detail))
    return notes


def _emitted(facts: Facts, definitions: DefinitionSet, now: datetime) -> tuple[
        list[dict[str, Any]], list[dict[str, Any]]]:
    decisions = [decide(planned(), who, [], definitions.governance, at, "v1")
                 for who in (facts, Facts("p1", consent={"marketing:email": "GRANTED"}))
                 for at in (now, now.replace(hour=23))]
    out = Output(decisions=decisions, entered=["a1", "a2"], exited=["a0"])
    state = ActivationState.new("p1")
    emission = emission_of(state, state, out, facts, "ev1", now, "v1")
    return emission.decisions, emission.changes


@pytest.mark.parametrize("now", [T0, T0.astimezone(timezone(timedelta(hours=2))),
                                 T0.astimezone(timezone(timedelta(hours=1, seconds=30)))])
def test_emitted_records_are_what_the_general_code_makes(
        facts: Callable[..., Facts], definitions: DefinitionSet, now: datetime) -> None:
    who = facts()
    decisions, changes = _emitted(who, definitions, now)
    assert [c["change_id"] for c in changes] == [
        stable_id("audience", "p1", a, change, "ev1")
        for change, a in (("entered", "a1"), ("entered", "a2"), ("exited", "a0"))]
    for timeline in decisions:
        decision = Decision.model_validate(timeline)
        assert timeline == decision.to_timeline() == decision.model_dump(mode="json")
    merged = [*changes, {**changes[0], "profile_id": "p2"},
              {k: v for k, v in changes[1].items() if k != "caused_by"}]
    assert notes_of("p1", decisions, merged) == reference_notes("p1", decisions, merged)


def test_a_shared_stamp_is_only_used_for_its_instant(facts: Callable[..., Facts],
                                                    definitions: DefinitionSet) -> None:
    decision = decide(planned(), facts(), [], definitions.governance, T0, "v1")
    other = T0 + timedelta(seconds=1)
    assert decision.to_timeline(other, json_time(other)) == decision.to_timeline()
    assert decision.to_timeline(T0, json_time(T0)) == decision.to_timeline()


def test_the_kept_history_is_the_longest_window(definitions: DefinitionSet) -> None:
    own = ChannelDef(id="sms", action_types={"send_sms": ActionTypeSpec()},
                     frequency_caps=[ChannelCap(max_sends=1, per=timedelta(days=60))])
    rules = definitions.governance.with_channels({"sms": own, "email": ChannelDef(
        id="email", action_types={"send_email": ActionTypeSpec()})})
    history = [SendRecord(action_id=f"a{d}", channel=channel, at=T0 - timedelta(days=d))
               for d in (1, 10, 40, 80) for channel in ("email", "sms")]
    decision = decide(planned(), Facts("p1", consent={"marketing:email": "GRANTED"}), history,
                      rules, T0, "v1")
    with_sms = record_send(history, decision, rules, T0)
    windows = [c.per for c in rules.frequency_caps] + [timedelta(days=60)]
    assert [r.action_id for r in with_sms[:-1]] == [
        r.action_id for r in history if r.at > T0 - max(windows)]
    email_only = [r for r in history if r.channel == "email"]
    kept = record_send(email_only, decision, rules, T0)
    longest = max([c.per for c in rules.frequency_caps], default=timedelta(0))
    assert [r.action_id for r in kept[:-1]] == [
        r.action_id for r in email_only if r.at > T0 - longest]


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte"])
@pytest.mark.parametrize("expected", [3, "3", 2.5, "2026-01-01", "x", True])
def test_ints_compare_as_their_decimals(op: str, expected: Any) -> None:
    condition = TraitCondition(trait="n", op=op, value=expected)  # type: ignore[arg-type]
    assess = compile_condition(condition)
    for actual in (-1, 0, 2, 3, 4, 10**20):
        fast = assess(Facts("p1", traits={"n": actual}), T0)[0]
        slow = assess(Facts("p1", traits={"n": Decimal(actual)}), T0)[0]
        assert fast == slow, (op, expected, actual)


def test_removal_without_conditions_is_no_removal() -> None:
    for spec in (ActionTypeSpec(), ActionTypeSpec(removal_when={})):
        assert not spec.is_removal({"operation": "remove"})
    assert ActionTypeSpec(removal_when={"operation": ["remove"]}).is_removal(
        {"operation": "remove"})
    assert ActionTypeSpec(removal=True).is_removal({})


def test_facts_index_is_what_post_init_derives(profile_of: Callable[..., Profile],
                                               envelope: Callable[..., Envelope]) -> None:
    profile = profile_of(
        "p1", envelope("e1", "identify", T0, tier="gold"),
        envelope("e2", "purchase_completed", T0 + timedelta(hours=1), order_id="o1",
                 order_value=12.5, currency="EUR"),
        envelope("e3", "purchase_completed", T0 + timedelta(hours=2), order_id="o2",
                 order_value=3, currency="EUR"),
        envelope("e4", "subscription_started", T0 + timedelta(hours=3),
                 payload={"plan": "pro", "start_date": date(2026, 1, 1),
                          "subscription_id": "s1", "contract_end_date": date(2026, 12, 31)}),
        envelope("e5", "subscription_started", T0 + timedelta(hours=4),
                 payload={"plan": "basic", "start_date": date(2026, 1, 1),
                          "subscription_id": "s2", "contract_end_date": date(2027, 2, 1)}),
        envelope("e6", "subscription_canceled", T0 + timedelta(hours=5),
                 payload={"cancel_date": date(2026, 6, 1), "reason": "price",
                          "subscription_id": "s1"}))
    fast = facts_from_profile(profile)
    slow = Facts(**{f.name: getattr(fast, f.name) for f in fields(Facts)})
    for name in ("purchase_completed", "identify", "subscription_started", "none"):
        assert fast.named(name) == slow.named(name)
    assert fast.subscription() == slow.subscription() != {}
    assert fast.canceled_subscription() == slow.canceled_subscription()
    empty = facts_from_profile(Profile("p2"))
    assert empty.subscription() == {} and empty.named("identify") == []
    assert datetime.now(UTC) > T0  # the fixtures' instant is in the past


def test_facts_of_a_timeline_kept_as_read_are_the_decoded_ones(
        profile_of: Callable[..., Profile], envelope: Callable[..., Envelope]) -> None:
    """A profile whose timeline is kept as its entries' JSON: its facts (history from
    the entries, through the cache of entries read) are those of the decoded timeline,
    notes left out, an unreadable entry (NaN) falling back to the decoded path."""
    note = {"event_id": "n1", "event_name": "decision.sent", "time_us": 1, "kind": "decision",
            "summary": "", "late": False}
    for props in ({"url": "/a", "n": 2}, {"x": float("nan")}):
        profile = profile_of("p1", envelope("e1", "identify", T0, tier="gold"),
                             envelope("e2", "page_viewed", T0 + timedelta(hours=1), **props))
        profile = profile.evolve(timeline=[*profile.timeline, note])
        for _ in range(2):  # read, then read again from the cache
            stored = profile.replaced({ENTRIES: [encode_entry(e) for e in profile.timeline]})
            assert "timeline" not in stored.__dict__
            assert repr(facts_from_profile(stored)) == repr(facts_from_profile(profile))
            for at in (T0 + timedelta(hours=2), T0 - timedelta(hours=2)):  # newest, behind
                latest = envelope("e3", "page_viewed", at, url="/b")
                after = apply_event(stored, latest, timedelta(days=7), 50)
                general = profile_of("p1", latest, base=profile)
                assert history_event(latest, after, facts_from_profile(after)) == \
                    history_event(latest, general, facts_from_profile(general))


def _moved_reference(after: Profile, before: Profile) -> set[str]:
    new = {e["event_id"]: e["event_name"] for e in after.timeline
           if e.get("kind", "event") == "event"}
    old = {e["event_id"]: e["event_name"] for e in before.timeline
           if e.get("kind", "event") == "event"}
    return {n for i, n in new.items() if i not in old} | {n for i, n in old.items()
                                                          if i not in new}


def test_events_moved_are_what_comparing_the_histories_gives(
        profile_of: Callable[..., Profile], envelope: Callable[..., Envelope],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.activation.touched import _moved
    from streams.core.profile import apply_event

    monkeypatch.setattr("streams.core.profile.LAZY_FROM_BYTES", 0)  # every one kept as read

    events = [envelope(f"e{i}", name, T0 + timedelta(hours=h))
              for i, (name, h) in enumerate([("identify", 1), ("page_viewed", 3),
                                             ("page_viewed", 2), ("identify", 3)])]
    events.append(events[1])  # the same event again
    for limit, stored in itertools.product((2, 3, 50), (False, True)):
        before = Profile("p1")
        for env in events:
            if stored:  # read back: its timeline kept as the entries' JSON
                before = Profile.from_json(before.to_json())
            after = apply_event(before, env, timedelta(days=7), limit)
            assert _moved(after, before) == _moved_reference(after, before), (limit, env)
            before = after
    note = {"event_id": "e0", "event_name": "decision.sent", "time_us": 10**18,
            "kind": "decision"}
    base = profile_of("p1", events[0])
    noted = Profile("p1", timeline=[note, *base.timeline])
    assert _moved(noted, base) == _moved_reference(noted, base) == set()
    renamed = Profile("p1", timeline=[{**base.timeline[0], "event_id": "x"}, note])
    assert _moved(renamed, Profile("p1", timeline=[note])) == {"identify"}


def test_events_moved_on_stored_profiles_whatever_the_events(
        envelope: Callable[..., Envelope], monkeypatch: pytest.MonkeyPatch) -> None:
    """Profiles read back keep their timeline as JSON, and the usual event's moves are
    read from the entries put in front and trimmed off: the same as comparing."""
    from streams.activation.touched import _moved
    from streams.core.profile import apply_event

    monkeypatch.setattr("streams.core.profile.LAZY_FROM_BYTES", 0)

    rng = random.Random(5)
    for limit in (1, 2, 4):
        before = Profile("p1")
        for _ in range(60):
            env = envelope(f"e{rng.randint(0, 12)}", rng.choice(["identify", "page_viewed"]),
                           T0 + timedelta(minutes=rng.randint(0, 90)))
            before = Profile.from_json(before.to_json())
            after = apply_event(before, env, timedelta(days=7), limit)
            assert _moved(after, before) == _moved_reference(after, before), (limit, env)
            before = after


def test_experiments_are_every_enrollments_variants() -> None:
    from streams.activation.emission import experiments
    from streams.activation.journeys import Enrollment, JourneyState
    from streams.activation.model import evolve

    def enrollment(jid: str, variants: dict[str, str]) -> Enrollment:
        return Enrollment(journey_id=jid, journey_version=1, enrollment_id=f"{jid}#1",
                          trigger="ev1", entered_at=T0, step_id="s", variants=variants)

    before = evolve(ActivationState.new("p1"), journeys=JourneyState(
        profile_id="p1", active={"a": enrollment("a", {"x": "1", "w": "2"}),
                                 "b": enrollment("b", {})}))
    after = evolve(before, journeys=JourneyState(
        profile_id="p1", active={"c": enrollment("c", {"y": "3"}),
                                 "a": enrollment("a", {"x": "9"})}))
    reference = {key: variant for state in (before, after)
                 for enr in state.journeys.active.values()
                 for key, variant in enr.experiments().items()}
    found = experiments(before, after)
    assert found == reference and list(found) == list(reference)
