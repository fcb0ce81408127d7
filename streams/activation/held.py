"""Held actions: what governance allowed but not yet (quiet hours), kept in the profile's
activation state until it is due, then decided again against the profile as it is then.

Why hold inside the platform instead of emitting with ``not_before``: a customer who
renews at 02:46 must not get the 07:00 churn reminder. Only the profile's owner knows
that, so action topics carry only what is due now and no consumer has to hold anything.

- :func:`hold` keeps a delayed action (its ``not_before`` joins the profile's one timer);
- :func:`release_due` runs every held action whose time came through :func:`decide`
  again: consent, suppression, caps and holdout as they are now; allowed, it becomes a
  command; withheld, it is *cancelled* with the rule that stopped it; still quiet
  (the customer's zone changed), it stays held;
- :func:`cancel_orphans` cancels at once what belongs to an enrollment that ended
  (exit event, audience exit, end of steps, merge): rule ``journey_exit``;
- a held action whose channel the definitions no longer declare is cancelled when due:
  rule ``channel_removed`` (its topic may be gone; nothing is sent blindly).

Each outcome is a :class:`Decision` for the timeline (``decision.cancelled``, or
``decision.sent`` with rule ``released``) with a deterministic id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

from streams.activation.actions import to_command
from streams.activation.definitions import DefinitionSet
from streams.activation.facts import Facts
from streams.activation.governance import decide, record_send
from streams.activation.journeys import JourneyState
from streams.activation.model import Decision, PlannedAction, SendRecord, evolve, stable_id

JOURNEY_EXIT = "journey_exit"
RELEASED = "released"
CHANNEL_REMOVED = "channel_removed"


class HeldAction(BaseModel):
    """An allowed action waiting for ``not_before`` (the decision that delayed it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: PlannedAction
    decision_id: str
    not_before: AwareDatetime


def hold(decision: Decision, action: PlannedAction) -> HeldAction:
    assert decision.not_before is not None  # noqa: S101 - only delayed decisions are held
    return HeldAction(action=action, decision_id=decision.decision_id,
                      not_before=decision.not_before)


def next_release(held: Sequence[HeldAction]) -> datetime | None:
    return min((h.not_before for h in held), default=None)


def _cancelled(item: HeldAction, rule: str, reason: str, now: datetime, version: str
               ) -> Decision:
    a = item.action
    return Decision(
        decision_id=stable_id("decision", a.action_id, version, "cancelled"),
        outcome="cancelled", rule=rule, reason=reason, action_id=a.action_id,
        profile_id=a.profile_id, channel=a.channel, action_type=a.action_type,
        purpose=a.purpose, journey_id=a.journey_id, step_id=a.step_id,
        definitions_version=version, decided_at=now, variants=dict(a.variants))


def _still_enrolled(item: HeldAction, journeys: JourneyState) -> bool:
    """Still enrolled, or the enrollment ran to its end: only an exit cancels (exit
    event, audience exit, a removed definition, a merge)."""
    a = item.action
    if a.journey_id is None or a.enrollment_id in journeys.completed:
        return True
    enr = journeys.active.get(a.journey_id)
    return enr is not None and enr.enrollment_id == a.enrollment_id


def _without(sends: Sequence[SendRecord], action_id: str) -> list[SendRecord]:
    """The send history without the held action's own place (it was counted at hold)."""
    return [r for r in sends if r.action_id != action_id]


Released = tuple[list[HeldAction], list[SendRecord], list[Decision], list[dict[str, Any]]]


def cancel_orphans(held: Sequence[HeldAction], sends: Sequence[SendRecord],
                   journeys: JourneyState, now: datetime, version: str,
                   everything: tuple[str, str] | None = None,
                   exiting: frozenset[str] = frozenset()) -> Released:
    """Cancel the held actions whose enrollment was exited, or whose journey's exit
    criteria fired now (``exiting``: also for an enrollment that had completed), or all
    of them with ``everything``'s (rule, reason): the profile was merged away."""
    kept: list[HeldAction] = []
    decisions: list[Decision] = []
    history = list(sends)
    for item in held:
        if everything is None and _still_enrolled(item, journeys) \
                and item.action.journey_id not in exiting:
            kept.append(item)
            continue
        rule, reason = everything or (JOURNEY_EXIT, (
            f"left journey {item.action.journey_id} before the action was due at "
            f"{item.not_before.isoformat()}"))
        decisions.append(_cancelled(item, rule, reason, now, version))
        history = _without(history, item.action.action_id)
    return kept, history, decisions, []


def release_due(held: Sequence[HeldAction], sends: Sequence[SendRecord], facts: Facts,
                now: datetime, definitions: DefinitionSet,
                holdout_of: Callable[[PlannedAction], float | None]) -> Released:
    """Decide every due held action again; the ones allowed become commands."""
    kept: list[HeldAction] = []
    decisions: list[Decision] = []
    commands: list[dict[str, Any]] = []
    history = list(sends)
    rules, version = definitions.governance, definitions.version
    for item in sorted(held, key=lambda h: (h.not_before, h.action.action_id)):
        if item.not_before > now:
            kept.append(item)
            continue
        action = item.action
        history = _without(history, action.action_id)
        if action.channel not in definitions.all_channels:
            decisions.append(_cancelled(item, CHANNEL_REMOVED, f"channel {action.channel} is "
                                        "no longer defined", now, version))
            continue
        again = decide(action, facts, history, rules, now, version, holdout_of(action))
        if again.outcome == "delayed":  # quiet again (e.g. the customer's zone changed)
            kept.append(hold(again, action))
            decisions.append(again)
        elif again.outcome == "withheld":
            decisions.append(_cancelled(item, again.rule, again.reason, now, version))
            continue
        else:
            released = evolve(
                again, decision_id=stable_id("decision", action.action_id, version, RELEASED),
                rule=RELEASED, reason=f"held until {item.not_before.isoformat()}; every rule "
                                      f"passed again at release")
            decisions.append(released)
            commands.append(to_command(action, released, facts.identifiers))
        history = record_send(history, again, rules, now)
    return kept, history, decisions, commands
