"""The identity stage: exact dedup and identity resolution for one valid event.

Its store (tables/state.py, one partition: the graph needs one owner) holds:

``d:<event id>``  dedup marker: first-seen time, the record it came from, its profile
``i:<id key>``    identity graph: identifier key -> profile id
``r:<profile>``   a merged-away profile id -> the profile it was merged into
``k:<profile>``   the identifier keys a profile owns (JSON list): what a merge moves
``x:<id key>``    an erased identifier, suppressed: events carrying it are dropped

The stage decides where an event belongs and tells the profile stage
(streams/core/routing.py): the event goes to its canonical profile's partition, and
each merge to the merged-away profile's partition, which hands that profile's state
to the survivor. Everything is written in the input record's transaction, along with
those forwards, so a marker that exists was completely handled.

A resolution is planned over a read-only view of the graph (:func:`plan_route`, over
:class:`GraphView`) and then applied to a store (:func:`apply_plan`, or its halves
:func:`apply_winner` and :func:`apply_loser`): one store here; the directories a
ticket locked, slot by slot, in the partitioned layout (docs/partitioned-identity.md,
streams/core/identity_protocol.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any, Protocol

import orjson

from streams.core.dedup import DEDUP_PREFIX, within_window
from streams.core.identity import Resolution, identifier_keys, resolve
from streams.core.pipeline import APPLIED, DUPLICATE, REPLAYED, Store, canonical_id
from streams.core.profile import from_micros, micros
from streams.core.routing import MergeOut
from streams.records import Envelope

# Records of duplicates remembered per event id, so that a redelivered duplicate is a
# replay too (a handful: producers rarely resend one event more than once or twice).
DUPLICATE_ORIGINS_KEPT = 8
SUPPRESSED = b"x:"  # an erased identifier key, suppressed (streams/core/erasure.py)
SUPPRESSED_EVENT = "suppressed"


@dataclass(frozen=True)
class Routed:
    status: str  # APPLIED, DUPLICATE or REPLAYED
    profile_id: str
    merges: tuple[MergeOut, ...] = ()


def _owned(store: Store, profile_id: str) -> list[str]:
    raw = store.get(b"k:" + profile_id.encode())
    return [] if raw is None else [str(k) for k in orjson.loads(raw)]


def _own(store: Store, profile_id: str, keys: Iterable[str]) -> None:
    store[b"k:" + profile_id.encode()] = json.dumps(sorted(set(keys))).encode()


class GraphView(Protocol):
    """What a resolution reads of the identity graph: the canonical owner of a key
    (None: unknown) and the keys a canonical profile owns. Today's stage reads its one
    store (:class:`StoreView`); a partitioned ticket reads the directories it locked
    (streams/core/identity_protocol.py)."""

    def owner(self, key: str) -> str | None: ...

    def owned(self, profile_id: str) -> list[str]: ...


@dataclass(frozen=True)
class StoreView:
    """The graph as one store holds it: ``i:`` hints followed through ``r:`` redirects."""

    store: Store

    def owner(self, key: str) -> str | None:
        store = self.store
        raw = store.get(b"i:" + key.encode())
        if raw is None:
            return None
        pid = raw.decode()
        # canonical_id's first step, inlined: most profiles were never merged away.
        return pid if store.get(b"r:" + pid.encode()) is None else canonical_id(store, pid)

    def owned(self, profile_id: str) -> list[str]:
        return _owned(self.store, profile_id)


@dataclass(frozen=True)
class Plan:
    """What one event's resolution writes, decided before anything is written."""

    resolution: Resolution
    merges: tuple[MergeOut, ...]  # one per loser, its moved keys = its owned keys
    owned: tuple[str, ...] | None  # the winner's keys to store; None: it gains none

    @property
    def profile_id(self) -> str:
        return self.resolution.profile_id

    def changes(self) -> bool:
        """True when the decision writes the graph (links or merges), not only routes."""
        return bool(self.resolution.links or self.merges)

    def hints(self) -> dict[str, str]:
        """Every ``i:`` the decision writes: its links, then each loser's moved keys
        (both to the winner; an event key owned by a loser is in both, same value)."""
        out = dict(self.resolution.links)
        out.update((key, self.profile_id) for m in self.merges for key in m.moved_keys)
        return out


