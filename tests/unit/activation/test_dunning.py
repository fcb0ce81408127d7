"""The dunning journey of definitions/ (the guide's "dunning communications for failed
payment"), through the profile stage's pure functions: an email at the first failure;
three days later, if it was the second failure in a week since the last successful
payment, the customer is marked at risk (a data action the at_risk audience sees in the
same record), texted, and the account team gets a CRM task; paying clears the mark."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from streams.activation.definitions import DefinitionSet
from streams.activation.runtime import Emission, load_state
from streams.core.identity import new_profile_id
from streams.core.pipeline import load_profile
from streams.records import Envelope
from tests.unit.activation.conftest import Clock
from tests.unit.activation.test_runtime import Stage

DAY = timedelta(days=1)
Make = Callable[..., Envelope]


def onboard(stage: Stage, envelope: Make, cust: str, **traits: object) -> str:
    at = stage.clock.now
    stage.event(envelope(f"{cust}-tz", "identify", at, cust, timezone="Europe/Berlin",
                         **traits))
    for consent in ("service:email", "service:sms", "service:crm"):
        stage.event(envelope(f"{cust}-{consent}", "consent_updated", at, cust,
                             {"consent_type": consent, "status": "GRANTED"}))
    return new_profile_id(f"cid:{cust}")


def event(stage: Stage, envelope: Make, cust: str, name: str) -> list[Emission]:
    before = len(stage.sent)
    stage.event(envelope(f"{cust}-{name}-{stage.clock.now.isoformat()}", name,
                         stage.clock.now, cust))
    return stage.sent[before:]


def sent(emissions: list[Emission]) -> list[tuple[str, str | None]]:
    return [(c["channel"], c["payload"].get("template_id") or c["payload"].get("task"))
            for e in emissions for c in e.commands]


def test_a_second_failure_escalates_marks_at_risk_and_paying_clears_it(
        definitions: DefinitionSet, clock: Clock, envelope: Make) -> None:
    stage = Stage(definitions, clock)
    pid = onboard(stage, envelope, "c1")
    assert sent(event(stage, envelope, "c1", "payment_failed")) == [
        ("email", "dunning_update_card")]
    clock.advance(2 * DAY)
    assert sent(event(stage, envelope, "c1", "payment_failed")) == []  # still in dunning
    clock.advance(DAY)
    [escalated] = stage.tick()  # one timer record: the write and all it caused
    [write] = escalated.writes
    assert (write["op"], write["trait"], write["value"]) == ("set", "lifecycle_stage",
                                                             "at_risk")
    assert [(c["audience_id"], c["change"], c["caused_by"]) for c in escalated.changes] == [
        ("at_risk", "entered", write["action_id"])]
    assert sent([escalated]) == [("sms", "dunning_payment_failed"),
                                 ("crm", "call_failed_payment")]
    assert {c["channel"]: c for c in escalated.commands}["sms"]["journey_id"] == "dunning"
    profile = load_profile(stage.store, pid)
    assert profile is not None and profile.traits["lifecycle_stage"][0] == "at_risk"
    clock.advance(DAY)
    [paid] = event(stage, envelope, "c1", "payment_succeeded")
    assert [w["op"] for w in paid.writes] == ["clear"]
    assert [(c["audience_id"], c["change"]) for c in paid.changes] == [("at_risk", "exited")]
    assert load_state(stage.store, pid)[0].journeys.active == {}
    timeline = [e["event_name"] for e in stage.stages.timeline(pid)]
    assert "trait_set" in timeline and "trait_cleared" in timeline


def test_failures_before_the_last_success_do_not_escalate(
        definitions: DefinitionSet, clock: Clock, envelope: Make) -> None:
    stage = Stage(definitions, clock)
    onboard(stage, envelope, "c2")
    event(stage, envelope, "c2", "payment_failed")
    clock.advance(DAY)
    event(stage, envelope, "c2", "payment_succeeded")  # ends that dunning
    clock.advance(DAY)
    assert sent(event(stage, envelope, "c2", "payment_failed")) == [
        ("email", "dunning_update_card")]  # a new one: two failures in 7 days, one since
    clock.advance(3 * DAY)
    assert sent(stage.tick()) == [("email", "dunning_reminder")]
    assert all(not e.writes for e in stage.sent)


def test_a_customer_flagged_as_fraud_gets_the_reminder_not_the_escalation(
        definitions: DefinitionSet, clock: Clock, envelope: Make) -> None:
    stage = Stage(definitions, clock)
    onboard(stage, envelope, "c3", fraud_flagged=True)
    event(stage, envelope, "c3", "payment_failed")
    clock.advance(DAY)
    event(stage, envelope, "c3", "payment_failed")
    clock.advance(2 * DAY)
    assert sent(stage.tick()) == [("email", "dunning_reminder")]
