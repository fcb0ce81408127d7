"""The stages in one process, over dict stores: the identity stage and a partitioned
profile stage with in-memory queues for the profile topic's partitions, driving the
same pure modules the agents (agents/identity.py, agents/profiles.py) drive: the merge
protocol across partitions, activation and its timers, without a broker.

Used by the what-if replay (streams/whatif.py: a draft of the definitions against the
ones in force, on recorded events) and by the unit tests. It orchestrates the pure
modules as the agents do (merge out, merge in, undo, redirects, timers); moving that
orchestration itself into pure modules both share is the open part of issue 13.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from streams.activation.definitions import DefinitionSet
from streams.activation.notes import read_notes
from streams.activation.runtime import (
    TIMER,
    Emission,
    TimerContext,
    activate_event,
    activate_merged,
    adopt_notes,
    due_timers,
    fire_timer,
    retire_merged,
)
from streams.core.identity_stage import Routed, relink, route_event
from streams.core.pipeline import (
    APPLIED,
    StageConfig,
    apply_resolved,
    canonical_id,
    load_profile,
    merge_in,
    merge_out,
    pkey,
    restore,
)
from streams.core.profile import Profile, timeline_page
from streams.core.routing import MergeIn, MergeOut, partition_of
from streams.core.unmerge import undo_merge
from streams.records import Envelope


class DictStore(dict[bytes, bytes]):
    """The Store protocol on a dict, with the ordered scan RocksDB gives the worker."""

    def scan(self, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        return [(k, self[k]) for k in sorted(k for k in self if k.startswith(prefix))][:limit]


@dataclass
class Sandbox:
    cfg: StageConfig
    partitions: int = 3
    definitions: DefinitionSet | None = None
    identity: DictStore = field(default_factory=DictStore)
    parts: list[DictStore] = field(default_factory=list)
    queues: list[deque[tuple[str, Any]]] = field(default_factory=list)
    sent: list[Emission] = field(default_factory=list)
    position: int = 0
    pick: Callable[[list[int]], int] | None = None

    def __post_init__(self) -> None:
        self.parts = [DictStore() for _ in range(self.partitions)]
        self.queues = [deque() for _ in range(self.partitions)]

    def part(self, profile_id: str) -> int:
        return partition_of(profile_id, self.partitions)

    def send(self, envelope: Envelope, now: datetime, origin: str = "",
             drain: bool = True) -> Routed:
        routed = route_event(self.identity, envelope, now, self.cfg.dedup_window, origin)
        if routed.status == APPLIED:
            self.queues[self.part(routed.profile_id)].append(
                ("event", (envelope, routed.profile_id, now)))
        for merge in routed.merges:
            self.queues[self.part(merge.loser)].append(("merge_out", (merge, now)))
        if drain:
            self.drain()
        return routed

    def tick(self, now: datetime, batch: int = 2000) -> None:
        """Every partition's due timers at ``now`` (the agents' tick command)."""
        for store in self.parts:
            ctx = TimerContext(partial(load_profile, store), partial(canonical_id, store),
                               self.cfg.timeline_limit)
            for tkey, pid in due_timers(store.scan(TIMER, batch), now):
                self.position += 1
                self._emit(fire_timer(store, tkey, pid, self.position, now, self.definitions,
                                      ctx))

    def undo(self, winner: str, event_id: str) -> None:
        self.queues[self.part(winner)].append(("undo", (winner, event_id)))
        self.drain()

    def drain(self) -> None:
        """Work every partition's queue off; ``pick`` (if set) chooses which partition goes
        next among those with work: any interleaving the workers could produce."""
        while any(self.queues):
            ready = [p for p, queue in enumerate(self.queues) if queue]
            for p in ready if self.pick is None else [self.pick(ready)]:
                kind, body = self.queues[p].popleft()
                self.position += 1
                getattr(self, f"_{kind}")(p, self.parts[p], *body)

    def _emit(self, emission: Emission | None) -> None:
        self.sent.extend([emission] if emission else [])

    def _event(self, p: int, store: DictStore, env: Envelope, pid: str, now: datetime) -> None:
        def hook(before: Profile | None, profile: Profile, envelope: Envelope, at: int
                 ) -> Profile:
            profile, emission = activate_event(store, before, profile, envelope, at, now,
                                               self.definitions, self.cfg.timeline_limit)
            self._emit(emission)
            return profile

        apply_resolved(store, env, pid, self.position, self.cfg, hook)

    def _merge_out(self, p: int, store: DictStore, merge: MergeOut, now: datetime) -> None:
        loser = load_profile(store, merge.loser) or Profile(merge.loser)
        loser, emission = retire_merged(store, loser, merge.event_id, now, self.definitions,
                                        self.cfg.timeline_limit)
        self._emit(None if emission is None else replace(emission, profile_id=merge.winner))
        incoming = replace(merge_out(store, merge, loser), loser_notes=read_notes(
            store.scan, merge.loser, self.cfg.timeline_limit))
        self.queues[self.part(merge.winner)].append(("merge_in", (incoming, now)))

    def _merge_in(self, p: int, store: DictStore, incoming: MergeIn, now: datetime) -> None:
        target = canonical_id(store, incoming.merge.winner)
        incoming = replace(incoming, merge=replace(incoming.merge, winner=target))
        if self.part(target) != p:
            self.queues[self.part(target)].append(("merge_in", (incoming, now)))
            return
        merged = merge_in(store, incoming, self.cfg)
        adopt_notes(store, target, incoming.merge.loser, incoming.loser_notes,
                    self.cfg.timeline_limit)
        merged, emission = activate_merged(store, merged, incoming.merge.event_id,
                                           self.position, now, self.definitions,
                                           self.cfg.timeline_limit)
        store[pkey(target)] = merged.to_json()
        self._emit(emission)

    def _undo(self, p: int, store: DictStore, winner: str, event_id: str) -> None:
        result = undo_merge(store, winner, event_id)
        if result is not None:
            record, loser = result
            self.queues[self.part(loser.profile_id)].append(("restore", (loser,)))
            relink(self.identity, record.winner, record.loser, record.moved_keys)

    def _restore(self, p: int, store: DictStore, loser: Profile) -> None:
        restore(store, loser)

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
        page = timeline_page(profile or Profile(pid), 0, 10_000,
                             read_notes(store.scan, pid, self.cfg.timeline_limit))
        return list(page["items"])

    def customer(self, customer: str) -> Profile:
        found = self.profile(self.identity[f"i:cid:{customer}".encode()].decode())
        if found is None:
            raise KeyError(f"no profile for customer {customer}")
        return found
