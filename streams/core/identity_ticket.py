"""An event's way through the identity slots: arrival and dedup at its home slot, the
fast path, and the ticket (docs/partitioned-identity.md, 3.2 and 3.3).

An event is decided at its home slot when everything it needs is local and free
(**fast path**: today's decision, through streams/core/identity_stage.py's plan and
apply halves). Otherwise it becomes a **ticket** and guards its home key: it reads
hints and claims unknown keys in ascending ``(key_slot, key)`` order, locks the
owning profiles in descending id order, and is decided at the winner, the smallest
id, by today's ``resolve()`` over what it locked. Claims before locks, each kind in
one global order, and nobody waits while holding a lock on a smaller id: no deadlock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from streams.core import identity_slots as slots
from streams.core.dedup import dedup_key, within_window
from streams.core.identity import Resolution, new_profile_id
from streams.core.identity_absorb import absorb, link
from streams.core.identity_markers import mark, set_marker
from streams.core.identity_messages import (
    Abandon,
    Absorb,
    Arrival,
    EventRef,
    Held,
    Hint,
    Link,
    Resolve,
    Settled,
    Ticket,
    hopped,
)
from streams.core.identity_outputs import Decided, Dropped, GaveUp, ToProfile
from streams.core.identity_slots import Tx
from streams.core.identity_stage import (
    SUPPRESSED_EVENT,
    Plan,
    StoreView,
    apply_winner,
    is_suppressed,
    marker_seen_us,
    new_marker,
    plan_route,
    seen_again,
)
from streams.core.pipeline import canonical_id
from streams.core.profile import from_micros

# --- arrival and the fast path ----------------------------------------------------------


def arrive(tx: Tx, m: Arrival) -> None:
    ev, store = m.event, tx.store
    if tx.key_slot(ev.home) != tx.slot:  # routed by another slot count: go home first
        tx.send(tx.key_slot(ev.home), m)
        return
    mkey = dedup_key(ev.event_id)
    raw = store.get(mkey)
    if raw is not None and within_window(from_micros(marker_seen_us(raw)),
                                         from_micros(m.now_us), tx.cfg.dedup_window):
        tx.emit(Dropped(ev.event_id, seen_again(store, mkey, raw, ev.origin).status))
        return
    if slots.holder(store, "g/" + ev.home) is not None:
        # Marked now, though undecided: a resend while it waits is a duplicate.
        store[mkey] = new_marker(m.now_us, ev.origin, "")
        if not slots.wait_event(tx, "g/" + ev.home, ev):
            tx.send(tx.slot, Abandon(ev, f"identity: more than {tx.cfg.max_waiters} "
                                         f"events wait behind {ev.home}"))
        return
    start(tx, ev, m.now_us)


def start(tx: Tx, ev: EventRef, seen_us: int | None = None) -> None:
    """An event whose home key is free: decided here, or on its way as a ticket that
    guards its home key until it is decided. ``seen_us``: a new arrival, not marked
    yet (a resumed waiter was marked when it arrived)."""
    plan = _fast_plan(tx, ev)
    if plan is None:
        mark(tx.store, ev, seen_us, "")  # a resend while the ticket travels: duplicate
        slots.take(tx.store, "g/" + ev.home, ev.event_id)
        advance(tx, _entry_ticket(tx, ev))
    elif is_suppressed(tx.store, plan.resolution.links):  # links are local on this path
        set_marker(tx.store, ev.event_id, None)  # no marker, as today
        tx.emit(Dropped(ev.event_id, SUPPRESSED_EVENT))
    else:
        involved = (plan.profile_id, *plan.resolution.losers)
        decide_plan(tx, ev, plan, 1 + max(slots.version(tx.store, p) for p in involved))
        mark(tx.store, ev, seen_us, plan.profile_id)


def _fast_plan(tx: Tx, ev: EventRef) -> Plan | None:
    """Today's plan when it needs nothing remote or held (design 3.2, steps 2 to 4):
    the home key's free local profile owns every key, or every key is local and so
    is every directory it leads to."""
    home = _local_owner(tx, ev.home)
    if home is not None and set(ev.keys) <= set(StoreView(tx.store).owned(home)):
        return Plan(Resolution(home, False), (), None)  # what resolve() says: no change
    if all(_local_and_free(tx, key) for key in ev.keys):
        return plan_route(StoreView(tx.store), ev.event_id, ev.time_us, list(ev.keys))
    return None


def _local_owner(tx: Tx, key: str) -> str | None:
    """The canonical owner the key's hint leads to through this slot's redirects, if
    that profile's directory is here and unlocked; else None (unknown, remote, busy)."""
    found = slots.hint_pid(tx.store, key)
    if found is None:
        return None
    pid = canonical_id(tx.store, found)
    if tx.profile_slot(pid) != tx.slot or slots.holder(tx.store, "l/" + pid) is not None:
        return None
    return pid


