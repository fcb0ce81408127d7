"""Journeys' structure, looked up once per definitions instead of on every event.

Journeys run on every event (exit criteria, waits, triggers): finding a step by id,
its kind and the step after it walked the step list each time (``Journey.after``
compared pydantic models to find a step's index), and the journeys an event or audience
triggers were filtered from all journeys. Both are constants of the definitions, so
they are computed once per journey (or journeys mapping) and cached by identity: each
entry holds its key object, so an id is never reused while it is cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streams.activation.definitions import STEP_KINDS, Journey, Step


@dataclass(frozen=True)
class Plan:
    """One journey's steps by id: the step, its kind and the id of the step after it."""

    steps: dict[str, Step]
    kinds: dict[str, str]
    after: dict[str, str | None]

_PLANS: dict[int, tuple[Journey, Plan]] = {}
_TRIGGERS: dict[int, tuple[Mapping[str, Journey], Triggers]] = {}
_KEPT = 1024  # superseded definition sets let go of theirs when this many are cached


def plan(journey: Journey) -> Plan:
    entry = _PLANS.get(id(journey))
    if entry is None or entry[0] is not journey:
        if len(_PLANS) >= _KEPT:
            _PLANS.clear()
        steps = journey.steps
        after = {s.id: s.next if s.next is not None
                 else steps[i + 1].id if i + 1 < len(steps) else None
                 for i, s in enumerate(steps)}
        kinds = {s.id: next(k for k in STEP_KINDS if getattr(s, k) is not None)
                 for s in steps}
        entry = (journey, Plan({s.id: s for s in steps}, kinds, after))
        _PLANS[id(journey)] = entry
    return entry[1]


Triggers = tuple[dict[str, list[Journey]], dict[str, list[Journey]]]  # by event, audience


def triggers(journeys: Mapping[str, Journey]) -> Triggers:
    """The journeys each event name and each audience id triggers, in journey id order
    (as ``DefinitionSet.journeys_for_event`` and ``journeys_for_audience`` give them)."""
    entry = _TRIGGERS.get(id(journeys))
    if entry is None or entry[0] is not journeys:
        if len(_TRIGGERS) >= _KEPT:
            _TRIGGERS.clear()
        by_event: dict[str, list[Journey]] = {}
        by_audience: dict[str, list[Journey]] = {}
        for _, journey in sorted(journeys.items()):
            if journey.trigger.event is not None:
                by_event.setdefault(journey.trigger.event, []).append(journey)
            if journey.trigger.audience is not None:
                by_audience.setdefault(journey.trigger.audience, []).append(journey)
        entry = (journeys, (by_event, by_audience))
        _TRIGGERS[id(journeys)] = entry
    return entry[1]
