"""Ticks through the identity slots: a barrier, so a timer never fires ahead of an event
that reached the identity stage before its tick (docs/partitioned-identity.md, 3.7).

With one identity partition a tick is ordered after every event routed before it for
free: the stage decides each event before it reads the next record, and the tick's
fan-out to the profile partitions follows their forwards. With N slots an event that
links identifiers of other slots is a ticket for a few hops, and a tick read meanwhile
could fire, say, a renewal reminder before the renewal the ticket carries. So:

1. ``start``, where the tick record landed: a ``hold`` to every slot (itself included);
2. ``hold``, at each slot: the tick waits, in the waiter queue of each home guard held
   there now (``g:``, an undecided event), until that event is decided; events that
   parked on the guard earlier are decided first, later ones after it (FIFO). Then
   ``ready`` goes to the coordinator;
3. ``ready``, at the coordinator (slot :data:`COORDINATOR`): once every slot is ready
   for an instant, :class:`TickDone` sends the tick to every profile partition.

Why that ordering holds on the profile partitions: a decided event's forward was
appended to its profile partition before the deciding slot committed, hence before
its ``settled`` reached the home slot, before that slot's ``ready``, and before the
coordinator appends the tick. An instant completed after a later one (or again) is
dropped (``tk:last``): a profile partition never sees time go back.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from streams.core import identity_slots as slots
from streams.core.identity_messages import ProtocolError, Tick
from streams.core.identity_outputs import TickDone
from streams.core.identity_slots import Tx
from streams.core.profile import micros

COORDINATOR = 0
PENDING = b"tk:i"  # tk:i<instant µs, 20 digits> -> JSON list of the slots ready for it
LAST = b"tk:last"  # the newest instant sent on (µs)
# Guards a tick waits for per slot: a bound on the waiter's size; past it (a slot with
# that many events undecided at once) the rest are not waited for.
MAX_GUARDS = 10_000


def instant_us(body: str) -> int:
    """The tick's instant (µs); a :class:`ProtocolError` for a malformed tick."""
    try:
        when = datetime.fromisoformat(json.loads(body)["now"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"malformed tick {body[:80]!r}: {exc}") from exc
    if when.tzinfo is None:
        raise ProtocolError(f"tick without a time zone: {body[:80]!r}")
    return micros(when)


def tick(tx: Tx, m: Tick) -> None:
    if m.phase == "start":
        instant_us(m.body)  # a malformed tick stops here, before any slot holds it
        for slot in range(tx.cfg.slots):
            tx.send(slot, Tick("hold", m.body))
    elif m.phase == "hold":
        guards = [k[2:].decode() for k, _ in tx.store.scan(b"g:", MAX_GUARDS)]
        wait_out(tx, m.body, guards)
    elif m.phase == "ready":
        ready(tx, m.body, m.from_slot)
    else:
        raise ProtocolError(f"unknown tick phase {m.phase!r}")


def wait_out(tx: Tx, body: str, keys: list[str]) -> None:
    """Parks the tick on the first of ``keys`` whose guard is still held (the rest go
    with it); once none is, this slot is ready."""
    for i, key in enumerate(keys):
        resource = "g/" + key
        if slots.holder(tx.store, resource) is not None and slots.wait(
                tx, resource, "tick", {"body": body, "keys": keys[i + 1:]}):
            return  # a full queue (max_waiters): that guard is not waited for
    tx.send(COORDINATOR, Tick("ready", body, tx.slot))


def resume(tx: Tx, waiter: dict[str, Any]) -> None:
    """A guard the tick waited on was lifted: on to the next one."""
    wait_out(tx, str(waiter["body"]), [str(k) for k in waiter["keys"]])


def ready(tx: Tx, body: str, from_slot: int) -> None:
    at = instant_us(body)
    if at <= int(tx.store.get(LAST) or b"-1"):
        return  # a later instant (or this one) went on already
    key = PENDING + b"%020d" % at
    seen = set(json.loads(tx.store.get(key) or b"[]")) | {from_slot}
    if len(seen) < tx.cfg.slots:
        tx.store[key] = json.dumps(sorted(seen)).encode()
        return
    for older, _ in tx.store.scan(PENDING, MAX_GUARDS):  # overtaken: never sent
        if older > key:
            break
        del tx.store[older]
    tx.store[LAST] = str(at).encode()
    tx.emit(TickDone(body.encode()))