def _local_and_free(tx: Tx, key: str) -> bool:
    if tx.key_slot(key) != tx.slot:
        return False
    if slots.hint_pid(tx.store, key) is None:
        return slots.holder(tx.store, "c/" + key) is None
    # A hint must lead to a directory that has the key: one that does not is mid-undo.
    owner = _local_owner(tx, key)
    return owner is not None and key in StoreView(tx.store).owned(owner)


def decide_plan(tx: Tx, ev: EventRef, plan: Plan, version: int,
                locks: Mapping[str, Held] | None = None) -> None:
    """A decision, at the winner's slot: the winner's directory here; links of unknown
    keys (which release their claims) and ``absorb`` to each loser; the event to the
    profile stage. A link or absorb for this slot is done at once, not queued: on the
    fast path nothing is claimed or locked, and a waiter resumed later in this
    transaction must not find a key half-linked or a loser half-absorbed."""
    winner = plan.profile_id
    apply_winner(tx.store, plan)
    if plan.changes():
        slots.set_version(tx.store, winner, version)
    tx.emit(Decided(ev, winner, plan.merges))
    tx.emit(ToProfile(ev, winner))
    moved = {k for m in plan.merges for k in m.moved_keys}
    for key in plan.resolution.links:
        if key not in moved:  # an unknown key; a loser's key is repointed by absorb
            message = Link(ev.event_id, key, winner, version)
            if tx.key_slot(key) == tx.slot:
                link(tx, message)
            else:
                tx.send(tx.key_slot(key), message)
    for merge in plan.merges:
        held = (locks or {}).get(merge.loser)  # the fast path locks nothing
        absorbed = Absorb(merge, version, ev.event_id if held is None else held.token)
        if tx.profile_slot(merge.loser) == tx.slot:
            absorb(tx, absorbed)
        else:
            tx.send(tx.profile_slot(merge.loser), absorbed)


# --- the ticket ----------------------------------------------------------------------------


def _entry_ticket(tx: Tx, ev: EventRef) -> Ticket:
    """The ticket at its home slot: keys that a local directory of the home key's
    owner holds need no lookup (checked again once that directory is locked)."""
    found = slots.hint_pid(tx.store, ev.home)
    if found is None:
        return Ticket(ev)
    pid = canonical_id(tx.store, found)
    if tx.profile_slot(pid) != tx.slot:
        return Ticket(ev)
    owned = set(StoreView(tx.store).owned(pid))
    return Ticket(ev, {k: Hint(pid) for k in ev.keys if k in owned})


@dataclass(frozen=True)
class _Hop:
    """A step's answer 'go on at ``slot``' (with the ticket as the step left it)."""

    ticket: Ticket
    slot: int


def advance(tx: Tx, t: Ticket | None) -> None:
    """Runs the ticket here until it parks, hops to another slot, or is decided."""
    while t is not None:
        nxt = _step(tx, t)
        if isinstance(nxt, _Hop):
            _hop(tx, nxt.ticket, nxt.slot)
            return
        t = nxt


def _hop(tx: Tx, t: Ticket, slot: int) -> None:
    if t.hops >= tx.cfg.max_hops:
        give_up(tx, t, f"identity: gave up after {t.hops} hops on {t.event_id}")
    else:
        tx.send(slot, Resolve(hopped(t)))


