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

from streams.activation.compiled import Assessor, compile_condition, dependencies
from streams.activation.conditions import Condition
from streams.activation.definitions import Audience
from streams.activation.facts import Facts

_BY_CONDITION: dict[int, tuple[Condition, Assessor]] = {}


def assessor(condition: Condition) -> Assessor:
    """The condition compiled (streams/activation/compiled.py), cached per condition
    object (the entry holds it, so its id is never reused)."""
    entry = _BY_CONDITION.get(id(condition))
    if entry is None or entry[0] is not condition:
        if len(_BY_CONDITION) > 4096:  # conditions of superseded definition sets
            _BY_CONDITION.clear()
        entry = (condition, compile_condition(condition))
        _BY_CONDITION[id(condition)] = entry
    return entry[1]


def assess(condition: Condition, facts: Facts, now: datetime) -> tuple[bool, datetime | None]:
    """``(evaluate(...), next_change(...))`` in one pass over the condition."""
    return assessor(condition)(facts, now)


def evaluate(condition: Condition, facts: Facts, now: datetime) -> bool:
    return assess(condition, facts, now)[0]


def next_change(condition: Condition, facts: Facts, now: datetime) -> datetime | None:
    """Earliest instant after ``now`` at which ``evaluate`` could flip with no new facts."""
    return assess(condition, facts, now)[1]


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
    ids: frozenset[str] = frozenset()  # every audience id


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
        assessors = {aid: assessor(a.condition) for aid, a in audiences.items()}
        empty = frozenset(aid for aid, assess_ in assessors.items()
                          if assess_(Facts(""), _EMPTY_AT)[0])
        entry = (audiences, Compiled({n: frozenset(ids) for n, ids in index.items()},
                                     assessors, empty, frozenset(audiences)))
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
    defined = known.ids
    if touched is None:
        ids = set(defined)
    else:
        ids = {aid for aid, at in wakes.items() if at <= now and aid in defined}
        index = known.index
        for name in touched:
            found = index.get(name)
            if found is not None:
                ids.update(found)
    new_wakes = {aid: t for aid, t in wakes.items() if aid not in ids and aid in defined}
    assessors = known.assessors
    holding: set[str] = set()
    for aid in sorted(ids):  # a set's order varies with the process's hash seed, and
        # the wakes' order is stored: sorted, the state's bytes are the same everywhere
        holds, wake = assessors[aid](facts, now)
        if holds:
            holding.add(aid)
        if wake is not None:
            new_wakes[aid] = wake
    return _moves(known.empty_members if fresh else members, members, defined, ids,
                  holding, new_wakes)


def _moves(kept: Collection[str], members: Collection[str], defined: frozenset[str],
           evaluated: set[str], holding: set[str], wakes: dict[str, datetime]
           ) -> AudienceStep:
    """The step from the audiences evaluated (``holding``: those that hold) and the
    others' ``kept`` answers."""
    before = set(members)
    after = (defined.intersection(kept) - evaluated) | holding
    if after == before:  # most events move no audience
        return AudienceStep([], [], sorted(after), wakes)
    return AudienceStep(sorted(after - before), sorted(before - after), sorted(after), wakes)


def _earliest(instants: Iterable[datetime | None]) -> datetime | None:
    known = [t for t in instants if t is not None]
    return min(known) if known else None
