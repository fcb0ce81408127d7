"""What the profile stage does with one valid event, over a plain key-value store.

Keys in the one state store (tables/state.py; one store, so that all writes of one
event go to one changelog partition, in order):

``d:<event id>``  dedup marker and write-ahead intent: first-seen time, offset, resolution
``i:<id key>``    identity graph: identifier key -> profile id
``p:<profile>``   the profile (JSON)
``r:<profile>``   a merged-away profile id -> the profile it was merged into
``h:<profile>``   merge history of a profile (JSON list of merge records)
``a: t: w: o: c:`` activation's state, timers, outbox and clock (streams/activation/runtime.py)

Crash safety (at-least-once input, idempotent effects): the marker is written first
with the full plan (profile id, profiles to merge), then the graph, then the profile
LAST with ``last_offset`` = this event's offset. A replayed event whose marker exists
was completely applied iff its profile's ``last_offset`` reached the marker's offset;
otherwise the recorded plan is carried out again, so nothing is lost or applied twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from streams.core.dedup import DEDUP_PREFIX, dedup_key, within_window
from streams.core.identity import MergeRecord, Resolution, identifier_keys, keys_of, resolve
from streams.core.profile import Profile, apply_event, from_micros, merge_profiles, micros
from streams.records import Envelope

APPLIED, DUPLICATE = "applied", "duplicate"
REPLAYED = "replayed"  # the same record again (redelivery after a restart): not a duplicate
# Records of duplicates remembered per event id, so that a redelivered duplicate is a
# replay too (a handful: producers rarely resend one event more than once or twice).
DUPLICATE_ORIGINS_KEPT = 8


class Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...

    def __delitem__(self, key: bytes) -> None: ...


@dataclass(frozen=True)
class StageConfig:
    dedup_window: timedelta
    ordering_window: timedelta
    timeline_limit: int


@dataclass(frozen=True)
class Outcome:
    status: str  # APPLIED, DUPLICATE or REPLAYED
    profile_id: str
    merged: tuple[str, ...] = ()
    offset: int = -1  # the offset the event was first applied at (its outbox key)


# Called with the profile as it was (None if new) and as updated, just before the
# update is stored (activation runs here, so its writes precede the profile's: see the
# crash-safety note above).
# (stored profile or None, updated profile, event, offset, ids of profiles merged into
# it by this event) -> the profile to store.
Activate = Callable[[Profile | None, Profile, Envelope, int, tuple[str, ...]], Profile]


def pkey(profile_id: str) -> bytes:
    return b"p:" + profile_id.encode()


def load_profile(store: Store, profile_id: str) -> Profile | None:
    raw = store.get(pkey(profile_id))
    return None if raw is None else Profile.from_json(raw)


def canonical_id(store: Store, profile_id: str) -> str:
    """Follow merge redirects to the profile that now holds ``profile_id``'s history."""
    seen = {profile_id}
    while (nxt := store.get(b"r:" + profile_id.encode())) is not None:
        profile_id = nxt.decode()
        if profile_id in seen:  # a cycle would be a bug; stop rather than spin
            break
        seen.add(profile_id)
    return profile_id


def merge_history(store: Store, profile_id: str) -> list[MergeRecord]:
    raw = store.get(b"h:" + profile_id.encode())
    return [MergeRecord.from_dict(d) for d in json.loads(raw)] if raw else []


def _plan(store: Store, envelope: Envelope) -> Resolution:
    def lookup(key: str) -> str | None:
        raw = store.get(b"i:" + key.encode())
        return None if raw is None else canonical_id(store, raw.decode())

    return resolve(identifier_keys(envelope.identifiers), lookup)


def _marker(now: datetime, offset: int, origin: str, res: Resolution) -> bytes:
    return json.dumps({"seen_us": micros(now), "offset": offset, "origin": origin,
                       "pid": res.profile_id,
                       "created": res.created, "links": res.links, "losers": list(res.losers),
                       "linking": list(res.linking_keys)}).encode()


def _noted_duplicate(marker: bytes, origin: str) -> bytes | None:
    """``marker`` with ``origin`` noted as a duplicate's record, or None when it is noted
    already: that duplicate record delivered again, which must not count twice."""
    m = json.loads(marker)
    dups = [str(d) for d in m.get("dups", ())]
    if origin in dups:
        return None
    m["dups"] = [*dups, origin][-DUPLICATE_ORIGINS_KEPT:]
    return json.dumps(m).encode()


def _from_marker(raw: bytes) -> tuple[int, int, str, Resolution]:
    m = json.loads(raw)
    res = Resolution(m["pid"], m["created"], m["links"], tuple(m["losers"]), tuple(m["linking"]))
    return int(m["seen_us"]), int(m["offset"]), str(m["origin"]), res


