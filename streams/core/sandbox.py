"""The stages in one process, over dict stores: a Bytewax-style testing source and sink
around the very stage modules the workers run (streams/core/stages/).

The identity stage's store and the profile stage's partitions are :class:`DictStore`\\ s;
what a stage module sends (streams/core/stages/outputs.py) goes into an in-memory queue
per profile partition, as the agents send it to a partition of ``internal.profiles``;
what goes back to the identity stage (a relink) is handled at once, as its one
partition would. Emissions are collected in ``sent``. There is no orchestration here
beyond delivering messages: merge out and in, undo, redirects and timers are the stage
modules' own.

Used by the what-if replay (streams/whatif.py: a draft of the definitions against the
ones in force, on recorded events) and by the unit tests (``pick`` chooses which
partition's queue goes next: any interleaving the workers could produce).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streams.activation.definitions import DefinitionSet
from streams.activation.notes import read_notes
from streams.activation.runtime import Emission
from streams.core import pipeline
from streams.core.batch import BatchItem
from streams.core.identity_stage import Routed
from streams.core.pipeline import StageConfig, canonical_id, load_profile
from streams.core.profile import Profile, timeline_page
from streams.core.routing import MERGE_OUT, TICK, UNDO_MERGE, MergeOut, partition_of
from streams.core.stages import identity
from streams.core.stages.outputs import Broadcast, Command, Outputs, Resolved, Send
from streams.core.stages.profiles import Fixed, ProfileStage
from streams.core.store import DictStore
from streams.records import Envelope

__all__ = ["DictStore", "Sandbox"]


@dataclass
class Sandbox:
    cfg: StageConfig
    partitions: int = 3
    definitions: DefinitionSet | None = None
    identity: DictStore = field(default_factory=DictStore)
    parts: list[DictStore] = field(default_factory=list)
    queues: list[deque[Send]] = field(default_factory=list)
    sent: list[Emission] = field(default_factory=list)
    position: int = 0
    pick: Callable[[list[int]], int] | None = None
    # The sandbox passes envelopes, not bytes: each by the origin its item names.
    envelopes: dict[str, Envelope] = field(default_factory=dict)
    # The "wall clock" the stages read: the time the last event was sent or ticked at.
    now: datetime | None = None

    def __post_init__(self) -> None:
        self.parts = [DictStore() for _ in range(self.partitions)]
        self.queues = [deque() for _ in range(self.partitions)]
        self.stage = ProfileStage(self.cfg, self.partitions, Fixed(self.definitions))

    def part(self, profile_id: str) -> int:
        return partition_of(profile_id, self.partitions)

    def send(self, envelope: Envelope, now: datetime, origin: str = "",
             drain: bool = True) -> Routed:
        """One event through the identity stage module, then (``drain``) the profiles'."""
        origin = origin or f"sandbox:0:{len(self.envelopes)}"
        self.now = now
        self.envelopes[origin] = envelope
        out = Outputs(identity.STAGE)
        identity.events(self.identity, [(BatchItem(origin, None, b""), envelope)], now,
                        self.cfg.dedup_window, out)
        self._deliver(out)
        if drain:
            self.drain()
        return _routed(out)

    def tick(self, now: datetime, batch: int = 2000) -> None:
        """Every partition's due timers at ``now`` (the agents' tick command)."""
        self.stage.timer_batch, self.now = batch, now
        body = json.dumps({"now": now.isoformat()}).encode()
        for p, store in enumerate(self.parts):
            self._run(p, store, Command(TICK, "", body), now)
        self.drain()

    def undo(self, winner: str, event_id: str) -> None:
        self.queues[self.part(winner)].append(Command(UNDO_MERGE, winner, json.dumps(
            {"profile_id": winner, "event_id": event_id}).encode()))
        self.drain()

    def drain(self) -> None:
        """Work every partition's queue off; ``pick`` (if set) chooses which partition
        goes next among those with work."""
        wall = self.now or datetime.now().astimezone()
        while any(self.queues):
            ready = [p for p, queue in enumerate(self.queues) if queue]
            for p in ready if self.pick is None else [self.pick(ready)]:
                self._run(p, self.parts[p], self.queues[p].popleft(), wall)

    def _run(self, p: int, store: DictStore, message: Send, wall: datetime) -> None:
        self.position += 1
        out = Outputs("sandbox")
        if isinstance(message, Resolved):
            envelope = self.envelopes[message.item.origin]
            self.stage.events(store, p, [(message.item, envelope, self.position)], wall, out)
        else:
            self.stage.command(store, p, message.name, message.body, self.position, wall, out)
        self._deliver(out)

    def _deliver(self, out: Outputs) -> None:
        self.sent.extend(out.emissions)
        for message in out.sends:
            if isinstance(message, Broadcast):
                for queue in self.queues:
                    queue.append(message)
            else:
                self.queues[self.part(message.profile_id)].append(message)
        for back in out.identity:
            identity.command(self.identity, self.identity.scan, back.name, back.body,
                             self.now or datetime.now().astimezone(), Outputs(identity.STAGE))

    # --- lookups, as the profile API makes them (agents/api.py) -------------------------

    def locate(self, profile_id: str) -> tuple[DictStore, str]:
        pid = canonical_id(self.identity, profile_id)
        store = self.parts[self.part(pid)]
        while (nxt := canonical_id(store, pid)) != pid:
            pid, store = nxt, self.parts[self.part(nxt)]
        return store, pid

    def profile(self, profile_id: str) -> Profile | None:
        store, pid = self.locate(profile_id)
        return load_profile(store, pid)

    def timeline(self, profile_id: str) -> list[dict[str, Any]]:
        """The timeline the profile API shows: events and activation's notes."""
        store, pid = self.locate(profile_id)
        profile = load_profile(store, pid)
        notes = read_notes(lambda prefix, n: store.scan(prefix, n, prefix), pid,
                           self.cfg.timeline_limit)
        page = timeline_page(profile or Profile(pid), 0, 10_000, notes)
        return list(page["items"])

    def customer(self, customer: str) -> Profile:
        found = self.profile(self.identity[f"i:cid:{customer}".encode()].decode())
        if found is None:
            raise KeyError(f"no profile for customer {customer}")
        return found


def _routed(out: Outputs) -> Routed:
    """What the identity stage decided for the one event of ``out``."""
    status = next(iter(out.statuses), pipeline.APPLIED)
    pid = next((m.profile_id for m in out.sends if isinstance(m, Resolved)), "")
    merges = tuple(MergeOut.from_json(m.body) for m in out.sends
                   if isinstance(m, Command) and m.name == MERGE_OUT)
    return Routed(status, pid, merges)
