"""The one decision point every action passes before it becomes a command.

:func:`decide` checks, in this order, and the first rule that withholds wins:

1. consent   ``purpose:channel`` must be GRANTED (DENIED, WITHDRAWN, UNKNOWN or missing
             all withhold);
2. suppression  the profile id, or any of its identifier hashes, is on the global list;
3. frequency_cap  a channel's sends in a rolling window reached the cap (withheld, not
             queued: a capped message is stale by the time the window frees up); the caps
             are governance.yaml's for the channel plus the channel's own;
4. quiet_hours  in the customer's zone (trait ``timezone``, else the default) the action
             is DELAYED to the end of quiet hours via ``not_before``, never dropped; the
             window is the channel's own, else governance.yaml's if the channel opts in
             (its file says ``quiet_hours: true``, or governance.yaml lists it);
5. holdout   a deterministic hash of (profile id, journey id) puts the customer in the
             journey's control group: the same answer on every channel and every step.

Rule 4 only delays, so a holdout customer in quiet hours is withheld (rule 5), not delayed.

Removals are always allowed: what a channel declares as only taking data away (a
paid-media ``audience_remove``, a CRM update whose ``payload.operation`` is
``remove``/``delete``: streams/activation/channels.py) is what a customer who withdrew
consent wants, so no rule may block it.

The channels' caps and quiet hours come with the rules (``GovernanceRules.channel``,
attached by the definitions set), so every caller of :func:`decide` applies them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.activation.channels import BUILTIN_CHANNELS
from streams.activation.facts import Facts
from streams.activation.governance_rules import GovernanceRules
from streams.activation.model import (
    Decision,
    Outcome,
    PlannedAction,
    SendRecord,
    adopt,
    built,
    stable_id,
)

GRANTED = "GRANTED"
_BUCKETS = 10_000


def is_removal(action: PlannedAction, rules: GovernanceRules | None = None) -> bool:
    """Whether the action's channel declares it as only taking data away."""
    channel = (BUILTIN_CHANNELS.get(action.channel) if rules is None
               else rules.channel(action.channel))
    return channel is not None and channel.is_removal(action.action_type, action.payload)


def caps(rules: GovernanceRules, channel: str) -> Iterator[tuple[int, timedelta]]:
    """(max sends, window) of every cap on ``channel``: governance.yaml's, the channel's."""
    return iter(_limits(rules).caps(channel))


class _Limits:
    """One rule set's caps by channel, and the history window each channel keeps: asked
    for every action, and constants of the rules (cached per rules object)."""

    def __init__(self, rules: GovernanceRules) -> None:
        self.rules = rules
        self.windows = [c.per for c in rules.frequency_caps]
        self.suppressed_hashes = frozenset(rules.suppression.identifier_hashes)
        self._caps: dict[str, list[tuple[int, timedelta]]] = {}
        self._own: dict[str, list[timedelta]] = {}
        self._keep: dict[frozenset[str], timedelta] = {}

    def caps(self, channel: str) -> list[tuple[int, timedelta]]:
        found = self._caps.get(channel)
        if found is None:
            declared = self.rules.channel(channel)
            found = [(c.max_sends, c.per) for c in self.rules.frequency_caps
                     if c.channel == channel]
            found += [(own.max_sends, own.per)
                      for own in (declared.frequency_caps if declared is not None else ())]
            self._caps[channel] = found
        return found

    def own_windows(self, channel: str) -> list[timedelta]:
        """The windows of the channel's own caps (none for an undeclared channel)."""
        found = self._own.get(channel)
        if found is None:
            declared = self.rules.channel(channel)
            found = [] if declared is None else [own.per for own in declared.frequency_caps]
            self._own[channel] = found
        return found

    def keep(self, channels: frozenset[str]) -> timedelta:
        """How long a history with sends on ``channels`` must be kept: the longest window
        of governance's caps and of those channels' own."""
        found = self._keep.get(channels)
        if found is None:
            windows = list(self.windows)
            for name in channels:
                windows += self.own_windows(name)
            found = self._keep[channels] = max(windows, default=timedelta(0))
        return found


_LIMITS: dict[int, _Limits] = {}


def _limits(rules: GovernanceRules) -> _Limits:
    """The entry holds its rules, so an id is never reused while it is cached."""
    found = _LIMITS.get(id(rules))
    if found is None or found.rules is not rules:
        if len(_LIMITS) > 64:  # rules of superseded definition sets
            _LIMITS.clear()
        found = _LIMITS[id(rules)] = _Limits(rules)
    return found


def quiet_window(rules: GovernanceRules, channel: str) -> tuple[time, time] | None:
    """The channel's quiet hours (local start, end), or None if it has none."""
    declared = rules.channel(channel)
    own = None if declared is None else declared.quiet_hours
    if own is not None and not isinstance(own, bool):
        return own.bounds()
    quiet = rules.quiet_hours
    if quiet is None or not (own is True or channel in quiet.channels):
        return None
    return quiet.bounds()


def customer_zone(facts: Facts, default: str) -> tzinfo:
    """The customer's IANA zone; an unknown or missing one falls back to ``default``."""
    name = facts.traits.get("timezone")
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a bad trait must not block activation; the default zone applies
    return ZoneInfo(default)


