"""Identity stage wiring: ``internal.identity`` (batches from screening, and commands)
to the stage's store, in transactions of a few records each (agents/owned.py): the graph's
writes, the events forwarded in batches to the profile partition of their canonical
profile, each merge's ``merge-out`` to the loser's partition, and the input offset
commit together.

Two layouts (``ACTIVATION_IDENTITY_PARTITIONS``):

- one partition (the default): the stage module streams/core/stages/identity.py over
  the one store: today's single owner;
- N slots: each partition is a slot with its own store, and each record goes through
  the ticket protocol (streams/core/identity_protocol.py, docs/partitioned-identity.md):
  an event whose identifiers all live in its home slot is decided there at once; one
  that links identifiers of other slots travels between slots as protocol messages
  (records of this same topic), each hop a transaction of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from agents.activation import Activation
from agents.context import Worker
from agents.owned import PROTOCOL_COUNT, YIELD_EVERY, Decoder, OwnedState, chunks, read_items
from agents.screening import header
from streams.core import carried
from streams.core.batch import BatchItem, parse_origin
from streams.core.deadletter import SourceRecord
from streams.core.dedup import DEDUP_PREFIX
from streams.core.identity import identifier_keys
from streams.core.identity_messages import (
    Arrival,
    Erase,
    EventRef,
    ProtocolError,
    Tick,
    decode_many,
    encode,
)
from streams.core.identity_outputs import (
    Decided,
    Dropped,
    Erased,
    GaveUp,
    MergeOutput,
    Output,
    ProfileCommand,
    Send,
    TickDone,
    ToProfile,
)
from streams.core.identity_protocol import Config, handle
from streams.core.identity_stage import expired_markers
from streams.core.pipeline import APPLIED
from streams.core.profile import micros
from streams.core.routing import COMMAND_HEADER, ERASE, IDENTITY_PROTOCOL, MERGE_OUT, TICK
from streams.core.stages import identity
from streams.core.stages.identity import source_of
from streams.core.stages.outputs import Broadcast, Command, Outputs, Resolved, ToIdentity
from streams.records import Envelope
from streams.topics import ERASURES, SUPPRESSIONS
from tables.state import StateStore

log = logging.getLogger(__name__)
# Protocol messages coalesced into one record, in bytes: under the topic's
# max.message.bytes (streams/topics.py) with room for the headers.
MAX_PROTOCOL_RECORD = 900_000
SWEEP_INTERVAL_S = 5.0
SWEEP_CHUNK = 2000
# What a slot holds open between the hops of a ticket (streams/core/keys.py), counted
# for activation_identity_protocol_pending; each family is counted up to PENDING_CAP
# (a scan of the store, so bounded; at the cap something is badly stuck anyway).
PENDING = {"locks": b"l:", "home_guards": b"g:", "claims": b"c:", "waiters": b"w:"}
PENDING_CAP = 10_000
PENDING_INTERVAL_S = 15.0


class IdentityWiring:
    """The identity stage's wiring: each partition of its input topic to its store."""

    def __init__(self, w: Worker, activation: Activation, decoder: Decoder) -> None:
        self.w, self.decoder = w, decoder
        self.owned = OwnedState(w, activation, identity.STAGE,
                                w.identity_topic.get_topic_name(), w.identity_states,
                                finish=coalesce_outputs)
        self.sweeper = MarkerSweeper(w)
        self.cfg = Config(w.slots, w.settings.dedup_window)

    def install(self) -> None:
        self.w.app.timer(interval=1.0)(self.owned.watch)
        self.w.app.agent(self.w.identity_topic, name="identity")(self.agent)
        if self.w.slots > 1:
            self.w.app.timer(interval=PENDING_INTERVAL_S)(self.count_pending)

    async def count_pending(self) -> None:
        """The protocol's open locks, guards, claims and waiters in the slots this
        worker owns (read-only, between records: the agents run on this same loop)."""
        for kind, count in pending_counts(self.w.identity_states).items():
            self.w.metrics.protocol_pending.labels(kind).set(count)

    async def agent(self, stream: Any) -> None:
        await self.owned.consume(stream, self.work)

    async def work(self, message: Any, store: StateStore, out: Outputs) -> None:
        name, now = header(message, COMMAND_HEADER), datetime.now(UTC)
        if name is None:
            await self.events(message, store, read_items(message, out, now), now, out)
        elif self.w.slots > 1 and name == IDENTITY_PROTOCOL:
            for n, step in enumerate(decode_many(message.value or b"")):
                self.apply(handle(store, message.partition, step, self.cfg), out, now)
                if n % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # let heartbeats and the API run
        elif self.w.slots > 1 and name == TICK:  # through the barrier (identity_tick.py)
            self.tick(message, store, out, now)
        elif self.w.slots > 1 and name == ERASE:  # any slot: its first step goes home
            first = Erase("key", (message.value or b"").decode(), micros(now))
            self.apply(handle(store, message.partition, first, self.cfg), out, now)
        elif self.w.slots > 1:
            log.error("identity slot %d: command %r is not supported with "
                      "ACTIVATION_IDENTITY_PARTITIONS > 1; ignored", message.partition, name)
        else:
            identity.command(store, store.scan, name, message.value or b"", now, out)
        self.sweeper.maybe_sweep(store)

    def tick(self, message: Any, store: StateStore, out: Outputs, now: datetime) -> None:
        start = Tick("start", (message.value or b"").decode(errors="replace"))
        try:
            self.apply(handle(store, message.partition, start, self.cfg), out, now)
        except ProtocolError as exc:  # as the profile stage does with a malformed command
            log.warning("identity slot %d: ignored a tick: %s", message.partition, exc)

    async def events(self, message: Any, store: StateStore, items: list[BatchItem],
                     now: datetime, out: Outputs) -> None:
        window = self.w.settings.dedup_window
        for run in chunks(items):
            decoded = [(item, await self.decoder.decoded(item, now, identity.STAGE))
                       for item in run]
            sent = len(out.sends)
            if self.w.slots == 1:
                identity.events(store, decoded, now, window, out)
                carry(out, sent, {item.origin: e for item, e in decoded
                                  if not isinstance(e, str)})
            else:
                for item, envelope in decoded:
                    self.arrive(store, message.partition, item, envelope, now, out)
            await asyncio.sleep(0)  # let heartbeats and the API run

    def arrive(self, store: StateStore, slot: int, item: BatchItem, envelope: Envelope | str,
               now: datetime, out: Outputs) -> None:
        """An event at its home slot (partitioned layout): its arrival in the protocol,
        with its decoded envelope, whose carried bytes travel with it."""
        if isinstance(envelope, str):
            out.park(source_of(item), envelope, now)
            return
        event = EventRef(envelope.event_id, micros(envelope.event_time),
                         tuple(identifier_keys(envelope.identifiers)), item.origin,
                         item.key, item.value, carried.encode(envelope))
        self.apply(handle(store, slot, Arrival(event, micros(now)), self.cfg), out, now)

    def apply(self, outputs: list[Output], out: Outputs, now: datetime) -> None:
        """The protocol's outputs, in order, as the stage's outputs. An event goes on to
        the profile stage with the carried bytes of its envelope, as they arrived or
        waited: the profile stage decodes them (most events of a backlog of new
        customers wait, and were decoded here once already, on arrival)."""
        for o in outputs:
            if isinstance(o, Send):  # coalesced per slot when the record is done
                out.identity.append(ToIdentity(IDENTITY_PROTOCOL, "", encode(o.message),
                                               o.slot))
                out.counts[PROTOCOL_COUNT + o.message.KIND] += 1
            elif isinstance(o, ToProfile):  # with its envelope's bytes, not decoded
                e = o.event
                out.sends.append(Resolved(BatchItem(e.origin, e.record_key, e.value,
                                                    o.profile_id, None, e.carried)))
            elif isinstance(o, MergeOutput):
                out.sends.append(Command(MERGE_OUT, o.merge.loser, o.merge.to_json()))
            elif isinstance(o, ProfileCommand):
                out.sends.append(Command(o.name, o.profile_id, o.body))
            elif isinstance(o, Decided):
                out.statuses[APPLIED] += 1
                out.counts["merges"] += len(o.merges)
            elif isinstance(o, Dropped):
                out.statuses[o.status] += 1
            elif isinstance(o, Erased):
                erased(o, out)
            elif isinstance(o, TickDone):
                out.sends.append(Broadcast(TICK, o.body))
            elif isinstance(o, GaveUp):
                topic, partition, offset = parse_origin(o.event.origin)
                out.park(SourceRecord(topic, partition, offset, o.event.record_key,
                                      o.event.value), o.reason, now)
            else:  # Relinked: an undo done
                log.info("identity: %s", o)