def _step(tx: Tx, t: Ticket) -> Ticket | _Hop | None:
    """One step here: lookups, a lock or the decision (None: parked or done)."""
    t = _checked(t)
    pending = sorted(t.pending(), key=lambda k: (tx.key_slot(k), k))
    if pending:
        return _lookup(tx, t, pending)
    t = _drop_unowned(tx, t)
    candidates = sorted({h.pid for h in t.owners.values()} - set(t.locked), reverse=True)
    if candidates:
        below = [p for p in t.locked if p < candidates[0]]
        return _restart(tx, t, below) if below else _lock(tx, t, candidates[0])
    winner = min(t.locked) if t.locked else new_profile_id(t.event.home)
    if tx.profile_slot(winner) != tx.slot:
        return _Hop(t, tx.profile_slot(winner))
    _decide(tx, t)
    return None


def _lookup(tx: Tx, t: Ticket, pending: list[str]) -> Ticket | _Hop | None:
    """Reads the hints of this slot's pending keys (no resource: any order), then
    claims the first pending key if it lives here (claims: one global order only)."""
    for key in [k for k in pending if tx.key_slot(k) == tx.slot]:
        read = _read_hint(tx, t, key)
        if read is None:
            return None
        t = read
    rest = [k for k in pending if k in t.pending()]
    if not rest:
        return t
    if tx.key_slot(rest[0]) != tx.slot:
        return _Hop(t, tx.key_slot(rest[0]))
    return _claim(tx, t, rest[0])


def _read_hint(tx: Tx, t: Ticket, key: str) -> Ticket | None:
    if slots.suppressed(tx.store, key) and key not in t.suppressed:
        t = replace(t, suppressed=(*t.suppressed, key))
    found = slots.hint(tx.store, key)
    if key in t.recheck:
        if found is None:  # known keys never become unknown, short of an erasure
            give_up(tx, t, f"identity: {key} vanished under {t.event_id}")
            return None
        if found[1] == t.recheck[key]:  # not repointed yet: wait for the newer hint,
            _park(tx, t, "i/" + key)  # already on its way (design, as built)
            return None
    if found is None:
        return t
    owners = {**t.owners, key: Hint(canonical_id(tx.store, found[0]), found[1])}
    return replace(t, owners=owners, recheck={k: v for k, v in t.recheck.items() if k != key})


def _claim(tx: Tx, t: Ticket, key: str) -> Ticket | None:
    if t.locked:  # a ticket holding locks never waits for a claim (design 3.1)
        give_up(tx, t, f"identity: {key} became unknown under {t.event_id}")
        return None
    if slots.holder(tx.store, "c/" + key) not in (None, t.event_id):
        _park(tx, t, "c/" + key)
        return None
    slots.take(tx.store, "c/" + key, t.event_id)
    return replace(t, claims=(*t.claims, key))


def _lock(tx: Tx, t: Ticket, pid: str) -> Ticket | _Hop | None:
    """At ``pid``'s slot: wait while another holds it; follow its redirect if merged
    away (always to a smaller id: the order holds); else lock it, with a snapshot of
    its directory (the keys hinted to it are checked against it: :func:`_checked`)."""
    if tx.profile_slot(pid) != tx.slot:
        return _Hop(t, tx.profile_slot(pid))
    if slots.holder(tx.store, "l/" + pid) not in (None, t.token):
        _park(tx, t, "l/" + pid)
        return None
    target = slots.redirect(tx.store, pid)
    if target is not None:
        follow = canonical_id(tx.store, target)
        return replace(t, owners={k: Hint(follow, h.seen) if h.pid == pid else h
                                  for k, h in t.owners.items()})
    slots.take(tx.store, "l/" + pid, t.token)
    held = Held(tuple(StoreView(tx.store).owned(pid)), slots.version(tx.store, pid), t.token)
    return replace(t, locked={**t.locked, pid: held})


def _checked(t: Ticket) -> Ticket:
    """Keys whose owner is locked but not in its directory (moved by an undo since
    their hint was read) are read again; so is a key that a newer hint or a redirect
    led to a directory locked earlier: the decision trusts only locked directories."""
    stale = {k: h.seen for k, h in t.owners.items()
             if h.pid in t.locked and k not in t.locked[h.pid].keys}
    if not stale:
        return t
    owners = {k: h for k, h in t.owners.items() if k not in stale}
    return replace(t, owners=owners, recheck={**t.recheck, **stale})