def _apply_merges(
    store: Store, winner: Profile, res: Resolution, envelope: Envelope, limit: int
) -> Profile:
    history = merge_history(store, res.profile_id)
    for loser_id in res.losers:
        loser = load_profile(store, loser_id)
        if loser is None:
            continue
        moved = keys_of(loser.identifiers)
        for key in moved:
            store[b"i:" + key.encode()] = res.profile_id.encode()
        store[b"r:" + loser_id.encode()] = res.profile_id.encode()
        history.append(MergeRecord(envelope.event_id, micros(envelope.event_time),
                                   res.profile_id, loser_id, res.linking_keys, tuple(moved),
                                   loser.to_json().decode(), winner.to_json().decode()))
        history.extend(merge_history(store, loser_id))
        winner = merge_profiles(winner, loser, limit)
    # A replay of a half-applied merge must not record it twice.
    unique = {(h.event_id, h.winner, h.loser): h for h in history}
    store[b"h:" + res.profile_id.encode()] = json.dumps(
        [h.to_dict() for h in unique.values()]).encode()
    return winner


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
        if not within_window(from_micros(_from_marker(value)[0]), now, window):
            expired.append(key)
        scanned += 1
        if scanned >= limit:
            return expired, key + b"\x00"
    return expired, None


def _reassert(store: Store, marker_key: bytes, marker: bytes, res: Resolution,
              offset: int) -> None:
    """Write a replayed event's state again, unchanged.

    After a SIGKILL the local store can hold writes whose changelog records were
    still in the producer's buffer. Re-writing them on replay puts them on the
    changelog too, so a rebuild elsewhere (rebalance, lost disk) sees them.
    """
    keys = [marker_key, *(b"i:" + k.encode() for k in res.links), pkey(res.profile_id)]
    if res.losers:
        keys.append(b"h:" + res.profile_id.encode())
        keys.extend(b"r:" + loser.encode() for loser in res.losers)
    # Activation's keys of this event (streams/activation/runtime.py): state, timer, outbox.
    pid = res.profile_id.encode()
    keys += [b"a:" + pid, b"w:" + pid, b"o:%016d:" % offset + pid]
    keys += [b"a:" + loser.encode() for loser in res.losers]
    wake = store.get(b"w:" + pid)
    if wake is not None:
        keys.append(wake)
    store[marker_key] = marker
    for key in keys[1:]:
        value = store.get(key)
        if value is not None:
            store[key] = value


def process_event(
    store: Store, envelope: Envelope, offset: int, now: datetime, cfg: StageConfig,
    origin: str = "", activate: Activate | None = None,
) -> Outcome:
    """Apply one decoded, valid event (read at ``offset``) to the state in ``store``.

    ``origin`` names the ingestion record (topic:partition:offset) the event came
    from: the same record delivered again is a replay, not a producer's duplicate.
    """
    marker_key = dedup_key(envelope.event_id)
    marker = store.get(marker_key)
    if marker is not None:
        seen_us, first_offset, first_origin, res = _from_marker(marker)
        done = load_profile(store, res.profile_id)
        fresh = within_window(from_micros(seen_us), now, cfg.dedup_window)
        if fresh and done is not None and done.last_offset >= first_offset:
            replay = offset == first_offset or bool(origin and origin == first_origin)
            if not replay:
                noted = _noted_duplicate(marker, origin) if origin else None
                if origin and noted is None:
                    return Outcome(REPLAYED, canonical_id(store, res.profile_id), (), offset)
                if noted is not None:
                    store[marker_key] = noted
                return Outcome(DUPLICATE, canonical_id(store, res.profile_id))
            _reassert(store, marker_key, marker, res, first_offset)
            return Outcome(REPLAYED, canonical_id(store, res.profile_id), (), first_offset)
        if not fresh:
            marker = None
        else:
            offset = first_offset  # a partial earlier attempt: finish its recorded plan
    if marker is None:
        res = _plan(store, envelope)
        store[marker_key] = _marker(now, offset, origin, res)
    for key, pid in res.links.items():
        store[b"i:" + key.encode()] = pid.encode()
    before = load_profile(store, res.profile_id)
    profile = before or Profile(res.profile_id)
    if res.losers and profile.last_offset < offset:
        profile = _apply_merges(store, profile, res, envelope, cfg.timeline_limit)
    profile = apply_event(profile, envelope, cfg.ordering_window, cfg.timeline_limit)
    if activate is not None:
        profile = activate(before, profile, envelope, offset, res.losers)
    store[pkey(res.profile_id)] = replace(profile, last_offset=offset).to_json()
    return Outcome(APPLIED, res.profile_id, res.losers, offset)
