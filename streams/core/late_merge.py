"""A merge that reaches its winner late: after a later merge took the winner away.

The identity stage decides merges in order (e26: X into W, then e27: W into T), but
their ``merge-out``s go to different profile partitions, so the profile stage may carry
out e27 first. e26's ``merge-in`` then finds W merged away. X's state must still end
in T (where W's is), and for undo it must look as if e26 had come first, as it does
when each merge is carried out before the next is decided:

- the ``merge-in`` follows W's redirects **one merge at a time** (:func:`follow`): each
  merged-away profile it passes keeps the merge in its kept history and X's state in
  its kept profile (:func:`keep`), so an undo that brings W (or T) back brings X too;
- it never overtakes the merge that took a profile away: that merge's own
  ``merge-in`` went from the same partition to the next one earlier (Kafka keeps the
  order), and on one partition it waits behind it (re-queued to itself);
- at the survivor it is recorded with W as its winner and W's kept profile as the
  winner snapshot (``MergeIn.into``: streams/core/pipeline.py), and the merges on the
  way from W to the survivor get X's state in their loser snapshots
  (:func:`carried_along`), so undoing any of them takes X along.

Checked against merges carried out one at a time over random interleavings, undo
included (tests/unit/core/test_interleavings.py, test_late_merge.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from streams.core.identity import MergeRecord
from streams.core.pipeline import Store, load_profile, merge_history, pkey
from streams.core.profile import Profile, merge_profiles
from streams.core.routing import MergeIn

MAX_CHAIN = 64  # merges followed along one chain (a bound, not a limit in practice)


def follow(store: Store, incoming: MergeIn, here: Callable[[str], bool], limit: int
           ) -> tuple[MergeIn, str, bool]:
    """The ``merge-in`` moved along its winner's redirects on this partition: (the
    message, where it goes: the profile to fold into if canonical and ``here``, else
    the one to send it to; whether it must wait, re-queued to this partition, for the
    merge-in of the profile it stands at)."""
    current = incoming.into or incoming.merge.winner
    if not incoming.into:
        if store.get(b"r:" + current.encode()) is None:
            return incoming, current, False  # not late: the common case
        before = load_profile(store, current) or Profile(current)
        incoming = replace(incoming, into=current, winner_snapshot=before.to_json().decode())
    for _ in range(MAX_CHAIN):
        nxt_raw = store.get(b"r:" + current.encode())
        if nxt_raw is None:
            break  # the survivor
        nxt = nxt_raw.decode()
        if here(nxt) and not any(m.loser == current for m in merge_history(store, nxt)):
            return incoming, current, True  # its own merge-in is still queued here
        keep(store, current, incoming, limit)
        current = nxt
        incoming = replace(incoming, into=current)
        if not here(current):
            break
    return incoming, current, False


def keep(store: Store, pid: str, incoming: MergeIn, limit: int) -> None:
    """The merged-away ``pid`` as it would have left had the late merge come first: the
    merge (and its loser's carried history) in its kept history, the loser's state in
    its kept profile."""
    merge = incoming.merge
    record = MergeRecord(merge.event_id, merge.merged_at_us, merge.winner, merge.loser,
                         merge.linking_keys, merge.moved_keys, incoming.loser_profile,
                         incoming.winner_snapshot).to_dict()
    history = [*(m.to_dict() for m in merge_history(store, pid)), record,
               *incoming.loser_history]  # as merge_in records it
    unique = {(h["event_id"], h["winner"], h["loser"]): h for h in history}
    store[b"h:" + pid.encode()] = json.dumps(list(unique.values())).encode()
    kept = load_profile(store, pid) or Profile(pid)
    loser = Profile.from_json(incoming.loser_profile.encode())
    store[pkey(pid)] = merge_profiles(kept, loser, limit).to_json()


def carried_along(store: Store, survivor: str, incoming: MergeIn, limit: int) -> None:
    """At the survivor's partition, after a late merge was folded in: each merge on the
    way from its winner to ``survivor`` gets the loser's state in its loser snapshot."""
    history = merge_history(store, survivor)
    loser = Profile.from_json(incoming.loser_profile.encode())
    current = incoming.merge.winner
    for _ in range(MAX_CHAIN):
        if current == survivor:
            break
        found = [i for i, m in enumerate(history) if m.loser == current]
        if not found:
            break  # nothing recorded took it here: nothing to patch
        i = found[-1]  # the newest: an earlier one was undone and merged again
        taken = Profile.from_json(history[i].loser_snapshot.encode())
        snapshot = merge_profiles(taken, loser, limit).to_json().decode()
        history[i] = replace(history[i], loser_snapshot=snapshot)
        current = history[i].winner
    store[b"h:" + survivor.encode()] = json.dumps([m.to_dict() for m in history]).encode()
