"""Identity resolution: identifiers -> one canonical profile id, and deterministic merges.

The graph is a key-value map ``identifier key -> profile id`` (kept in a table by the
agent; a dict in tests). A new customer gets a profile id derived from its strongest
identifier. When one event carries identifiers of two or more profiles, they merge:
the smallest profile id wins (deterministic, whatever the arrival order), and a
:class:`MergeRecord` says which event, when and through which identifiers, with the
loser's last state so the merge can be explained and undone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.records import Identifiers

_KINDS = (("customer_id", "cid"), ("email_sha256", "em"), ("phone_sha256", "ph"),
          ("anonymous_id", "anon"))
KIND_PREFIX = dict(_KINDS)


def identifier_keys(ids: Identifiers) -> list[str]:
    """Typed keys, strongest first (``cid:...``, ``em:...``, ``ph:...``, ``anon:...``)."""
    # Spelled out (the order and prefixes of _KINDS): once per event, and getattr by
    # name cost more than the rest of it.
    keys = []
    if ids.customer_id:
        keys.append(f"cid:{ids.customer_id}")
    if ids.email_sha256:
        keys.append(f"em:{ids.email_sha256}")
    if ids.phone_sha256:
        keys.append(f"ph:{ids.phone_sha256}")
    if ids.anonymous_id:
        keys.append(f"anon:{ids.anonymous_id}")
    return keys


def keys_of(identifiers: dict[str, list[str]]) -> list[str]:
    """Typed keys of a profile's identifier lists."""
    return [f"{prefix}:{v}" for kind, prefix in _KINDS for v in identifiers.get(kind, [])]


def new_profile_id(strongest_key: str) -> str:
    return "p-" + hashlib.sha256(strongest_key.encode("utf-8")).hexdigest()[:20]


@dataclass(frozen=True)
class Resolution:
    """Where an event belongs and what the graph must learn from it."""

    profile_id: str
    created: bool
    links: dict[str, str] = field(default_factory=dict)  # identifier key -> profile id
    losers: tuple[str, ...] = ()  # profiles merged into profile_id by this event
    linking_keys: tuple[str, ...] = ()  # the event's keys that pointed at each profile


def resolve(keys: list[str], lookup: Callable[[str], str | None]) -> Resolution:
    """Resolve an event's identifier keys against the graph (``lookup``), purely."""
    if not keys:
        raise ValueError("an event needs at least one identifier")
    # Loops, not comprehensions (each a function object on 3.11): once per event.
    known: dict[str, str] = {}
    first: str | None = None  # the first owner found; ``several`` once another differs
    several = False
    for key in keys:
        pid = lookup(key)
        if pid is not None:
            known[key] = pid
            if first is None:
                first = pid
            elif pid != first:
                several = True
    if first is None:
        pid = new_profile_id(keys[0])
        return _resolution(pid, True, dict.fromkeys(keys, pid), (), ())
    winner: str = first
    losers: tuple[str, ...] = ()
    if several:  # a merge (rare): no set and sort for the one owner of most events
        owners = sorted(set(known.values()))
        winner, losers = owners[0], tuple(owners[1:])
    links: dict[str, str] = {}
    for key in keys:
        if known.get(key) != winner:
            links[key] = winner
    return _resolution(winner, False, links, losers, tuple(sorted(known)) if losers else ())


def _resolution(profile_id: str, created: bool, links: dict[str, str], losers: tuple[str, ...],
                linking_keys: tuple[str, ...]) -> Resolution:
    """``Resolution(...)`` with every field given, without the frozen ``__init__``'s
    per-field setattr (it checks nothing, and there is no ``__post_init__``)."""
    new = object.__new__(Resolution)
    new.__dict__.update(profile_id=profile_id, created=created, links=links, losers=losers,
                        linking_keys=linking_keys)
    return new


@dataclass(frozen=True)
class MergeRecord:
    """One merge, kept on the winner's merge history."""

    event_id: str
    merged_at_us: int  # event time of the linking event, µs
    winner: str
    loser: str
    linking_keys: tuple[str, ...]
    moved_keys: tuple[str, ...]  # the loser's identifier keys repointed to the winner
    loser_snapshot: str  # the loser profile as JSON, for undo
    winner_snapshot: str = ""  # the winner just before the merge, for undo

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "merged_at_us": self.merged_at_us,
                "winner": self.winner, "loser": self.loser,
                "linking_keys": list(self.linking_keys), "moved_keys": list(self.moved_keys),
                "loser_snapshot": self.loser_snapshot, "winner_snapshot": self.winner_snapshot}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MergeRecord:
        return cls(data["event_id"], int(data["merged_at_us"]), data["winner"], data["loser"],
                   tuple(data["linking_keys"]), tuple(data["moved_keys"]),
                   data["loser_snapshot"], data.get("winner_snapshot", ""))

    def explain(self) -> dict[str, Any]:
        """The record without the snapshot, with a readable time (for the API)."""
        out = self.to_dict()
        del out["loser_snapshot"], out["winner_snapshot"]
        out["merged_at"] = datetime.fromtimestamp(self.merged_at_us / 1e6, tz=UTC).isoformat()
        return out


def undo_links(record: MergeRecord) -> dict[str, str]:
    """The graph changes that give the loser's identifiers back to the loser."""
    return {key: record.loser for key in record.moved_keys}


def repoint(keys: Iterable[str], winner: str) -> dict[str, str]:
    return {key: winner for key in keys}