def _drop_unowned(tx: Tx, t: Ticket) -> Ticket:
    """Releases locked profiles no key leads to any more (their keys were read again
    and live elsewhere now): the decision must not keep what it does not read."""
    owners = {h.pid for h in t.owners.values()}
    gone = [p for p in t.locked if p not in owners]
    if not gone:
        return t
    for pid in gone:
        tx.release_at(tx.profile_slot(pid), "l/" + pid, t.locked[pid].token)
    return replace(t, locked={p: h for p, h in t.locked.items() if p not in gone},
                   epoch=t.epoch + 1)


def _restart(tx: Tx, t: Ticket, below: list[str]) -> Ticket | None:
    """A profile above a held lock turned up (a key moved under the ticket, as an undo
    moves it): the locks below it are released, to be taken again in order."""
    if t.restarts >= tx.cfg.max_restarts:
        give_up(tx, t, f"identity: gave up after {t.restarts} restarts on {t.event_id}")
        return None
    for pid in below:
        tx.release_at(tx.profile_slot(pid), "l/" + pid, t.locked[pid].token)
    return replace(t, locked={p: h for p, h in t.locked.items() if p not in below},
                   restarts=t.restarts + 1, epoch=t.epoch + 1)


def _park(tx: Tx, t: Ticket, resource: str) -> None:
    if not slots.wait(tx, resource, "ticket", t.to_dict()):
        give_up(tx, t, f"identity: more than {tx.cfg.max_waiters} wait on {resource}")


def give_up(tx: Tx, t: Ticket, reason: str, dead_letter: bool = True) -> None:
    """Releases everything the ticket holds; its home slot dead-letters the event,
    forgets its marker (never applied: a redrive is no duplicate) and lifts the guard."""
    for key in t.claims:
        tx.release_at(tx.key_slot(key), "c/" + key, t.event_id)
    for pid, held in t.locked.items():
        tx.release_at(tx.profile_slot(pid), "l/" + pid, held.token)
    tx.send(tx.key_slot(t.event.home), Abandon(t.event, reason, dead_letter))


def _decide(tx: Tx, t: Ticket) -> None:
    """At the winner's slot, every owner locked and every unknown key claimed: today's
    resolve() over that snapshot (design 3.3, step 3)."""
    plan = plan_route(_TicketView(t), t.event_id, t.event.time_us, list(t.event.keys))
    if set(plan.resolution.links) & set(t.suppressed):
        tx.emit(Dropped(t.event_id, SUPPRESSED_EVENT))
        give_up(tx, t, SUPPRESSED_EVENT, dead_letter=False)
        return
    version = 1 + max((h.version for h in t.locked.values()), default=0)
    decide_plan(tx, t.event, plan, version, t.locked)
    if plan.profile_id in t.locked:  # a new profile was never locked
        tx.release("l/" + plan.profile_id, t.locked[plan.profile_id].token)
    tx.send(tx.key_slot(t.event.home), Settled(t.event_id, t.event.home, plan.profile_id))


@dataclass(frozen=True)
class _TicketView:
    """The graph as a ticket locked it: owners validated, claimed keys unknown."""

    ticket: Ticket

    def owner(self, key: str) -> str | None:
        found = self.ticket.owners.get(key)
        return None if found is None else found.pid

    def owned(self, profile_id: str) -> list[str]:
        held = self.ticket.locked.get(profile_id)
        return [] if held is None else list(held.keys)


# --- back at the home slot -----------------------------------------------------------------


def settled(tx: Tx, m: Settled) -> None:
    set_marker(tx.store, m.event_id, m.pid)
    tx.release("g/" + m.home, m.event_id)


def abandon(tx: Tx, m: Abandon) -> None:
    if m.dead_letter:
        tx.emit(GaveUp(m.event, m.reason))
    set_marker(tx.store, m.event.event_id, None)
    tx.release("g/" + m.event.home, m.event.event_id)
