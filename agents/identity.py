"""Identity stage: exact dedup and identity resolution, then on to the profile stage.

Reads the one-partition ``internal.identity`` topic (batches from screening, and
commands), because the identity graph needs one owner to stay consistent. For each
valid event it is the light part of the work: a dedup marker and a few graph lookups
(streams/core/identity_stage.py). It forwards each new event, in batches, to the
partition of ``internal.profiles`` that owns the event's canonical profile, and each
merge to the merged-away profile's partition (streams/core/routing.py); all in the
input record's transaction (agents/owned.py), so forwards and graph commit together.
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
from agents.owned import (
    YIELD_EVERY,
    Decoder,
    Forward,
    Outputs,
    OwnedState,
    read_items,
    source_of,
)
from agents.screening import header
from streams.core.batch import BATCH_HEADER, VERSION_RESOLVED, BatchItem, chunked, encode_batch
from streams.core.contract import ContractViolation
from streams.core.dedup import DEDUP_PREFIX
from streams.core.erasure import Request, erase_identity
from streams.core.identity_stage import expired_markers, relink, route_event
from streams.core.pipeline import APPLIED, canonical_id
from streams.core.routing import (
    COMMAND_HEADER,
    ERASE,
    MERGE_OUT,
    RELINK,
    TICK,
    UNDO_MERGE,
    partition_of,
)
from streams.errors import BrokerError
from streams.topics import ERASURES, SUPPRESSIONS
from tables.state import StateStore

log = logging.getLogger(__name__)
STAGE = "stream.identity"
SWEEP_INTERVAL_S = 5.0
SWEEP_CHUNK = 2000


class Forwarder:
    """Per profile partition, the resolved events of one input record, in order, and the
    commands between them (a merge-out must follow the loser's earlier events)."""

    def __init__(self, out: Outputs, topic: str, partitions: int) -> None:
        self.out, self.topic, self.partitions = out, topic, partitions
        self.pending: dict[int, list[BatchItem]] = {}

    def event(self, item: BatchItem, profile_id: str) -> None:
        partition = partition_of(profile_id, self.partitions)
        self.pending.setdefault(partition, []).append(
            BatchItem(item.origin, item.key, item.value, profile_id))

    def command(self, profile_id: str, name: bytes, body: bytes) -> None:
        """``name`` for ``profile_id``'s partition, after the events before it there."""
        partition = partition_of(profile_id, self.partitions)
        self.flush(partition)
        self.out.forwards.append(Forward(self.topic, profile_id.encode(), body, partition,
                                         {COMMAND_HEADER: name}))

    def flush(self, partition: int | None = None) -> None:
        for p in [partition] if partition is not None else sorted(self.pending):
            for run in chunked(self.pending.pop(p, [])):
                self.out.forwards.append(Forward(
                    self.topic, None, encode_batch(run), p,
                    {BATCH_HEADER: str(VERSION_RESOLVED).encode()}))


class IdentityStage:
    """The identity stage's wiring: its input topic's one partition to its store."""

    def __init__(self, w: Worker, activation: Activation, decoder: Decoder) -> None:
        self.w, self.decoder = w, decoder
        self.profiles = w.profiles_topic.get_topic_name()
        self.owned = OwnedState(w, activation, STAGE, w.identity_topic.get_topic_name(),
                                [w.identity_state])
        self.sweeper = MarkerSweeper(w)

    def install(self) -> None:
        self.w.app.timer(interval=1.0)(self.owned.watch)
        self.w.app.agent(self.w.identity_topic, name="identity")(self.agent)

    async def agent(self, stream: Any) -> None:
        await self.owned.consume(stream, self.work)

    def forwarder(self, out: Outputs) -> Forwarder:
        return Forwarder(out, self.profiles, self.w.partitions)

    async def work(self, message: Any, store: StateStore, out: Outputs) -> None:
        command = header(message, COMMAND_HEADER)
        if command is not None:
            self.run_command(message, command, store, out)
        else:
            await self.run_events(store, read_items(message, out), out)
        self.sweeper.maybe_sweep(store)

    async def run_events(self, store: StateStore, items: list[BatchItem], out: Outputs
                         ) -> None:
        forwarder, window = self.forwarder(out), self.w.settings.dedup_window
        for index, item in enumerate(items):
            if index % YIELD_EVERY == YIELD_EVERY - 1:  # let heartbeats and the API run
                await asyncio.sleep(0)
            now = datetime.now(UTC)
            envelope = await self.decoder.decoded(item, now, STAGE)
            try:
                if isinstance(envelope, str):
                    raise ContractViolation(envelope)
                routed = route_event(store, envelope, now, window, item.origin)
            except BrokerError:  # the state's transaction failed: the record is done again
                raise
            except Exception as exc:  # a bug must not stall the partition: park the event
                log.exception("identity stage failed on %s", item.origin)
                out.park(source_of(item), f"{type(exc).__name__}: {exc}")
                continue
            out.statuses[routed.status] += 1
            if routed.status == APPLIED:
                forwarder.event(item, routed.profile_id)
                self.decoder.hand_over(item.origin, envelope)
            for merge in routed.merges:
                forwarder.command(merge.loser, MERGE_OUT, merge.to_json())
            out.merges += len(routed.merges)
        forwarder.flush()

    def run_command(self, message: Any, command: bytes, store: StateStore, out: Outputs
                    ) -> None:
        """Ticks go to every profile partition; an undo to the profile that holds the
        merge; a relink (an undo done) gives identifiers back; an erasure forgets a
        customer."""
        if command == TICK:
            out.forwards.extend(Forward(self.profiles, TICK, message.value, p,
                                        {COMMAND_HEADER: TICK})
                                for p in range(self.w.partitions))
            return
        try:
            body = json.loads(message.value)
            if command == UNDO_MERGE:
                pid = canonical_id(store, body["profile_id"])
                value = json.dumps({"profile_id": pid, "event_id": body["event_id"]}).encode()
                self.forwarder(out).command(pid, UNDO_MERGE, value)
            elif command == ERASE:
                self.erase(store, Request.from_json(message.value), out)
            elif command == RELINK:
                relink(store, body["winner"], body["loser"], body["moved_keys"])
                log.info("merge of %s into %s undone: %d identifiers back", body["loser"],
                         body["winner"], len(body["moved_keys"]))
            else:
                log.warning("ignored unknown command %r at offset %d", command, message.offset)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored malformed command at offset %d: %s", message.offset, exc)

    def erase(self, store: StateStore, request: Request, out: Outputs) -> None:
        """Forget an identifier's profile here (streams/core/erasure.py); the profile
        stage erases the rest. Suppressions and the audit record go out in this
        transaction."""
        done = erase_identity(store, lambda p, n: store.scan(p, n, p), request,
                              datetime.now(UTC))
        if done.profile_id is not None:
            body = json.dumps({"request": json.loads(request.to_json()),
                               "profile_id": done.profile_id}).encode()
            self.forwarder(out).command(done.profile_id, ERASE, body)
        suppressions, erasures = self.w.topic(SUPPRESSIONS), self.w.topic(ERASURES)
        out.forwards.extend(Forward(suppressions, key.encode(), json.dumps(
            {"request_id": request.request_id}).encode(), 0, {}) for key in done.suppressed)
        out.forwards.append(Forward(erasures, request.request_id.encode(),
                                    json.dumps(done.audit).encode(), 0, {}))
        log.info("erasure %s: %s", request.request_id, json.dumps(done.audit))


class MarkerSweeper:
    """Deletes expired dedup markers a chunk at a time, between records (deletes are
    writes, which belong to a record's transaction: hence not in a timer)."""

    def __init__(self, w: Worker) -> None:
        self.w = w
        self.cursor = DEDUP_PREFIX
        self.due = time.monotonic() + SWEEP_INTERVAL_S

    def maybe_sweep(self, store: StateStore) -> None:
        if time.monotonic() < self.due:
            return
        self.due = time.monotonic() + SWEEP_INTERVAL_S
        items = store.scan(self.cursor, SWEEP_CHUNK, DEDUP_PREFIX)
        expired, cursor = expired_markers(items, datetime.now(UTC),
                                          self.w.settings.dedup_window, SWEEP_CHUNK)
        for key in expired:
            del store[key]
        self.cursor = cursor or DEDUP_PREFIX
        self.w.metrics.purged.inc(len(expired))
