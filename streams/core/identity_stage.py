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
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from streams.core.dedup import DEDUP_PREFIX, dedup_key, within_window
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
    return [] if raw is None else [str(k) for k in json.loads(raw)]


def _own(store: Store, profile_id: str, keys: Iterable[str]) -> None:
    store[b"k:" + profile_id.encode()] = json.dumps(sorted(set(keys))).encode()


def _plan(store: Store, envelope: Envelope) -> Resolution:
    def lookup(key: str) -> str | None:
        raw = store.get(b"i:" + key.encode())
        return None if raw is None else canonical_id(store, raw.decode())

    return resolve(identifier_keys(envelope.identifiers), lookup)


def _noted_duplicate(marker: dict[str, Any], origin: str) -> bytes | None:
    """``marker`` with ``origin`` noted as a duplicate's record, or None when it is noted
    already: that duplicate record delivered again, which must not count twice."""
    dups = [str(d) for d in marker.get("dups", ())]
    if origin in dups:
        return None
    return json.dumps({**marker, "dups": [*dups, origin][-DUPLICATE_ORIGINS_KEPT:]}).encode()


def _seen(store: Store, marker_key: bytes, raw: bytes, origin: str) -> Routed:
    marker = json.loads(raw)
    pid = canonical_id(store, str(marker["pid"]))
    if origin and origin == marker.get("origin"):
        return Routed(REPLAYED, pid)  # the same record again (redelivery): not a duplicate
    noted = _noted_duplicate(marker, origin) if origin else None
    if origin and noted is None:
        return Routed(REPLAYED, pid)
    if noted is not None:
        store[marker_key] = noted
    return Routed(DUPLICATE, pid)


def _merge(store: Store, res: Resolution, loser: str, envelope: Envelope) -> MergeOut:
    moved = _owned(store, loser)
    for key in moved:
        store[b"i:" + key.encode()] = res.profile_id.encode()
    store[b"r:" + loser.encode()] = res.profile_id.encode()
    if moved:
        del store[b"k:" + loser.encode()]
    return MergeOut(envelope.event_id, micros(envelope.event_time), res.profile_id, loser,
                    res.linking_keys, tuple(moved))


def route_event(store: Store, envelope: Envelope, now: datetime, dedup_window: timedelta,
                origin: str = "") -> Routed:
    """Dedup ``envelope`` and resolve its profile, learning what the graph must learn.

    ``origin`` names the ingestion record (topic:partition:offset) the event came
    from: the same record delivered again is a replay, not a producer's duplicate.
    """
    marker_key = dedup_key(envelope.event_id)
    raw = store.get(marker_key)
    if raw is not None and within_window(from_micros(marker_seen_us(raw)), now, dedup_window):
        return _seen(store, marker_key, raw, origin)
    res = _plan(store, envelope)
    # Only identifiers new to the graph can be suppressed: an erasure deleted their links.
    if any(store.get(SUPPRESSED + key.encode()) is not None for key in res.links):
        return Routed(SUPPRESSED_EVENT, "")
    store[marker_key] = json.dumps({"seen_us": micros(now), "origin": origin,
                                    "pid": res.profile_id}).encode()
    for key, pid in res.links.items():
        store[b"i:" + key.encode()] = pid.encode()
    merges = tuple(_merge(store, res, loser, envelope) for loser in res.losers)
    if res.links or merges:
        owned = _owned(store, res.profile_id)
        gained = [*res.links, *(k for m in merges for k in m.moved_keys)]
        if not set(gained) <= set(owned):
            _own(store, res.profile_id, [*owned, *gained])
    return Routed(APPLIED, res.profile_id, merges)


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
    return int(json.loads(raw)["seen_us"])


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
