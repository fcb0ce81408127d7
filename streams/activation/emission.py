"""What one record caused for one profile (:class:`Emission`): the records the profile
stage publishes in the record's transaction (action commands, audience changes) and
what goes onto the profile's timeline (decisions, audience moves, experiment
assignments), built from the activation state before and after (:func:`emission_of`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256
from typing import Any

from streams.activation.actions import command_identifiers
from streams.activation.engine import ActivationState, Output
from streams.activation.facts import Facts
from streams.activation.model import SEP as _SEP
from streams.activation.model import Decision, json_time

_TIMES = ("created_at", "not_before", "changed_at")  # datetime fields of emitted records


@dataclass(frozen=True)
class Emission:
    """What one record caused for one profile: the records to publish, and the notes
    (decisions, audience moves, assignments) for its timeline."""

    profile_id: str
    commands: list[dict[str, Any]] = field(default_factory=list)  # ActionCommand dicts
    changes: list[dict[str, Any]] = field(default_factory=list)  # AudienceMembershipChanged
    decisions: list[dict[str, Any]] = field(default_factory=list)  # Decision.to_timeline()
    enrolled: list[str] = field(default_factory=list)  # journey ids newly enrolled
    assignments: list[dict[str, Any]] = field(default_factory=list)  # experiment variants
    writes: list[dict[str, Any]] = field(default_factory=list)  # data actions applied

    def is_empty(self) -> bool:
        return not (self.commands or self.changes or self.decisions or self.enrolled
                    or self.assignments or self.writes)

    def joined(self, later: Emission) -> Emission:
        """This and what a later step of the same record caused (a data action's)."""
        return Emission(self.profile_id, *(getattr(self, name) + getattr(later, name)
                                           for name in _GROUPS))

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, default=_json_time, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Emission:
        data = json.loads(raw)
        for group in ("commands", "changes"):
            data[group] = [_parse_times(item) for item in data[group]]
        return cls(**data)


_GROUPS = ("commands", "changes", "decisions", "enrolled", "assignments", "writes")


def _json_time(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _parse_times(item: dict[str, Any]) -> dict[str, Any]:
    return {k: (datetime.fromisoformat(v) if k in _TIMES and isinstance(v, str) else v)
            for k, v in item.items()}


def experiments(*states: ActivationState) -> dict[str, str]:
    """The variants of every enrollment active in any of ``states`` (before and after a
    step: a change that ends a journey still counts for its experiment)."""
    found: dict[str, str] = {}
    for state in states:
        for enr in state.journeys.active.values():
            if enr.variants:  # most enrollments passed no split step
                found.update(enr.experiments())
    return found


def emission_of(before: ActivationState, after: ActivationState, out: Output, facts: Facts,
                cause: str, now: datetime, version: str) -> Emission:
    moved = bool(out.entered or out.exited)
    ids = command_identifiers(facts.identifiers) if moved else {}  # for the changes only
    variants = experiments(before, after) if moved else {}
    pid = facts.profile_id
    # stable_id("audience", pid, audience, change, cause), its constant parts joined once
    head, tail = f"audience{_SEP}{pid}{_SEP}", f"{_SEP}{cause}"
    changes = [
        {"change_id": sha256(f"{head}{audience}{_SEP}{change}{tail}".encode()).hexdigest(),
         "profile_id": pid, "audience_id": audience, "change": change,
         "identifiers": ids, "caused_by": cause, "definitions_version": version,
         "changed_at": now, "variants": variants}
        for change, audiences in (("entered", out.entered), ("exited", out.exited))
        for audience in audiences
    ]
    enrolled = [] if after.journeys is before.journeys else [  # the same: none
        jid for jid, enr in sorted(after.journeys.active.items())
        if (old := before.journeys.active.get(jid)) is None
        or old.enrollment_id != enr.enrollment_id]
    assignments = [{**a.model_dump(mode="json"), "definitions_version": version,
                    "assigned_at": now.isoformat()} for a in out.assignments]
    return made(facts.profile_id, list(out.commands), changes, _timeline(out.decisions, now),
                enrolled, assignments)


_new = object.__new__


def made(profile_id: str, commands: list[dict[str, Any]], changes: list[dict[str, Any]],
         decisions: list[dict[str, Any]], enrolled: list[str],
         assignments: list[dict[str, Any]]) -> Emission:
    """``Emission(...)`` with no writes, without the frozen dataclass's ``__init__`` (a
    setattr per field): one per record. The fields go in their declared order, which
    is the order :meth:`Emission.to_json` writes them in."""
    emission = _new(Emission)
    emission.__dict__.update(profile_id=profile_id, commands=commands, changes=changes,
                             decisions=decisions, enrolled=enrolled, assignments=assignments,
                             writes=[])
    return emission


def _timeline(decisions: list[Decision], now: datetime) -> list[dict[str, Any]]:
    """The decisions' timeline dicts; those decided now share one formatted instant."""
    if not decisions:
        return []
    stamp = json_time(now)
    return [d.to_timeline(now, stamp) for d in decisions]
