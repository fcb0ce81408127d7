"""The win-back journey of definitions/ (the guide's "win-back flow after cancelation with
eligibility logic: exclude fraud, exclude recent refunds"), through the profile stage's
pure functions: a customer who left 30 days ago enters, the offer is an experiment (the
variant in every command and in the exit's audience change), a push a week later;
recent refunds wait, fraud never enters; subscribing again ends it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from streams.activation.definitions import DefinitionSet
from streams.activation.governance import in_holdout
from streams.activation.runtime import Emission
from streams.core.identity import new_profile_id
from streams.core.pipeline import load_profile
from streams.records import Envelope
from tests.unit.activation.conftest import Clock
from tests.unit.activation.test_runtime import Stage

DAY = timedelta(days=1)
Make = Callable[..., Envelope]


def customer(prefix: str) -> str:
    """A customer outside the journey's 10% holdout (governance's salt)."""
    return next(f"{prefix}-{n}" for n in range(1000)
                if not in_holdout(new_profile_id(f"cid:{prefix}-{n}"), "win_back", 10, "2026"))


def left(stage: Stage, envelope: Make, cust: str, days_ago: int, **traits: object) -> str:
    """A customer whose subscription was canceled ``days_ago`` days before now."""
    now = stage.clock.now
    stage.event(envelope(f"{cust}-tz", "identify", now - DAY, cust, timezone="Europe/Berlin",
                         **traits))
    for consent in ("marketing:email", "marketing:paid_media", "marketing:push"):
        stage.event(envelope(f"{cust}-{consent}", "consent_updated", now - DAY, cust,
                             {"consent_type": consent, "status": "GRANTED"}))
    stage.event(envelope(f"{cust}-sub", "subscription_started", now - DAY, cust,
                         {"plan": "pro", "start_date": date(2025, 1, 1)}))
    stage.event(envelope(f"{cust}-cancel", "subscription_canceled", now, cust,
                         {"cancel_date": (now - days_ago * DAY).date(), "reason": "price"}))
    return new_profile_id(f"cid:{cust}")


def commands(emissions: list[Emission]) -> list[tuple[str, object]]:
    return [(c["channel"], c["payload"].get("template_id") or c["payload"].get("audience_id"))
            for e in emissions for c in e.commands]


def test_a_customer_who_left_gets_an_offer_by_variant_then_a_push(
        definitions: DefinitionSet, clock: Clock, envelope: Make) -> None:
    stage = Stage(definitions, clock)
    cust = customer("gone")
    pid = left(stage, envelope, cust, days_ago=40)
    [assignment] = [a for e in stage.sent for a in e.assignments]
    variant = assignment["variant"]
    variants = {"win_back/offer_test": variant}
    template = {"ten_percent": "win_back_10_percent",
                "twenty_percent": "win_back_20_percent"}[variant]
    assert commands(stage.sent) == [("email", template), ("paid_media", "win_back")]
    assert all(c["variants"] == variants for e in stage.sent for c in e.commands)
    profile = load_profile(stage.store, pid)
    assert profile is not None and profile.traits["win_back_offers"][0] == 1
    clock.advance(7 * DAY)
    pushed = stage.tick()
    assert commands(pushed) == [("push", "win_back_reminder")]
    assert pushed[0].commands[0]["variants"] == variants
    stage.sent.clear()
    stage.event(envelope(f"{cust}-back", "subscription_started", clock.now, cust,
                         {"plan": "pro", "start_date": clock.now.date(),
                          "subscription_id": "s2"}))
    assert commands(stage.sent) == [("paid_media", "win_back")]  # the removal
    assert stage.sent[0].commands[0]["action_type"] == "audience_remove"
    exits = [c for e in stage.sent for c in e.changes if c["audience_id"] == "win_back"]
    assert [(c["change"], c["variants"]) for c in exits] == [("exited", variants)]


def test_a_recent_refund_delays_entry_until_it_is_30_days_old(
        definitions: DefinitionSet, clock: Clock, envelope: Make) -> None:
    stage = Stage(definitions, clock)
    cust = customer("refunded")
    stage.event(envelope(f"{cust}-refund", "refund_issued", clock.now - 10 * DAY, cust))
    left(stage, envelope, cust, days_ago=40)
    assert commands(stage.sent) == []
    clock.advance(20 * DAY + timedelta(minutes=1))
    entered = stage.tick()
    assert [c["audience_id"] for e in entered for c in e.changes] == ["win_back"]
    assert [channel for channel, _ in commands(entered)] == ["email", "paid_media"]


def test_fraud_is_excluded_and_a_recent_cancellation_waits_30_days(
        definitions: DefinitionSet, clock: Clock, envelope: Make) -> None:
    stage = Stage(definitions, clock)
    left(stage, envelope, customer("fraud"), days_ago=40, fraud_flagged=True)
    left(stage, envelope, customer("recent"), days_ago=5)
    assert commands(stage.sent) == []
    clock.advance(25 * DAY + timedelta(minutes=1))
    entered = stage.tick()  # only the recent one, now 30 days gone
    assert [(e.profile_id, c["audience_id"]) for e in entered for c in e.changes] == [
        (new_profile_id(f"cid:{customer('recent')}"), "win_back")]