def pending_counts(stores: list[StateStore]) -> dict[str, int]:
    """Per family of :data:`PENDING`, its keys in the claimed stores (each store's
    count capped at :data:`PENDING_CAP`)."""
    totals = dict.fromkeys(PENDING, 0)
    for store in stores:
        if store.claimed:
            for kind, prefix in PENDING.items():
                totals[kind] += len(store.scan(prefix, PENDING_CAP))
    return totals


def coalesce_outputs(out: Outputs) -> None:
    """A transaction's protocol messages coalesced (:func:`coalesce`) before they go."""
    out.identity[:] = coalesce(out.identity)


def coalesce(sends: list[ToIdentity], limit: int = MAX_PROTOCOL_RECORD) -> list[ToIdentity]:
    """A record's protocol messages, one record per destination slot (in order, up to
    ``limit`` bytes each) rather than one per message: the receiving slot handles them
    in one transaction instead of one each, and a transaction is what costs most. The
    order per slot is kept, so it is the same as reading them one by one."""
    runs: dict[int, list[tuple[list[bytes], int]]] = {}
    others = [s for s in sends if s.name != IDENTITY_PROTOCOL]
    for send in sends:
        if send.name != IDENTITY_PROTOCOL:
            continue
        slot = runs.setdefault(send.partition, [([], 0)])
        bodies, size = slot[-1]
        if bodies and size + len(send.body) > limit:
            slot.append(([], 0))
            bodies, size = slot[-1]
        bodies.append(send.body)
        slot[-1] = (bodies, size + len(send.body) + 1)
    return others + [ToIdentity(IDENTITY_PROTOCOL, "", b"\n".join(bodies), partition)
                     for partition, slot in runs.items() for bodies, _ in slot]


