"""A decision asked for, not made: would this action be allowed for this profile now?

``POST /v1/profiles/{id}/decide`` (agents/api.py) answers with :func:`would_decide`:
the very governance check the stream makes (streams/activation/governance.py: consent,
suppression, frequency cap, holdout, then quiet hours), against the profile, its send
history and the definitions deciding for it, at activation's "now". It has no side
effect: nothing is written, sent or counted, and a cap is not used up by asking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streams.activation.channels import BUILTIN_CHANNELS, ChannelDef
from streams.activation.definitions import DefinitionSet
from streams.activation.engine import ActivationState
from streams.activation.facts import facts_from_profile
from streams.activation.governance import decide
from streams.activation.model import PlannedAction, stable_id
from streams.core.profile import Profile


class BadQuestion(ValueError):
    """The question names no known channel, an action type the channel does not take,
    or lacks a field; the message says which."""


@dataclass(frozen=True)
class Question:
    channel: str
    action_type: str
    purpose: str
    journey_id: str | None = None

    @classmethod
    def parse(cls, body: Any, channels: Mapping[str, ChannelDef] | None = BUILTIN_CHANNELS
              ) -> Question:
        """``channels``: those of the definitions deciding (``DefinitionSet.all_channels``);
        by default the built-in four; None checks the body's shape only."""
        if not isinstance(body, dict):
            raise BadQuestion("the body must be a JSON object with channel, action_type "
                              "and purpose")
        missing = [k for k in ("channel", "action_type", "purpose")
                   if not isinstance(body.get(k), str) or not body[k]]
        if missing:
            raise BadQuestion(f"missing or empty: {', '.join(missing)}")
        channel, action_type = body["channel"], body["action_type"]
        if channels is not None:
            _check_channel(channels, channel, action_type)
        journey = body.get("journey_id")
        return cls(channel, action_type, body["purpose"],
                   journey if isinstance(journey, str) and journey else None)


def _check_channel(channels: Mapping[str, ChannelDef], channel: str, action_type: str
                   ) -> None:
    if channel not in channels:
        raise BadQuestion(f"unknown channel {channel!r}; known: {sorted(channels)}")
    if action_type not in channels[channel].action_types:
        raise BadQuestion(f"channel {channel!r} takes no {action_type!r}; it takes "
                          f"{sorted(channels[channel].action_types)}")


def would_decide(profile: Profile, state: ActivationState, definitions: DefinitionSet,
                 question: Question, now: datetime) -> dict[str, Any]:
    """The stream's answer for ``question`` at ``now``, as the API's JSON body."""
    action = PlannedAction(
        action_id=stable_id("ask", profile.profile_id, question.channel,
                            question.action_type, now.isoformat()),
        profile_id=profile.profile_id, channel=question.channel,
        action_type=question.action_type, purpose=question.purpose,
        journey_id=question.journey_id)
    journey = definitions.journeys.get(question.journey_id or "")
    decision = decide(action, facts_from_profile(profile), state.sends,
                      definitions.governance, now, definitions.version,
                      None if journey is None else journey.holdout_percent)
    return {
        "profile_id": profile.profile_id,
        "allowed": decision.outcome == "sent",
        "outcome": decision.outcome,  # sent | delayed | withheld
        "rule": decision.rule,
        "reason": decision.reason,
        "not_before": None if decision.not_before is None
        else decision.not_before.isoformat(),
        "definitions_version": definitions.version,
        "at": now.isoformat(),
    }
