"""The decision API's pure part (streams/activation/ask.py): the same answer the stream
gives for the same profile and time, and no side effect."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from streams.activation.ask import BadQuestion, Question, would_decide
from streams.activation.definitions import DefinitionSet
from streams.activation.engine import ActivationState
from tests.unit.activation.conftest import Clock
from tests.unit.activation.test_churn import ENTRY, JOURNEY, RELEASE, Customer, customer

__all__ = ["customer"]  # the churn test's factory, used here as a fixture

EMAIL = Question("email", "send_email", "marketing", JOURNEY)


def ask(c: Customer, question: Question = EMAIL, at: Any = None) -> dict[str, Any]:
    return would_decide(c.profile, c.state, c.definitions, question, at or ENTRY)


def test_agrees_with_the_stream_at_quiet_hours_then_after(
        customer: Callable[..., Customer], clock: Clock) -> None:
    c = customer()
    c.onboard(clock.now)
    out = c.timer(clock.set(ENTRY))  # the stream decides the churn email at 02:00 Berlin
    stream = next(d for d in out.decisions if d.channel == "email")
    answer = would_decide(c.profile, ActivationState.new(c.profile.profile_id),
                          c.definitions, EMAIL, ENTRY)
    assert (answer["outcome"], answer["rule"]) == (stream.outcome, stream.rule) \
        == ("delayed", "quiet_hours")
    assert answer["not_before"] == RELEASE.isoformat() and answer["allowed"] is False
    # After release the email went out: the 24 h cap now withholds a second one.
    c.timer(clock.set(RELEASE))
    capped = ask(c, at=RELEASE + timedelta(hours=1))
    assert (capped["outcome"], capped["rule"]) == ("withheld", "frequency_cap")
    assert ask(c, at=RELEASE + timedelta(days=1, hours=1))["allowed"] is True


def test_agrees_with_the_stream_on_consent(customer: Callable[..., Customer],
                                           clock: Clock) -> None:
    c = customer()
    c.onboard(clock.now, email_consent="DENIED")
    out = c.timer(clock.set(ENTRY))
    stream = next(d for d in out.decisions if d.channel == "email")
    answer = ask(c)
    assert (answer["outcome"], answer["rule"]) == (stream.outcome, stream.rule) \
        == ("withheld", "consent")
    assert "marketing:email is DENIED" in answer["reason"]


def test_holdout_only_for_the_journey_asked_about(customer: Callable[..., Customer],
                                                  clock: Clock) -> None:
    c = customer(held_out=True)
    c.onboard(clock.now)
    assert ask(c, at=RELEASE)["rule"] == "holdout"
    assert ask(c, Question("email", "send_email", "marketing"), at=RELEASE)["allowed"]


def test_asking_changes_nothing(customer: Callable[..., Customer], clock: Clock) -> None:
    c = customer()
    c.onboard(clock.now)
    before = (c.profile, c.state)
    first = ask(c, at=RELEASE)
    assert [ask(c, at=RELEASE) for _ in range(5)] == [first] * 5  # no cap used up
    assert (c.profile, c.state) == before


@pytest.mark.parametrize(("body", "message"), [
    ([], "JSON object"),
    ({"channel": "email", "action_type": "send_email"}, "purpose"),
    ({"channel": "fax", "action_type": "send", "purpose": "m"}, "unknown channel 'fax'"),
    ({"channel": "email", "action_type": "audience_add", "purpose": "m"}, "takes no"),
])
def test_bad_questions_say_what_is_wrong(body: Any, message: str) -> None:
    with pytest.raises(BadQuestion, match=message):
        Question.parse(body)


def test_a_question_parses(definitions: DefinitionSet) -> None:
    assert Question.parse({"channel": "email", "action_type": "send_email",
                           "purpose": "marketing", "journey_id": JOURNEY}) == EMAIL