def erased(o: Erased, out: Outputs) -> None:
    """An erasure done over the slots: what the single layout's ``erase`` writes."""
    marker = json.dumps({"request_id": o.request_id}).encode()
    out.records.extend((SUPPRESSIONS, key.encode(), marker) for key in o.suppressed)
    out.records.append((ERASURES, o.request_id.encode(), o.audit.encode()))
    log.info("erasure %s: %s", o.request_id, o.audit)


def carry(out: Outputs, first: int, envelopes: dict[str, Envelope]) -> None:
    """The envelopes go on with the events sent to the profile stage (from ``first``):
    it reads them instead of decoding again (streams/core/carried.py). An envelope
    decoded from carried bytes is sent as those bytes; one decoded from Avro (a record
    from before the carried format, or carried bytes that did not read back) is
    encoded."""
    for i in range(first, len(out.sends)):
        send = out.sends[i]
        if isinstance(send, Resolved) and send.item.envelope is None:
            envelope = envelopes.get(send.item.origin)
            if envelope is not None:
                out.sends[i] = Resolved(send.item._replace(envelope=envelope))


class MarkerSweeper:
    """Deletes expired dedup markers a chunk at a time, between records (deletes are
    writes, which belong to a record's transaction: hence not in a timer); one cursor
    per slot."""

    def __init__(self, w: Worker) -> None:
        self.w = w
        self.cursors: dict[int, bytes] = {}
        self.due: dict[int, float] = {}

    def maybe_sweep(self, store: StateStore) -> None:
        slot = store.partition
        if time.monotonic() < self.due.setdefault(slot, time.monotonic() + SWEEP_INTERVAL_S):
            return
        self.due[slot] = time.monotonic() + SWEEP_INTERVAL_S
        items = store.scan(self.cursors.get(slot, DEDUP_PREFIX), SWEEP_CHUNK, DEDUP_PREFIX)
        expired, cursor = expired_markers(items, datetime.now(UTC),
                                          self.w.settings.dedup_window, SWEEP_CHUNK)
        for key in expired:
            del store[key]
        self.cursors[slot] = cursor or DEDUP_PREFIX
        self.w.metrics.purged.inc(len(expired))
