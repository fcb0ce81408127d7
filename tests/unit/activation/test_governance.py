from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.activation.actions import plan_action
from streams.activation.definitions import SendSpec
from streams.activation.facts import Facts
from streams.activation.governance import decide, in_holdout, record_send
from streams.activation.governance_rules import GovernanceRules
from streams.activation.model import PlannedAction, SendRecord
from tests.unit.activation.conftest import T0, pick_profile_id

Make = Callable[..., Facts]
VERSION = "v-test"
GRANTED_ALL = {f"marketing:{c}": "GRANTED" for c in ("email", "paid_media", "webhook", "crm")}


@pytest.fixture
def rules() -> GovernanceRules:
    return GovernanceRules.model_validate({
        "default_timezone": "Europe/Berlin",
        "suppression": {"profile_ids": ["blocked"], "identifier_hashes": ["h-bad"]},
        "frequency_caps": [{"channel": "email", "max_sends": 2, "per": "P7D"}],
        "quiet_hours": {"start": "21:00", "end": "08:00", "channels": ["email"]},
        "holdout_percent": 0,
    })


@pytest.fixture
def action() -> Callable[..., PlannedAction]:
    def make(profile_id: str = "p1", channel: str = "email", action_type: str = "send_email",
             journey_id: str | None = "j1", payload: dict[str, Any] | None = None
             ) -> PlannedAction:
        send = SendSpec(channel=channel, action_type=action_type,  # type: ignore[arg-type]
                        payload=payload or ({"audience_id": "a1"}
                                            if channel == "paid_media" else {}))
        return plan_action(profile_id, send, journey_id=journey_id, journey_version=1,
                           enrollment_id="j1#1", step_id="s1", trigger="e1")

    return make


def test_allowed(facts: Make, rules: GovernanceRules, action: Callable[..., PlannedAction]
                 ) -> None:
    d = decide(action(), facts(consent=GRANTED_ALL), [], rules, T0, VERSION)
    assert (d.outcome, d.rule, d.not_before) == ("sent", "allowed", None)
    assert d.definitions_version == VERSION
    assert d == decide(action(), facts(consent=GRANTED_ALL), [], rules, T0, VERSION)


@pytest.mark.parametrize("status", ["DENIED", "WITHDRAWN", "UNKNOWN", None])
def test_consent_must_be_granted(facts: Make, rules: GovernanceRules,
                                 action: Callable[..., PlannedAction], status: str | None) -> None:
    consent = {} if status is None else {"marketing:email": status}
    d = decide(action(), facts(consent=consent), [], rules, T0, VERSION)
    assert (d.outcome, d.rule) == ("withheld", "consent")
    assert "marketing:email" in d.reason


def test_removals_are_never_blocked(facts: Make, rules: GovernanceRules,
                                    action: Callable[..., PlannedAction]) -> None:
    no_consent = facts("blocked", consent={"marketing:paid_media": "WITHDRAWN"})
    remove = action("blocked", "paid_media", "audience_remove")
    d = decide(remove, no_consent, [], rules, T0, VERSION)
    assert (d.outcome, d.rule) == ("sent", "removal")
    crm = action("blocked", "crm", "update_crm", payload={"operation": "delete"})
    assert decide(crm, no_consent, [], rules, T0, VERSION).outcome == "sent"
    crm_write = action("blocked", "crm", "update_crm", payload={"operation": "upsert"})
    assert decide(crm_write, no_consent, [], rules, T0, VERSION).outcome == "withheld"


def test_suppression_by_id_and_hash(facts: Make, rules: GovernanceRules,
                                    action: Callable[..., PlannedAction]) -> None:
    d = decide(action("blocked"), facts("blocked", consent=GRANTED_ALL), [], rules, T0, VERSION)
    assert d.rule == "suppression"
    hashed = facts("p2", consent=GRANTED_ALL, identifiers={"email_sha256": ["h-bad"]})
    assert decide(action("p2"), hashed, [], rules, T0, VERSION).rule == "suppression"


def test_frequency_cap_rolling_window(facts: Make, rules: GovernanceRules,
                                      action: Callable[..., PlannedAction]) -> None:
    history = [SendRecord(action_id="a", channel="email", at=T0 - timedelta(days=6)),
               SendRecord(action_id="b", channel="email", at=T0 - timedelta(days=1)),
               SendRecord(action_id="c", channel="paid_media", at=T0)]
    f = facts(consent=GRANTED_ALL)
    d = decide(action(), f, history, rules, T0, VERSION)
    assert (d.outcome, d.rule) == ("withheld", "frequency_cap")
    assert decide(action(), f, history, rules, T0 + timedelta(days=1), VERSION).outcome == "sent"
    pm = action(channel="paid_media", action_type="audience_add")
    assert decide(pm, f, history, rules, T0, VERSION).outcome == "sent"


