"""Data actions: a journey or schedule step's write to the profile (set or clear a trait,
add to a number), applied in the profile stage like an event.

A write becomes an event with its own id (the data action's deterministic id) named
``trait_set``, ``trait_cleared`` or ``score_incremented`` (steps.DATA_EVENTS), applied
by the profile stage's own :func:`streams.core.profile.apply_event`, so it is on the
timeline with what asked for it; its trait is then set last-writer-wins at that event's
stamp, later than anything the profile has seen and than the trait's last write (the
write was decided on those facts and must not lose to them). It commits with the record
that caused it: the same transaction as the profile and the commands (tables/state.py),
so it happens exactly once, and a write already on the timeline (its id is there) is not
applied again.

Activation then runs again on the written profile with that event
(:func:`engine.on_profile_event`, touched: the trait and the event): every audience that
reads the trait moves within the same record, journeys react, and the writes they plan
follow, up to :data:`MAX_WRITES` a record. Validation refuses loops
(streams/activation/checks.py); the bound stops one it cannot see (during a staged
rollout two versions decide, and each may be loop-free alone).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from streams.activation.definitions import DefinitionSet, Scalar
from streams.activation.emission import Emission, emission_of
from streams.activation.engine import ActivationState, Output, on_profile_event
from streams.activation.facts import HistoryEvent, as_number, facts_from_profile
from streams.activation.model import DataAction
from streams.activation.steps import DATA_EVENTS, written
from streams.core.profile import Profile, apply_event, from_micros, micros, set_traits
from streams.records import Envelope, Identifiers

log = logging.getLogger(__name__)
MAX_WRITES = 16
SOURCE = "activation"  # the envelope's source: written by activation, not a backend


@dataclass(frozen=True)
class Step:
    """Where a record's activation stands: the profile (not yet stored), the activation
    state after it, the last step's output (its wake time is the profile's timer) and
    everything emitted so far."""

    profile: Profile
    state: ActivationState
    out: Output
    emission: Emission


def _identifiers(profile: Profile) -> Identifiers | None:
    """Identifiers the profile already has (so applying the write adds none)."""
    first = {kind: min(values) for kind, values in profile.identifiers.items() if values}
    ids = Identifiers(first.get("customer_id"), first.get("email_sha256"),
                      first.get("phone_sha256"), first.get("anonymous_id"))
    return None if ids.is_empty() else ids


def written_value(profile: Profile, action: DataAction) -> Scalar:
    if action.op == "set":
        return action.value
    if action.op == "clear":
        return None
    current = profile.traits.get(action.trait)
    total = (as_number(None if current is None else current[0]) or Decimal(0)) \
        + (as_number(action.value) or Decimal(0))
    return int(total) if total == total.to_integral_value() else float(total)


def _summary(action: DataAction, value: Scalar) -> str:
    what = {"set": f"set {action.trait}={value}", "clear": f"cleared {action.trait}",
            "increment": f"{action.trait} +{action.value} = {value}"}[action.op]
    by = (f"journey {action.journey_id} step {action.step_id}" if action.journey_id
          else f"schedule {action.schedule_id}")
    return f"{what} (by {by})"


def apply_write(profile: Profile, action: DataAction, now: datetime, limit: int
                ) -> tuple[Profile, HistoryEvent] | None:
    """The profile with the write applied and the event it is; None if it was applied
    already, or the profile has no identifier to carry it."""
    ids = _identifiers(profile)
    if ids is None or any(e["event_id"] == action.action_id for e in profile.timeline):
        return None
    current = profile.traits.get(action.trait)
    floor = max(profile.newest_event_us, 0 if current is None else int(current[1][0]))
    at = max(now, from_micros(floor + 1))
    value = written_value(profile, action)
    envelope = Envelope(event_id=action.action_id, event_name=DATA_EVENTS[action.op],
                        event_time=at, received_time=at, source=SOURCE, identifiers=ids,
                        properties={action.trait: value})
    applied = apply_event(profile, envelope, timedelta(0), limit)  # never late: at > newest
    detail = {k: v for k, v in (("journey_id", action.journey_id), ("step_id", action.step_id),
                                ("schedule_id", action.schedule_id), ("op", action.op),
                                ("trait", action.trait), ("caused_by", action.caused_by))
              if v is not None}
    timeline = [{**e, "summary": _summary(action, value), "detail": detail}
                if e["event_id"] == action.action_id else e for e in applied.timeline]
    result = set_traits(applied, {action.trait: value}, (micros(at), action.action_id))
    # Lateness is measured against customers' events: a write does not move that horizon.
    result = result.evolve(timeline=timeline, newest_event_us=profile.newest_event_us)
    return result, HistoryEvent(action.action_id, envelope.event_name, at,
                                 {action.trait: value})


def follow_writes(step: Step, now: datetime, definitions: DefinitionSet, limit: int) -> Step:
    """Apply the writes ``step.out`` planned, each followed by activation on the written
    profile (whose writes come next), in order; everything joins the step's emission."""
    pending = list(step.out.data)
    for _ in range(MAX_WRITES):
        if not pending:
            return step
        action = pending.pop(0)
        applied = apply_write(step.profile, action, now, limit)
        if applied is None:
            continue
        profile, event = applied
        facts = facts_from_profile(profile)
        new, out = on_profile_event(step.state, facts, event, now, definitions,
                                    written(action.op, action.trait))
        emitted = emission_of(step.state, new, out, facts, event.event_id, now,
                              definitions.version)
        write = {**action.model_dump(mode="json"), "written_at": event.time.isoformat()}
        step = Step(profile, new, out, step.emission.joined(
            replace(emitted, writes=[write])))
        pending.extend(out.data)
    if pending:
        log.warning("profile %s: %d data actions left unapplied after %d in one record "
                    "(a loop between definition versions?): %s", step.profile.profile_id,
                    len(pending), MAX_WRITES, [a.action_id for a in pending])
    return step