def in_holdout(profile_id: str, journey_id: str, percent: float, salt: str = "") -> bool:
    """Deterministic control-group membership; independent of channel and step."""
    digest = hashlib.sha256(f"{salt}\x1f{journey_id}\x1f{profile_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS < round(percent * _BUCKETS / 100)


def quiet_until(rules: GovernanceRules, facts: Facts, channel: str, now: datetime
                ) -> datetime | None:
    """The end of the quiet period ``now`` falls in (as UTC), or None if not quiet."""
    window = quiet_window(rules, channel)
    if window is None:
        return None
    start, end = window
    zone = customer_zone(facts, rules.default_timezone)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    inside = start <= clock < end if start < end else (clock >= start or clock < end)
    if start == end or not inside:
        return None
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    # Wall-clock arithmetic in the zone, so a DST change inside the night is respected.
    return datetime.combine(day, end, tzinfo=zone).astimezone(now.tzinfo)


def _cap_reached(action: PlannedAction, history: Sequence[SendRecord],
                 rules: GovernanceRules, now: datetime) -> str | None:
    for max_sends, per in caps(rules, action.channel):
        # Delayed sends are stored at their not_before (maybe future): they count already.
        since = now - per
        sent = sum(1 for r in history if r.channel == action.channel and r.at > since)
        if sent >= max_sends:
            return f"{sent} {action.channel} sends in the last {per}, cap is {max_sends}"
    return None


def _withheld_by(action: PlannedAction, facts: Facts, history: Sequence[SendRecord],
                 rules: GovernanceRules, now: datetime, holdout: float) -> tuple[str, str] | None:
    key = f"{action.purpose}:{action.channel}"
    status = facts.consent.get(key, "UNKNOWN")
    if status != GRANTED:
        return "consent", f"consent {key} is {status}, not GRANTED"
    if action.profile_id in rules.suppression.profile_ids:
        return "suppression", "profile id is on the global suppression list"
    hashes = _limits(rules).suppressed_hashes
    if hashes and any(h in hashes for values in facts.identifiers.values() for h in values):
        return "suppression", "an identifier hash is on the global suppression list"
    capped = _cap_reached(action, history, rules, now)
    if capped is not None:
        return "frequency_cap", capped
    if action.journey_id is not None and in_holdout(
            action.profile_id, action.journey_id, holdout, rules.holdout_salt):
        return "holdout", f"in the {holdout:g}% holdout of journey {action.journey_id}"
    return None


def decide(
    action: PlannedAction, facts: Facts, history: Sequence[SendRecord], rules: GovernanceRules,
    now: datetime, definitions_version: str, holdout_percent: float | None = None,
) -> Decision:
    """Whether, and from when, ``action`` may run; ``holdout_percent`` is the journey's own."""
    holdout = rules.holdout_percent if holdout_percent is None else holdout_percent
    outcome: Outcome = "sent"
    rule, reason, not_before = "allowed", "every rule passed", None
    if is_removal(action, rules):
        rule, reason = "removal", "removing data is always allowed"
    elif (withheld := _withheld_by(action, facts, history, rules, now, holdout)) is not None:
        outcome, (rule, reason) = "withheld", withheld
    elif (until := quiet_until(rules, facts, action.channel, now)) is not None:
        outcome, rule, not_before = "delayed", "quiet_hours", until
        reason = f"quiet hours in the customer's time zone until {until.isoformat()}"
    fields: dict[str, Any] = dict(
        decision_id=stable_id("decision", action.action_id, definitions_version),
        outcome=outcome, rule=rule, reason=reason, action_id=action.action_id,
        profile_id=action.profile_id, channel=action.channel, action_type=action.action_type,
        purpose=action.purpose, journey_id=action.journey_id, step_id=action.step_id,
        definitions_version=definitions_version, decided_at=now, not_before=not_before,
        variants=dict(action.variants),
    )
    # Made of the validated action and rules: only "now" can be wrong (naive), and then
    # validation says so as it always did.
    return adopt(Decision, fields) if now.utcoffset() is not None else Decision(**fields)


def record_send(history: Sequence[SendRecord], decision: Decision, rules: GovernanceRules,
                now: datetime) -> list[SendRecord]:
    """The history after ``decision``, pruned to the longest cap window (it stays small)."""
    if not history and (decision.outcome == "withheld" or decision.rule == "removal"):
        return []  # nothing to prune, nothing to count: most decisions (consent)
    since = now - _limits(rules).keep(frozenset({r.channel for r in history}
                                                | {decision.channel}))
    kept = [r for r in history if r.at > since]
    if decision.outcome == "withheld" or decision.rule == "removal":
        return kept
    at = decision.not_before or now
    # Built unvalidated from the validated decision: only an instant without a zone
    # would fail validation, and then it still does.
    record = built(SendRecord, action_id=decision.action_id, channel=decision.channel,
                   at=at) if at.utcoffset() is not None else \
        SendRecord(action_id=decision.action_id, channel=decision.channel, at=at)
    return [*kept, record]
