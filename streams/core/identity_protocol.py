"""The identity stage over N slots: one entry point for every step
(docs/partitioned-identity.md; the steps are in streams/core/identity_ticket.py and
streams/core/identity_absorb.py, the messages in streams/core/identity_messages.py,
the store families in streams/core/identity_slots.py).

``handle(store, slot, message, cfg)`` is one input record of one identity slot, in one
transaction: it reads and writes that slot's store and returns what to send, in order
(messages for other slots, events and ``merge-out``s for the profile stage, dead
letters, outcomes to count). A message for the slot itself is handled at once, in the
same transaction, and so are the waiters its writes release. Nothing here knows Kafka
or reads a clock: the harness of the unit tests (tests/unit/core/partitioned.py) and
the worker run the very same steps.

Ticks pass a barrier in the slots (streams/core/identity_tick.py): a tick reaches the
profile partitions only after the events the slots held undecided when it came.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.core import identity_slots as slots
from streams.core.identity_absorb import (
    absorb,
    advance_relink,
    link,
    release,
    relink,
    repoint,
    unabsorb,
    undo_merge,
)
from streams.core.identity_erasure import erase
from streams.core.identity_messages import (
    Abandon,
    Absorb,
    Arrival,
    Erase,
    EventRef,
    Link,
    Message,
    Release,
    Relink,
    RelinkTicket,
    Repoint,
    Resolve,
    Settled,
    Tick,
    Ticket,
    Unabsorb,
    UndoMerge,
)
from streams.core.identity_outputs import Output
from streams.core.identity_slots import Config, Tx
from streams.core.identity_tick import resume as resume_tick
from streams.core.identity_tick import tick
from streams.core.identity_ticket import abandon, advance, arrive, settled, start
from streams.core.pipeline import Store

__all__ = ["Config", "handle"]

_STEPS: dict[type, Callable[[Tx, Any], None]] = {
    Arrival: arrive, Resolve: lambda tx, m: advance(tx, m.ticket), Absorb: absorb,
    Link: link, Repoint: repoint, Release: release, Settled: settled, Abandon: abandon,
    Relink: relink, Unabsorb: unabsorb, UndoMerge: undo_merge, Erase: erase, Tick: tick,
}
_RESUME: dict[str, Callable[[Tx, Any], None]] = {
    "ticket": lambda tx, body: advance(tx, Ticket.from_dict(body)),
    # The marker was written at arrival. A packed event, or a JSON one an older worker parked.
    "event": lambda tx, body: start(tx, body if isinstance(body, EventRef)
                                    else EventRef.from_dict(body)),
    "relink": lambda tx, body: advance_relink(tx, RelinkTicket.from_dict(body)),
    "erase": lambda tx, body: erase(tx, Erase(body["step"], body["request"], body["now_us"],
                                              body["pid"])),
    "tick": resume_tick,
}


def handle(store: Store, slot: int, message: Message, cfg: Config) -> list[Output]:
    """One input record at ``slot``: its writes to ``store``, and its outputs in order."""
    tx = Tx(store, slot, cfg)
    tx.inline.append(message)
    while tx.inline or tx.freed:
        if tx.inline:
            msg = tx.inline.popleft()
            _STEPS[type(msg)](tx, msg)
        else:
            _resume(tx, tx.freed.popleft())
    return tx.out


def _resume(tx: Tx, resource: str) -> None:
    """The waiters of a released resource, oldest first, while it stays free; at most
    those waiting now (one that parks again waits for the next release)."""
    for _ in range(slots.waiting(tx.store, resource)):
        if slots.holder(tx.store, resource) is not None:
            return
        item = slots.pop_waiter(tx.store, resource)
        if item is None:
            return
        kind, body = slots.waiter_of(item)
        _RESUME[kind](tx, body)