def plan_route(view: GraphView, event_id: str, event_time_us: int, keys: list[str]) -> Plan:
    """Today's decision for an event with identifier ``keys`` (strongest first), read
    from ``view`` only: the pure half of :func:`route_event`."""
    return _plan(view, resolve(keys, view.owner), event_id, event_time_us)


def _plan(view: GraphView, res: Resolution, event_id: str, event_time_us: int) -> Plan:
    """:func:`plan_route` once ``res`` is known (``event_time_us`` is read by merges only)."""
    merges = tuple(MergeOut(event_id, event_time_us, res.profile_id, loser, res.linking_keys,
                            tuple(view.owned(loser))) for loser in res.losers
                   ) if res.losers else ()
    owned: tuple[str, ...] | None = None
    if res.links or merges:
        have = view.owned(res.profile_id)
        gained = [*res.links, *(k for m in merges for k in m.moved_keys)]
        if not set(gained) <= set(have):
            owned = tuple(sorted({*have, *gained}))
    plan = object.__new__(Plan)  # Plan(res, merges, owned), without the frozen __init__
    plan.__dict__.update(resolution=res, merges=merges, owned=owned)
    return plan


def apply_winner(store: Store, plan: Plan) -> None:
    """The winner's directory: its keys with what it gained (where ``k:`` lives)."""
    if plan.owned is not None:
        store[b"k:" + plan.profile_id.encode()] = _json_strs(plan.owned)


def _json_strs(values: tuple[str, ...]) -> bytes:
    """``json.dumps(list(values)).encode()``: a new customer's keys, once per new customer;
    spelled out for strings (json.dumps's own encoder set-up cost more than the rest)."""
    for value in values:
        if type(value) is not str:
            return json.dumps(list(values)).encode()
    return ("[" + ", ".join(map(_json_str, values)) + "]").encode()


def apply_loser(store: Store, merge: MergeOut) -> None:
    """A loser's directory: redirected to the winner, its keys gone with the merge (an
    empty key list stays, as it always has: nothing moved)."""
    store[b"r:" + merge.loser.encode()] = merge.winner.encode()
    if merge.moved_keys:
        del store[b"k:" + merge.loser.encode()]


def apply_plan(store: Store, plan: Plan) -> None:
    """The whole plan on one store (today's layout): hints, losers, then the winner."""
    hints = plan.hints() if plan.merges else plan.resolution.links  # no copy without merges
    for key, pid in hints.items():
        store[b"i:" + key.encode()] = pid.encode()
    for merge in plan.merges:
        apply_loser(store, merge)
    apply_winner(store, plan)


def _noted_duplicate(marker: dict[str, Any], origin: str) -> bytes | None:
    """``marker`` with ``origin`` noted as a duplicate's record, or None when it is noted
    already: that duplicate record delivered again, which must not count twice."""
    dups = [str(d) for d in marker.get("dups", ())]
    if origin in dups:
        return None
    return json.dumps({**marker, "dups": [*dups, origin][-DUPLICATE_ORIGINS_KEPT:]}).encode()


def seen_again(store: Store, marker_key: bytes, raw: bytes, origin: str) -> Routed:
    """An event id already marked (``raw``): a replay of its record or a duplicate,
    noted in the marker."""
    marker = orjson.loads(raw)
    pid = canonical_id(store, str(marker["pid"]))
    if origin and origin == marker.get("origin"):
        return Routed(REPLAYED, pid)  # the same record again (redelivery): not a duplicate
    noted = _noted_duplicate(marker, origin) if origin else None
    if origin and noted is None:
        return Routed(REPLAYED, pid)
    if noted is not None:
        store[marker_key] = noted
    return Routed(DUPLICATE, pid)


def is_suppressed(store: Store, keys: Iterable[str]) -> bool:
    """Only identifiers new to the graph can be suppressed: an erasure deleted their links."""
    for key in keys:  # usually none (a known customer): a loop, not a generator
        if store.get(SUPPRESSED + key.encode()) is not None:
            return True
    return False


