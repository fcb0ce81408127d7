"""The partitioned identity stage in one process: N slots, each a dict store, the pure
steps of streams/core/identity_protocol.py, and a queue per (sender, receiver) pair of
slots, delivered in whatever order the test chooses.

Why a queue per pair: Kafka keeps the order of one transactional producer's records in
a partition, nothing across producers, and each slot is one producer. Delivering any
pair's head next is every interleaving the workers could produce (and a few more: a
record sent after another was read is never ahead of it in the topic). Messages cross
the queues JSON-encoded, as on the topic. Profile-bound outputs are logged with the
slot that sent them; the profile stage itself is not modelled (the property is about
the identity graph and the decisions).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from streams.core.identity import identifier_keys
from streams.core.identity_messages import (
    Arrival,
    EventRef,
    Message,
    Relink,
    RelinkTicket,
    Resolve,
    Ticket,
    decode,
    encode,
)
from streams.core.identity_outputs import (
    Decided,
    Dropped,
    GaveUp,
    MergeOutput,
    Output,
    ProfileCommand,
    Relinked,
    Send,
    ToProfile,
)
from streams.core.identity_protocol import Config, handle
from streams.core.identity_stage import Routed, relink, route_event
from streams.core.pipeline import canonical_id
from streams.core.profile import micros
from streams.core.routing import MergeOut, key_slot, profile_slot
from streams.core.store import DictStore
from streams.records import Envelope

SCREENING = -1  # the sender of arrivals (screening, in ingestion order)
PROFILE_STAGE = -2  # the sender of relinks (the profile stage's run_undo)
GRAPH = (b"i:", b"k:", b"r:", b"d:")  # today's families, compared with the reference
AT_REST_EMPTY = (b"c:", b"l:", b"g:", b"w:", b"wq:")  # held resources and waiters

Store = dict[bytes, bytes]


def ref_of(envelope: Envelope, origin: str = "") -> EventRef:
    return EventRef(envelope.event_id, micros(envelope.event_time),
                    tuple(identifier_keys(envelope.identifiers)), origin)


@dataclass
class Partitioned:
    slots: int
    window: timedelta = timedelta(days=7)
    max_hops: int = 32
    max_restarts: int = 8
    max_waiters: int = 10_000
    stores: list[Store] = field(default_factory=list)
    queues: dict[tuple[int, int], deque[bytes]] = field(default_factory=dict)
    decisions: list[Decided | Relinked] = field(default_factory=list)  # commit order
    dropped: list[Dropped] = field(default_factory=list)
    gave_up: list[GaveUp] = field(default_factory=list)
    to_profiles: list[tuple[int, ToProfile | MergeOutput | ProfileCommand]] = field(
        default_factory=list)
    hops: int = 0  # ticket hops between slots
    tickets: list[Ticket] = field(default_factory=list)  # as each hop sent them
    delivered: int = 0
    undo: frozenset[int] = frozenset()  # merges (by merge-out order) the profile stage undoes
    merges_out: int = 0

    def __post_init__(self) -> None:
        self.stores = [DictStore() for _ in range(self.slots)]
        self.cfg = Config(self.slots, self.window, self.max_restarts, self.max_hops,
                          self.max_waiters)

    # --- feeding ---------------------------------------------------------------------

    def arrive(self, event: EventRef, now: datetime) -> None:
        """Screening's forward of one event to its home key's slot, in ingestion order."""
        self._queue(SCREENING, key_slot(event.home, self.slots), Arrival(event, micros(now)))

    def arrive_at_home(self, event: EventRef, now: datetime) -> list[Output]:
        """The arrival handled at once at its home slot, as the worker's identity stage
        does with each event of a screened batch (no protocol record in between)."""
        slot = key_slot(event.home, self.slots)
        out = handle(self.stores[slot], slot, Arrival(event, micros(now)), self.cfg)
        for item in out:
            self._route(slot, item)
        return out

    def relink(self, merge: MergeOut) -> None:
        """The profile stage's relink after undoing ``merge``: to the loser's slot."""
        ticket = RelinkTicket(merge.event_id, merge.winner, merge.loser, merge.moved_keys)
        self._queue(PROFILE_STAGE, profile_slot(merge.loser, self.slots), Relink(ticket))

    def _queue(self, sender: int, slot: int, message: Message) -> None:
        self.queues.setdefault((sender, slot), deque()).append(encode(message))

    # --- delivering --------------------------------------------------------------------

    def ready(self) -> list[tuple[int, int]]:
        return sorted(pair for pair, queue in self.queues.items() if queue)

    def deliver(self, pair: tuple[int, int]) -> list[Output]:
        """One record: the head of ``pair``'s queue, handled by its receiving slot."""
        sender, slot = pair
        message = decode(self.queues[pair].popleft())
        self.delivered += 1
        out = handle(self.stores[slot], slot, message, self.cfg)
        for item in out:
            self._route(slot, item)
        return out

    def _route(self, slot: int, item: Output) -> None:
        if isinstance(item, Send):
            if isinstance(item.message, Resolve):
                self.hops += 1
                self.tickets.append(item.message.ticket)
            self._queue(slot, item.slot, item.message)
        elif isinstance(item, Decided | Relinked):
            self.decisions.append(item)
        elif isinstance(item, Dropped):
            self.dropped.append(item)
        elif isinstance(item, GaveUp):
            self.gave_up.append(item)
        else:
            self.to_profiles.append((slot, item))
            if isinstance(item, MergeOutput):
                self._merged_out(item.merge)

    def _merged_out(self, merge: MergeOut) -> None:
        """An undo the test asked for: its relink may come any time after the merge-out
        (the profile stage may lag on the winner's own merge-out as long as it likes,
        so the winner can have been merged on meanwhile: the race of design 3.6)."""
        if self.merges_out in self.undo:
            self.relink(merge)
        self.merges_out += 1

    def run(self, choose: Callable[[int], int] = lambda n: 0, limit: int = 100_000) -> None:
        """Delivers until every queue is empty; ``choose(n)`` picks one of the ``n``
        non-empty pairs (in sorted order) each time."""
        for _ in range(limit):
            ready = self.ready()
            if not ready:
                return
            self.deliver(ready[choose(len(ready)) % len(ready)])
        raise AssertionError(f"no quiescence after {limit} deliveries")

    # --- looking ---------------------------------------------------------------------

    def graph(self, families: tuple[bytes, ...] = GRAPH) -> Store:
        """The union of the slots' stores, restricted to ``families``: each key lives in
        one slot, so the union is what one store would hold."""
        union: Store = {}
        for store in self.stores:
            for key, value in store.items():
                if key.startswith(families):
                    assert key not in union, f"{key!r} in two slots"
                    union[key] = value
        return union

    def owner(self, key: str) -> str | None:
        """The canonical profile of ``key``, following redirects across slots."""
        union = self.graph((b"i:", b"r:"))
        raw = union.get(b"i:" + key.encode())
        return None if raw is None else canonical_id(union, raw.decode())