def test_record_send_prunes_and_skips_withheld(facts: Make, rules: GovernanceRules,
                                               action: Callable[..., PlannedAction]) -> None:
    old = SendRecord(action_id="old", channel="email", at=T0 - timedelta(days=30))
    sent = decide(action(), facts(consent=GRANTED_ALL), [], rules, T0, VERSION)
    assert [r.action_id for r in record_send([old], sent, rules, T0)] == [sent.action_id]
    withheld = decide(action(), facts(), [], rules, T0, VERSION)
    assert record_send([old], withheld, rules, T0) == []


@pytest.mark.parametrize(("now", "zone", "expected"), [
    # 22:30 in Berlin (UTC+1 in winter) -> 08:00 Berlin next day = 07:00 UTC
    (datetime(2026, 3, 2, 21, 30, tzinfo=UTC), None, datetime(2026, 3, 3, 7, 0, tzinfo=UTC)),
    # 03:00 in New York (UTC-5) -> 08:00 the same day = 13:00 UTC
    (datetime(2026, 3, 2, 8, 0, tzinfo=UTC), "America/New_York",
     datetime(2026, 3, 2, 13, 0, tzinfo=UTC)),
    # the night DST starts in Berlin (29 March 2026): 08:00 CEST = 06:00 UTC
    (datetime(2026, 3, 29, 0, 30, tzinfo=UTC), None, datetime(2026, 3, 29, 6, 0, tzinfo=UTC)),
    (datetime(2026, 3, 2, 21, 30, tzinfo=UTC), "Not/AZone",
     datetime(2026, 3, 3, 7, 0, tzinfo=UTC)),
])
def test_quiet_hours_delay_in_customer_zone(
    facts: Make, rules: GovernanceRules, action: Callable[..., PlannedAction],
    now: datetime, zone: str | None, expected: datetime,
) -> None:
    traits = {} if zone is None else {"timezone": zone}
    d = decide(action(), facts(consent=GRANTED_ALL, traits=traits), [], rules, now, VERSION)
    assert (d.outcome, d.rule, d.not_before) == ("delayed", "quiet_hours", expected)


def test_quiet_hours_only_for_listed_channels(facts: Make, rules: GovernanceRules,
                                              action: Callable[..., PlannedAction]) -> None:
    night = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    pm = action(channel="paid_media", action_type="audience_add")
    assert decide(pm, facts(consent=GRANTED_ALL), [], rules, night, VERSION).outcome == "sent"
    day = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert decide(action(), facts(consent=GRANTED_ALL), [], rules, day, VERSION).outcome == "sent"


def test_holdout_is_stable_across_channels(facts: Make, rules: GovernanceRules,
                                           action: Callable[..., PlannedAction]) -> None:
    held = pick_profile_id("j1", 50, "", held_out=True)
    kept = pick_profile_id("j1", 50, "", held_out=False)
    for channel, kind in (("email", "send_email"), ("paid_media", "audience_add"),
                          ("webhook", "call_webhook"), ("crm", "update_crm")):
        d = decide(action(held, channel, kind), facts(held, consent=GRANTED_ALL), [], rules,
                   T0, VERSION, holdout_percent=50)
        assert (d.outcome, d.rule) == ("withheld", "holdout")
        d = decide(action(kept, channel, kind), facts(kept, consent=GRANTED_ALL), [], rules,
                   T0, VERSION, holdout_percent=50)
        assert d.outcome == "sent"


def test_holdout_share_is_roughly_the_percentage() -> None:
    held = sum(in_holdout(f"p{n}", "j1", 10) for n in range(5000))
    assert 400 < held < 600
    assert not any(in_holdout(f"p{n}", "j1", 0) for n in range(500))
    assert all(in_holdout(f"p{n}", "j1", 100) for n in range(500))


def test_withholding_rules_win_over_quiet_hours(facts: Make, rules: GovernanceRules,
                                                action: Callable[..., PlannedAction]) -> None:
    night = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    assert decide(action(), facts(), [], rules, night, VERSION).rule == "consent"
