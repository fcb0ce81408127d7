"""What the profile stage does, over a plain key-value store (one per partition).

The identity stage (streams/core/identity_stage.py) has deduplicated the event and
resolved its canonical profile; the profile stage's partition that owns that profile
applies it. Keys in a partition's store (tables/state.py):

``p:<profile>``   the profile (JSON)
``r:<profile>``   a merged-away profile of this partition -> the profile it went into
``h:<profile>``   merge history of a profile (JSON list of merge records)
``u:<profile>``   merges undone on it
``a: t: w: n: c:``  activation's state, timers, notes, clock (streams/activation/runtime.py)

A merge crosses partitions: the loser's partition records the redirect and sends the
loser's last state (:func:`merge_out`), the winner's partition folds it in
(:func:`merge_in`). Everything a record changes commits in one transaction with what it
sends, and a redelivered record is skipped whole (tables/state.py), so the functions
here need no replay guards of their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from streams.core.identity import MergeRecord
from streams.core.profile import Profile, apply_event, merge_profiles
from streams.core.routing import MergeIn, MergeOut
from streams.core.store import Store as Store  # the one protocol
from streams.records import Envelope

APPLIED, DUPLICATE = "applied", "duplicate"
REPLAYED = "replayed"  # the same record again (redelivery after a restart): not a duplicate


@dataclass(frozen=True)
class StageConfig:
    dedup_window: timedelta
    ordering_window: timedelta
    timeline_limit: int


# Called with the profile as it was (None if new) and as updated, just before the
# update is stored: (stored profile or None, updated profile, event, position) -> the
# profile to store (activation adds its timeline notes).
Activate = Callable[[Profile | None, Profile, Envelope, int], Profile]


def pkey(profile_id: str) -> bytes:
    return b"p:" + profile_id.encode()


def load_profile(store: Store, profile_id: str) -> Profile | None:
    raw = store.get(pkey(profile_id))
    return None if raw is None else Profile.from_json(raw)


def canonical_id(store: Store, profile_id: str) -> str:
    """Follow merge redirects to the profile that now holds ``profile_id``'s history."""
    nxt = store.get(b"r:" + profile_id.encode())
    if nxt is None:  # most profiles were never merged away: no set to build
        return profile_id
    seen = {profile_id}
    while nxt is not None:
        profile_id = nxt.decode()
        if profile_id in seen:  # a cycle would be a bug; stop rather than spin
            break
        seen.add(profile_id)
        nxt = store.get(b"r:" + profile_id.encode())
    return profile_id


def merge_history(store: Store, profile_id: str) -> list[MergeRecord]:
    raw = store.get(b"h:" + profile_id.encode())
    return [MergeRecord.from_dict(d) for d in json.loads(raw)] if raw else []


def _history_dicts(store: Store, profile_id: str) -> list[dict[str, Any]]:
    raw = store.get(b"h:" + profile_id.encode())
    return list(json.loads(raw)) if raw else []


def apply_resolved(store: Store, envelope: Envelope, profile_id: str, position: int,
                   cfg: StageConfig, activate: Activate | None = None) -> Profile:
    """Apply one deduplicated event the identity stage resolved to ``profile_id``."""
    key = pkey(profile_id)  # load_profile's, built once for the read and the write
    raw = store.get(key)
    before = None if raw is None else Profile.from_json(raw)
    profile = apply_event(before or Profile(profile_id), envelope, cfg.ordering_window,
                          cfg.timeline_limit)
    if activate is not None:
        profile = activate(before, profile, envelope, position)
    profile = profile.replaced({"last_offset": position})
    store[key] = profile.to_json()
    return profile


def merge_out(store: Store, merge: MergeOut, loser: Profile) -> MergeIn:
    """On the loser's partition: the loser (as given, stored again: it is kept, for an
    undo) is merged away, with a redirect to the winner for lookups and timers here,
    and its state goes to the winner's partition."""
    data = loser.to_json()
    store[pkey(loser.profile_id)] = data
    store[b"r:" + merge.loser.encode()] = merge.winner.encode()
    return MergeIn(merge, data.decode(), _history_dicts(store, merge.loser))


def merge_in(store: Store, incoming: MergeIn, cfg: StageConfig) -> Profile:
    """On the winner's partition: the loser's state joins the winner's, and the merge is
    recorded (which event, when, which identifiers; both sides' snapshots, for undo).
    Returns the merged profile, for the caller to store. A late merge (``into`` set:
    streams/core/late_merge.py) joins the survivor ``into`` and is recorded with its own
    winner, as if it had come before that winner was merged away."""
    merge = incoming.merge
    target = incoming.into or merge.winner
    winner = load_profile(store, target) or Profile(target)
    loser = Profile.from_json(incoming.loser_profile.encode())
    record = MergeRecord(merge.event_id, merge.merged_at_us, merge.winner, merge.loser,
                         merge.linking_keys, merge.moved_keys, incoming.loser_profile,
                         incoming.winner_snapshot or winner.to_json().decode())
    history = [*_history_dicts(store, target), record.to_dict(), *incoming.loser_history]
    unique = {(h["event_id"], h["winner"], h["loser"]): h for h in history}
    store[b"h:" + target.encode()] = json.dumps(list(unique.values())).encode()
    merged = merge_profiles(winner, loser, cfg.timeline_limit)
    # Positions are per partition: the loser's say nothing here.
    return merged.evolve(last_offset=winner.last_offset)


def restore(store: Store, profile: Profile) -> None:
    """On the loser's partition after an undo: the profile is its own again."""
    if store.get(b"r:" + profile.profile_id.encode()) is not None:
        del store[b"r:" + profile.profile_id.encode()]
    current = load_profile(store, profile.profile_id)
    last = -1 if current is None else current.last_offset
    store[pkey(profile.profile_id)] = profile.evolve(last_offset=last).to_json()