def relink_fixed(store: Store, winner: str, loser: str, moved: tuple[str, ...]) -> None:
    """Today's ``identity_stage.relink`` with the fixes of open question 7: the moved
    keys leave the winner's *canonical* profile, and only those it still owns (another
    undo may have given some back elsewhere). While the winner is canonical and owns
    them all (the only case today's code gets right) it is today's relink."""
    target = canonical_id(store, winner)
    raw = store.get(b"k:" + target.encode())
    owned = set(json.loads(raw)) if raw else set()
    relink(store, target, loser, [k for k in moved if k in owned])


@dataclass
class Reference:
    """Today's single-partition stage fed the partitioned run's decision order."""

    window: timedelta = timedelta(days=7)
    store: Store = field(default_factory=dict)

    def replay(self, decisions: list[Decided | Relinked], envelopes: dict[str, Envelope],
               now: datetime) -> list[Routed]:
        routed = []
        for item in decisions:
            if isinstance(item, Relinked):
                t = item.ticket
                relink_fixed(self.store, t.winner, t.loser, t.moved_keys)
                continue
            envelope = envelopes[item.event.event_id]
            routed.append(route_event(self.store, envelope, now, self.window,
                                      item.event.origin))
        return routed


def dump(store: Store) -> str:
    """A readable store, for assertion messages."""
    return json.dumps({k.decode(): v.decode() for k, v in sorted(store.items())}, indent=1)
