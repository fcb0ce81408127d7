"""What a decision leaves to other slots (docs/partitioned-identity.md 3.3, steps 4 and
5), and an undone merge's way back (3.6).

``absorb`` at a loser's slot redirects it to the winner, sends today's ``merge-out``
and repoints its keys; ``link`` and ``repoint`` set a key's hint, only if newer than
the one stored (a late repoint never undoes a newer move). A ``relink`` (the profile
stage undid a merge) locks the loser, then the winner's canonical profile, which gives
the moved keys up (decision), and ``unabsorb`` hands them back to the loser: today's
``identity_stage.relink`` split between the two directories, following the winner's
redirects where today's writes into a merged-away directory (open question 7).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import replace

from streams.core import identity_slots as slots
from streams.core.identity_messages import (
    Absorb,
    Link,
    Release,
    Relink,
    RelinkTicket,
    Repoint,
    Unabsorb,
    UndoMerge,
)
from streams.core.identity_outputs import MergeOutput, ProfileCommand, Relinked
from streams.core.identity_slots import Tx
from streams.core.identity_stage import StoreView, apply_loser
from streams.core.routing import UNDO_MERGE


def absorb(tx: Tx, m: Absorb) -> None:
    """The loser's side of a merge, at its slot; it stayed locked since the decision,
    so the keys moved are the ones the decision read."""
    merge = m.merge
    apply_loser(tx.store, merge)
    slots.set_version(tx.store, merge.loser, m.version)
    # After the loser's earlier events, from the same slot: the profile stage sees them
    # before the merge-out (design 5, ordering point 3).
    tx.emit(MergeOutput(merge))
    for key in merge.moved_keys:
        tx.send(tx.key_slot(key), Repoint(key, merge.winner, m.version, merge.loser))
    tx.release("l/" + merge.loser, m.holder)


def link(tx: Tx, m: Link) -> None:
    """A claimed key's first hint, and its claim released. Only if newer, like a
    repoint: the winner may have been merged on meanwhile, and that merge's repoint,
    sent by another slot, can arrive first."""
    if slots.write_hint(tx.store, m.key, m.pid, m.version):
        tx.hint_written(m.key)
    tx.release("c/" + m.key, m.event_id)


def repoint(tx: Tx, m: Repoint) -> None:
    if slots.write_hint(tx.store, m.key, m.pid, m.version):
        tx.hint_written(m.key)


def release(tx: Tx, m: Release) -> None:
    tx.release(m.resource, m.holder)


# --- undo: relink and unabsorb ------------------------------------------------------------


def relink(tx: Tx, m: Relink) -> None:
    advance_relink(tx, m.ticket)


def advance_relink(tx: Tx, rt: RelinkTicket | None) -> None:
    """Locks the loser, then follows the winner's redirects to its canonical profile,
    locks it and decides there (descending ids: loser > winner >= canonical)."""
    while rt is not None:
        pid = rt.loser if rt.loser_version < 0 else (rt.target or rt.winner)
        if tx.profile_slot(pid) != tx.slot:
            tx.send(tx.profile_slot(pid), Relink(replace(rt, hops=rt.hops + 1)))
            return
        if slots.holder(tx.store, "l/" + pid) not in (None, rt.holder):
            # Never refused for a long queue: a dropped relink would leave keys split.
            slots.park(tx.store, "l/" + pid, slots.waiter("relink", rt.to_dict()), sys.maxsize)
            return
        rt = _relink_step(tx, rt, pid)


def _relink_step(tx: Tx, rt: RelinkTicket, pid: str) -> RelinkTicket | None:
    if rt.loser_version < 0:  # the loser: merged away, locked so nothing reads it half-way
        slots.take(tx.store, "l/" + pid, rt.holder)
        return replace(rt, loser_version=slots.version(tx.store, pid))
    target = slots.redirect(tx.store, pid)
    if target is not None:  # the winner was merged on since: its survivor gives back
        return replace(rt, target=target)
    owned = StoreView(tx.store).owned(pid)
    # Only what it still owns: another undo may have taken some of the keys back since.
    back = tuple(k for k in rt.moved_keys if k in owned)
    version = 1 + max(rt.loser_version, slots.version(tx.store, pid))
    _own(tx, pid, set(owned) - set(back))
    slots.set_version(tx.store, pid, version)
    done = replace(rt, target=pid, moved_keys=back)
    tx.emit(Relinked(done))
    tx.release("l/" + pid, rt.holder)
    tx.send(tx.profile_slot(rt.loser), Unabsorb(done, version))
    return None


def unabsorb(tx: Tx, m: Unabsorb) -> None:
    """The loser is its own again, with its keys, which point at it from this version."""
    rt, store = m.ticket, tx.store
    if slots.redirect(store, rt.loser) is not None:
        del store[b"r:" + rt.loser.encode()]
    _own(tx, rt.loser, [*StoreView(store).owned(rt.loser), *rt.moved_keys])
    slots.set_version(store, rt.loser, m.version)
    for key in rt.moved_keys:
        tx.send(tx.key_slot(key), Repoint(key, rt.loser, m.version, rt.target))
    tx.release("l/" + rt.loser, rt.holder)


def _own(tx: Tx, pid: str, keys: Iterable[str]) -> None:
    """Today's ``k:`` format: the sorted, distinct keys (an empty list stays written)."""
    tx.store[b"k:" + pid.encode()] = json.dumps(sorted(set(keys))).encode()


def undo_merge(tx: Tx, m: UndoMerge) -> None:
    """From the API: on to the canonical profile's slot along redirects, then to its
    profile partition (today's stage does the same in its one store)."""
    pid = tx.follow_here(m.profile_id)
    if tx.profile_slot(pid) != tx.slot:
        tx.send(tx.profile_slot(pid), UndoMerge(pid, m.event_id))
        return
    body = json.dumps({"profile_id": pid, "event_id": m.event_id}).encode()
    tx.emit(ProfileCommand(UNDO_MERGE, pid, body))
