"""Evaluating audience conditions, and when their answer can next change by time alone.

``next_change`` is what lets the runtime keep ONE timer per profile instead of a nightly
scan: after every evaluation it stores the earliest instant at which any audience could
flip without a new event, and re-evaluates then. It may be early (the runtime then just
finds nothing changed and stores the next instant) but never late.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from streams.activation.compiled import Assessor, compile_condition, dependencies
from streams.activation.conditions import (
    AllOf,
    AnyOf,
    Condition,
    DateCondition,
    EventCondition,
    NotOf,
    TraitCondition,
)
from streams.activation.definitions import Audience
from streams.activation.facts import (
    Facts,
    HistoryEvent,
    as_datetime,
    as_number,
)


def evaluate(condition: Condition, facts: Facts, now: datetime) -> bool:
    if isinstance(condition, AllOf):
        return all(evaluate(c, facts, now) for c in condition.all)
    if isinstance(condition, AnyOf):
        return any(evaluate(c, facts, now) for c in condition.any)
    if isinstance(condition, NotOf):
        return not evaluate(condition.not_, facts, now)
    if isinstance(condition, TraitCondition):
        return _trait(condition, facts.resolve(condition.trait))
    if isinstance(condition, EventCondition):
        return _event_holds(condition, _matching(condition, facts.named(condition.event), now),
                            now)
    return _date_holds(_window(condition, facts), condition.if_missing, now)


def next_change(condition: Condition, facts: Facts, now: datetime) -> datetime | None:
    """Earliest instant after ``now`` at which ``evaluate`` could flip with no new facts."""
    return assess(condition, facts, now)[1]


def assess(condition: Condition, facts: Facts, now: datetime) -> tuple[bool, datetime | None]:
    """``(evaluate(...), next_change(...))`` in one pass over the condition: what an
    audience step needs for every audience it re-evaluates (the hot path). Every child
    of all/any is visited (no short cut): each can bring the next change closer."""
    if isinstance(condition, AllOf):
        parts = [assess(c, facts, now) for c in condition.all]
        return all(p[0] for p in parts), _earliest(p[1] for p in parts)
    if isinstance(condition, AnyOf):
        parts = [assess(c, facts, now) for c in condition.any]
        return any(p[0] for p in parts), _earliest(p[1] for p in parts)
    if isinstance(condition, NotOf):
        holds, wake = assess(condition.not_, facts, now)
        return not holds, wake
    if isinstance(condition, TraitCondition):
        return _trait(condition, facts.resolve(condition.trait)), None
    if isinstance(condition, EventCondition):
        named = facts.named(condition.event)
        matched = _matching(condition, named, now)
        return (_event_holds(condition, matched, now),
                _event_change(condition, named, matched, now))
    window = _window(condition, facts)
    return _date_holds(window, condition.if_missing, now), _date_change(window, now)


def transitions(
    audiences: Mapping[str, Audience], facts: Facts, previous: Collection[str], now: datetime
) -> tuple[list[str], list[str]]:
    """(entered, exited) audience ids, sorted; ``previous`` is the stored membership.

    Ids in ``previous`` that are no longer defined count as exited, so removing an
    audience definition cleanly takes everyone out of it.
    """
    current = {aid for aid, a in audiences.items() if evaluate(a.condition, facts, now)}
    before = set(previous)
    return sorted(current - before), sorted(before - current)


def memberships(audiences: Mapping[str, Audience], facts: Facts, now: datetime) -> list[str]:
    return sorted(aid for aid, a in audiences.items() if evaluate(a.condition, facts, now))


def next_audience_change(
    audiences: Mapping[str, Audience], facts: Facts, now: datetime
) -> datetime | None:
    """The one timer the runtime stores per profile for audiences."""
    return _earliest(next_change(a.condition, facts, now) for a in audiences.values())


Index = dict[str, frozenset[str]]  # dependency name -> ids of the audiences reading it
# An empty profile's facts never change with time (no events, no dates: every answer is
# constant, no wake), so what it holds is a constant of the definitions: the answer,
# for a new profile, of every audience its first event does not touch.
_EMPTY_AT = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Compiled:
    index: Index
    assessors: dict[str, Assessor]
    empty_members: frozenset[str]  # the audiences an empty profile is in


_COMPILED: dict[int, tuple[Mapping[str, Audience], Compiled]] = {}


def compiled(audiences: Mapping[str, Audience]) -> Compiled:
    """The audiences' dependency index and compiled conditions, cached per definitions
    object (the entry holds it, so its id is never reused)."""
    entry = _COMPILED.get(id(audiences))
    if entry is None or entry[0] is not audiences:
        if len(_COMPILED) > 64:  # superseded definition sets: let them go
            _COMPILED.clear()
        index: dict[str, set[str]] = {}
        for aid, audience in audiences.items():
            for name in dependencies(audience.condition):
                index.setdefault(name, set()).add(aid)
        assessors = {aid: compile_condition(a.condition) for aid, a in audiences.items()}
        empty = frozenset(aid for aid, assess_ in assessors.items()
                          if assess_(Facts(""), _EMPTY_AT)[0])
        entry = (audiences, Compiled({n: frozenset(ids) for n, ids in index.items()},
                                     assessors, empty))
        _COMPILED[id(audiences)] = entry
    return entry[1]


@dataclass(frozen=True)
class AudienceStep:
    entered: list[str]
    exited: list[str]
    members: list[str]
    wakes: dict[str, datetime]  # audience id -> next instant it can flip by time alone


def audience_step(
    audiences: Mapping[str, Audience], facts: Facts, members: Collection[str],
    wakes: Mapping[str, datetime], now: datetime, touched: frozenset[str] | None,
    fresh: bool = False,
) -> AudienceStep:
    """Membership after a change, re-evaluating only what the change can affect.

    ``touched`` names what changed (see :func:`dependencies`); None means anything could
    have (a merge, other definitions): every audience is evaluated. An audience not
    touched keeps its membership and its stored wake time, unless that time has come
    (then it is evaluated too): its answer depends only on facts it reads and on time,
    and its next flip by time is exactly the stored wake. ``fresh``: a new profile, and
    ``touched`` is what its first event changed from an empty one; an audience not
    touched answers as for an empty profile.
    """
    known = compiled(audiences)
    if touched is None:
        ids = set(audiences)
    else:
        ids = {aid for aid, at in wakes.items() if at <= now and aid in audiences}
        for name in touched:
            ids.update(known.index.get(name, ()))
    kept = known.empty_members if fresh else frozenset(members)
    before = set(members)
    holding: set[str] = set()
    new_wakes = {aid: t for aid, t in wakes.items() if aid in audiences and aid not in ids}
    for aid in ids:
        holds, wake = known.assessors[aid](facts, now)
        if holds:
            holding.add(aid)
        if wake is not None:
            new_wakes[aid] = wake
    after = ((kept & set(audiences)) - ids) | holding
    return AudienceStep(sorted(after - before), sorted(before - after), sorted(after), new_wakes)


def _earliest(instants: Iterable[datetime | None]) -> datetime | None:
    known = [t for t in instants if t is not None]
    return min(known) if known else None


def _trait(cond: TraitCondition, actual: Any) -> bool:
    if cond.op == "exists":
        return (actual is not None) == (cond.value is not False)
    if cond.op == "eq":
        return bool(actual == cond.value)
    if cond.op == "ne":
        return bool(actual != cond.value)
    if cond.op == "in":
        return bool(actual in cond.value)
    return _ordered(cond.op, actual, cond.value)


def _ordered(op: str, actual: Any, expected: Any) -> bool:
    """Numbers compare as numbers, date-like strings as instants; anything else is False."""
    left: Any = as_number(actual)
    right: Any = as_number(expected)
    if left is None or right is None:
        left, right = as_datetime(actual), as_datetime(expected)
    if left is None or right is None:
        return False
    result: bool = {"gt": left > right, "gte": left >= right,
                    "lt": left < right, "lte": left <= right}[op]
    return result


def _matching(cond: EventCondition, events: Iterable[HistoryEvent], now: datetime
              ) -> list[HistoryEvent]:
    """Events of the name inside ``(now - within, now]``; future-dated ones do not count yet."""
    lower = None if cond.within is None else now - cond.within
    return [e for e in events
            if e.name == cond.event and e.time <= now and (lower is None or e.time > lower)]


def _event_holds(cond: EventCondition, matched: list[HistoryEvent], now: datetime) -> bool:
    if cond.sum_of is not None and cond.sum_at_least is not None:
        total = sum((as_number(e.properties.get(cond.sum_of)) or Decimal(0) for e in matched),
                    Decimal(0))
        holds = len(matched) >= cond.at_least and total >= cond.sum_at_least
    else:
        holds = len(matched) >= cond.at_least
    return holds if cond.did else not holds


def _event_change(cond: EventCondition, named: Iterable[HistoryEvent],
                  matched: list[HistoryEvent], now: datetime) -> datetime | None:
    """The next instant an event enters (future-dated) or leaves the window; ``named``
    are the events of the condition's name, ``matched`` those inside the window now."""
    entering = [e.time for e in named if e.time > now]
    leaving = [] if cond.within is None else [e.time + cond.within for e in matched]
    return _earliest([*entering, *leaving])


def _window(cond: DateCondition, facts: Facts) -> Window:
    """The [start, end) interval of ``now`` during which the date condition holds."""
    when = as_datetime(facts.resolve(cond.date))
    if when is None:
        return None
    lo, hi = cond.offsets()
    # date - now in (lo, hi]  <=>  now in [date - hi, date - lo)
    return (None if hi is None else when - hi, None if lo is None else when - lo)


Window = tuple[datetime | None, datetime | None] | None


def _date_holds(window: Window, if_missing: bool, now: datetime) -> bool:
    if window is None:
        return if_missing
    start, end = window
    return (start is None or start <= now) and (end is None or now < end)


def _date_change(window: Window, now: datetime) -> datetime | None:
    if window is None:
        return None
    return _earliest(t for t in window if t is not None and t > now)
