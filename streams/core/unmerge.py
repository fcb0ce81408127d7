"""Undoing a merge: give the loser back what it brought, keep what came later.

Sums (orders, lifetime value) are subtracted exactly. A last-writer-wins attribute
goes back to the winner's pre-merge value only if its current value is still the
one the loser brought (same stamp); a newer event since the merge keeps its value.
Timeline entries the loser brought leave the winner. Events that arrived after the
merge stay on the winner (they were applied to it): an undo splits the identities,
it does not replay history.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from streams.core.identity import KIND_PREFIX, MergeRecord
from streams.core.pipeline import Store, load_profile, merge_history, pkey
from streams.core.profile import Profile


def _revert(current: dict[str, list[Any]], loser: dict[str, list[Any]],
            before: dict[str, list[Any]]) -> dict[str, list[Any]]:
    out = dict(current)
    for name, (_, stamp) in loser.items():
        now = out.get(name)
        if now is not None and tuple(now[1]) == tuple(stamp):
            if name in before:
                out[name] = before[name]
            else:
                del out[name]
    return out


def _identifiers(current: Profile, record: MergeRecord) -> dict[str, list[str]]:
    """The winner's identifiers without those the merge moved (they are the loser's
    again, whichever events carried them since)."""
    moved = set(record.moved_keys)
    out = {}
    for kind, values in current.identifiers.items():
        kept = [v for v in values if f"{KIND_PREFIX[kind]}:{v}" not in moved]
        if kept:
            out[kind] = kept
    return out


def unmerge_profiles(current: Profile, record: MergeRecord) -> tuple[Profile, Profile]:
    """(winner without the loser's contribution, the loser as it was at merge time)."""
    loser = Profile.from_json(record.loser_snapshot.encode())
    before = Profile.from_json(record.winner_snapshot.encode())
    ltv = dict(current.lifetime_value)
    for cur, amount in loser.lifetime_value.items():
        ltv[cur] = str(Decimal(ltv.get(cur, "0")) - Decimal(amount))
    subs = {sid: _revert(attrs, loser.subscriptions.get(sid, {}), before.subscriptions.get(sid, {}))
            for sid, attrs in current.subscriptions.items()}
    last = current.last_purchase
    if last is not None and loser.last_purchase is not None and (
            tuple(last[1]) == tuple(loser.last_purchase[1])):
        last = before.last_purchase
    brought = {e["event_id"] for e in loser.timeline}
    timeline = [e for e in current.timeline if e["event_id"] not in brought]
    newest = max([before.newest_event_us, *(e["time_us"] for e in timeline)])
    winner = current.evolve(
        identifiers=_identifiers(current, record),
        traits=_revert(current.traits, loser.traits, before.traits),
        consent=_revert(current.consent, loser.consent, before.consent),
        subscriptions={sid: a for sid, a in subs.items() if a},
        order_count=current.order_count - loser.order_count, lifetime_value=ltv,
        last_purchase=last, newest_event_us=newest, timeline=timeline)
    return winner, loser


def undo_refusal(history: list[MergeRecord], holder: str, event_id: str
                 ) -> tuple[int, str, str] | None:
    """Why the merge ``event_id`` cannot be undone on ``holder`` (an HTTP status, an
    error code and a message that says what to do), or None if it can.

    A merge into a profile that a later merge took into ``holder`` is in ``holder``'s
    history (carried along with the rest of the loser's), but its winner's state is
    inside ``holder`` now: undoing it here would take apart the wrong profile. The later
    merge is undone first; the earlier one is then undone on its own winner."""
    records = [m for m in history if m.event_id == event_id]
    if not records:
        return 404, "merge_not_found", f"no merge by event {event_id} on profile {holder}"
    if any(m.winner == holder for m in records):
        return None
    winner = records[0].winner
    later = [m.event_id for m in history if m.loser == winner and m.winner == holder]
    via = f"by event {later[0]} " if later else ""
    return 409, "merge_carried", (
        f"merge {event_id} went into profile {winner}, which was merged into {holder} "
        f"{via}later: undo {later[0] if later else 'that merge'} on {holder} first, then "
        f"{event_id} on {winner}")


def undo_merge(store: Store, winner_id: str, event_id: str
               ) -> tuple[MergeRecord, Profile] | None:
    """On the winner's partition: undo the merge ``event_id`` recorded on ``winner_id``.

    Returns the record and the loser profile to restore on its own partition (whose
    identifiers the identity stage gives back: streams/core/routing.py), or None if
    there is no such merge.
    """
    history = merge_history(store, winner_id)
    found = [h for h in history if h.event_id == event_id and h.winner == winner_id]
    current = load_profile(store, winner_id)
    if not found or current is None:
        return None
    record = found[0]
    winner, loser = unmerge_profiles(current, record)
    rest = [h.to_dict() for h in history if h is not record]
    store[b"h:" + winner_id.encode()] = json.dumps(rest).encode()
    undone = json.loads(store.get(b"u:" + winner_id.encode()) or b"[]")
    store[b"u:" + winner_id.encode()] = json.dumps([*undone, record.to_dict()]).encode()
    store[pkey(winner_id)] = winner.to_json()
    return record, loser