def route_event(store: Store, envelope: Envelope, now: datetime, dedup_window: timedelta,
                origin: str = "") -> Routed:
    """Dedup ``envelope`` and resolve its profile, learning what the graph must learn.

    ``origin`` names the ingestion record (topic:partition:offset) the event came
    from: the same record delivered again is a replay, not a producer's duplicate.
    """
    marker_key = DEDUP_PREFIX + envelope.event_id.encode()  # dedup_key's, inlined
    raw = store.get(marker_key)
    if raw is not None and within_window(from_micros(marker_seen_us(raw)), now, dedup_window):
        return seen_again(store, marker_key, raw, origin)
    view = _store_view(store)
    res = resolve(identifier_keys(envelope.identifiers), view.owner)
    # plan_route, with the event time in micros only for a merge (which records it)
    plan = _plan(view, res, envelope.event_id, micros(envelope.event_time) if res.losers else 0)
    links = plan.resolution.links
    if links and is_suppressed(store, links):  # only new identifiers can be suppressed
        return Routed(SUPPRESSED_EVENT, "")
    store[marker_key] = new_marker(_now_us(now), origin, plan.profile_id)
    apply_plan(store, plan)
    return _routed(APPLIED, plan.profile_id, plan.merges)


# The frozen dataclasses' __init__ without its per-field setattr, every field given
# (they check nothing, have no __post_init__): a few per event.

def _routed(status: str, profile_id: str, merges: tuple[MergeOut, ...]) -> Routed:
    new = object.__new__(Routed)
    new.__dict__.update(status=status, profile_id=profile_id, merges=merges)
    return new


def _store_view(store: Store) -> StoreView:
    new = object.__new__(StoreView)
    new.__dict__["store"] = store
    return new


# The last wall-clock time turned into micros, with its micros: a stage's batch of events
# shares one ``now``. One tuple (the time kept alive in it, so ``is`` is exact), so a
# thread never reads one time with another's micros.
_last_now: tuple[datetime | None, int] = (None, 0)


def _now_us(now: datetime) -> int:
    global _last_now
    last = _last_now
    if last[0] is now:
        return last[1]
    us = micros(now)
    _last_now = (now, us)
    return us


def new_marker(seen_us: int, origin: str, profile_id: str) -> bytes:
    """A new dedup marker: first seen (wall clock, the dedup window's), record, profile."""
    if type(seen_us) is int and type(origin) is str and type(profile_id) is str:
        # json.dumps's very bytes, without its encoder set-up (one marker per event)
        return (f'{{"seen_us": {seen_us!r}, "origin": {_json_str(origin)}, '
                f'"pid": {_json_str(profile_id)}}}').encode()
    return json.dumps({"seen_us": seen_us, "origin": origin, "pid": profile_id}).encode()


def relink(store: Store, winner: str, loser: str, moved: Iterable[str]) -> None:
    """An undone merge: ``loser``'s identifier keys point at it again."""
    moved = list(moved)
    for key in moved:
        store[b"i:" + key.encode()] = loser.encode()
    if store.get(b"r:" + loser.encode()) is not None:
        del store[b"r:" + loser.encode()]
    _own(store, loser, [*_owned(store, loser), *moved])
    _own(store, winner, set(_owned(store, winner)) - set(moved))


def marker_seen_us(raw: bytes) -> int:
    return int(orjson.loads(raw)["seen_us"])


def expired_markers(
    items: Iterable[tuple[bytes, bytes]], now: datetime, window: timedelta, limit: int
) -> tuple[list[bytes], bytes | None]:
    """One sweep step over ``d:`` markers in key order: (keys to delete, next cursor).

    The cursor is None when the sweep reached the end of the markers (start again).
    Expired markers count as absent already; deleting them only bounds the table.
    """
    expired: list[bytes] = []
    scanned = 0
    for key, value in items:
        if not key.startswith(DEDUP_PREFIX):
            return expired, None
        if not within_window(from_micros(marker_seen_us(value)), now, window):
            expired.append(key)
        scanned += 1
        if scanned >= limit:
            return expired, key + b"\x00"
    return expired, None
