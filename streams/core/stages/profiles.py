"""The profile stage's work on one input record, for the profiles of one partition:
events applied in event-time order with activation run on each (streams/core/pipeline.py,
streams/activation/runtime.py), merges carried in two steps, undo, timers and
scheduled actions, delivery notes and erasures (commands: streams/core/routing.py).

Pure over the partition's store; what it causes goes into an :class:`Outputs`. The
definitions deciding for a profile come from a :class:`Definitions` (the worker's
follower of the definitions topic, or fixed ones in the sandbox); ``wall`` is the
wall clock the caller read, which activation's clock replaces in manual mode.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from streams.activation.actions import command_identifiers
from streams.activation.definitions import DefinitionSet
from streams.activation.notes import read_notes
from streams.activation.runtime import (
    TIMER,
    Emission,
    TimerContext,
    activate_event,
    activate_merged,
    adopt_notes,
    clock_now,
    drop_timer,
    due_timers,
    fire_timer,
    note_delivery,
    retire_merged,
    set_clock,
)
from streams.activation.schedules import ScheduleContext, on_run_command, on_tick
from streams.core.batch import BatchItem
from streams.core.contract import ContractViolation
from streams.core.erasure import erase_profile, erasure_commands
from streams.core.identity_messages import Relink, RelinkTicket, encode
from streams.core.late_merge import carried_along, follow
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
from streams.core.profile import Profile
from streams.core.routing import (
    DELIVERY_NOTE,
    ERASE,
    IDENTITY_PROTOCOL,
    MERGE_IN,
    MERGE_OUT,
    RELINK,
    RESTORE,
    SCHEDULE_RUN,
    TICK,
    UNDO_MERGE,
    MergeIn,
    MergeOut,
    partition_of,
    profile_slot,
)
from streams.core.stages.identity import source_of
from streams.core.stages.outputs import Command, Outputs, Resolved, ToIdentity
from streams.core.store import Store
from streams.core.unmerge import undo_merge
from streams.errors import BrokerError
from streams.records import Envelope

log = logging.getLogger(__name__)
STAGE = "stream.profile"


class Definitions(Protocol):
    def definitions_for(self, store: Store, profile_id: str) -> DefinitionSet | None: ...

    def definitions_in_force(self) -> DefinitionSet | None: ...


@dataclass(frozen=True)
class Fixed:
    """The same definitions for every profile (the sandbox, tests)."""

    definitions: DefinitionSet | None

    def definitions_for(self, store: Store, profile_id: str) -> DefinitionSet | None:
        return self.definitions

    def definitions_in_force(self) -> DefinitionSet | None:
        return self.definitions


@dataclass
class ProfileStage:
    """The stage for one deployment: its config, its partition count, its definitions,
    whether activation's clock is manual (ticks set it), and the timers per tick."""

    config: StageConfig
    partitions: int
    definitions: Definitions
    manual: bool = False
    timer_batch: int = 2000
    channels: tuple[str, ...] = ()  # action topics an erasure is announced on
    identity_slots: int = 1  # the identity stage's partitions (where relinks go)

    def now(self, store: Store, wall: datetime) -> datetime:
        return clock_now(store, self.manual, wall)

    def events(self, store: Store, partition: int,
               items: list[tuple[BatchItem, Envelope | str, int]], wall: datetime,
               out: Outputs) -> None:
        """Apply a record's events (item, its envelope or why it has none, position)."""
        for item, envelope, at in items:
            try:
                if isinstance(envelope, str):
                    raise ContractViolation(envelope)
                target = self._redirected(store, item, partition, out)
                if target is not None:
                    self._apply(store, target, at, envelope, wall, out)
            except BrokerError:  # the state's transaction failed: the record is done again
                raise
            except Exception as exc:  # a bug must not stall the partition: park the event
                log.exception("profile stage failed on %s", item.origin)
                out.park(source_of(item), f"{type(exc).__name__}: {exc}", wall)

    def _redirected(self, store: Store, item: BatchItem, partition: int, out: Outputs
                    ) -> BatchItem | None:
        """The item for its profile's survivor if that profile was merged away here (an
        event can reach it after its merge-out when Faust redelivers records out of
        order after a seek), or None once it is sent on to the survivor's partition."""
        target = canonical_id(store, item.profile)
        if target == item.profile:
            return item
        moved = item._replace(profile=target)
        if partition_of(target, self.partitions) == partition:
            return moved
        out.sends.append(Resolved(moved))
        return None

    def _apply(self, store: Store, item: BatchItem, at: int, envelope: Envelope,
               wall: datetime, out: Outputs) -> None:
        if not item.profile:
            raise ValueError("event without a resolved profile id")
        now = self.now(store, wall)

        def hook(before: Profile | None, profile: Profile, env: Envelope, offset: int
                 ) -> Profile:
            out.counts["match.new" if before is None else "match.existing"] += 1
            profile, emission = activate_event(
                store, before, profile, env, offset, now,
                self.definitions.definitions_for(store, profile.profile_id),
                self.config.timeline_limit)
            out.emit(emission, env)
            return profile

        apply_resolved(store, envelope, item.profile, at, self.config, activate=hook)
        out.statuses[APPLIED] += 1

    def command(self, store: Store, partition: int, name: bytes, body: bytes, at: int,
                wall: datetime, out: Outputs) -> None:
        """One command; a malformed or unknown one is logged and ignored (never retried)."""
        handlers = {TICK: self.tick, MERGE_OUT: self.merge_out, MERGE_IN: self.merge_in,
                    UNDO_MERGE: self.undo, RESTORE: self.restore,
                    SCHEDULE_RUN: self.schedule_run, DELIVERY_NOTE: self.delivery_note,
                    ERASE: self.erase}
        handler = handlers.get(name)
        if handler is None:
            log.warning("profile stage: ignored unknown command %r", name)
            return
        try:
            handler(Message(store, partition, body, at, wall), out)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("profile stage: ignored malformed %s command: %s", name.decode(), exc)

    def schedules(self, store: Store) -> ScheduleContext:
        return ScheduleContext(store, store.scan, self.config.timeline_limit)

    def tick(self, m: Message, out: Outputs) -> None:
        """Fire the due timers of this partition, then its share of the scheduled actions
        due (streams/activation/schedules.py: in chunks, its progress in the store)."""
        now = datetime.fromisoformat(json.loads(m.body)["now"])
        if self.manual:
            set_clock(m.store, now)
        store, limit = m.store, self.config.timeline_limit
        ctx = TimerContext(lambda pid: load_profile(store, pid),
                           lambda pid: canonical_id(store, pid), limit)
        for tkey, pid in due_timers(store.scan(TIMER, self.timer_batch, TIMER), now):
            out.counts["timers"] += 1
            try:
                emission = fire_timer(store, tkey, pid, m.at, now,
                                      self.definitions.definitions_for(store, pid), ctx)
            except BrokerError:
                raise
            except Exception:  # a bug in one profile's timer must not stall every timer
                log.exception("timer of profile %s failed; dropped (its next event "
                              "re-arms it)", pid)
                out.counts["timer_errors"] += 1
                drop_timer(store, tkey, pid)
                continue
            out.emit(emission)
        # Scheduled actions follow the newest publication, staged or not (docs: rollout).
        out.emissions.extend(on_tick(self.schedules(store), now,
                                     self.definitions.definitions_in_force()))

    def merge_out(self, m: Message, out: Outputs) -> None:
        """The loser's side of a merge: it leaves its audiences and journeys, and its
        state goes to the winner's partition."""
        merge, store = MergeOut.from_json(m.body), m.store
        loser = load_profile(store, merge.loser) or Profile(merge.loser)
        loser, emission = retire_merged(store, loser, merge.event_id, self.now(store, m.wall),
                                        self.definitions.definitions_for(store, merge.loser),
                                        self.config.timeline_limit)
        if emission is not None:  # keyed by the winner: see streams/core/routing.py
            out.emit(replace(emission, profile_id=merge.winner))
        incoming = replace(merge_out(store, merge, loser), loser_notes=read_notes(
            _scanner(store), merge.loser, self.config.timeline_limit))
        out.sends.append(Command(MERGE_IN, merge.winner, incoming.to_json()))

    def merge_in(self, m: Message, out: Outputs) -> None:
        """The winner's side: fold the loser in, record the merge, evaluate again. If
        the winner was itself merged away meanwhile, the merge goes on to its survivor
        (streams/core/late_merge.py)."""
        incoming, store = MergeIn.from_json(m.body), m.store
        limit = self.config.timeline_limit
        incoming, target, wait = follow(
            store, incoming, lambda pid: partition_of(pid, self.partitions) == m.partition,
            limit)
        if wait or partition_of(target, self.partitions) != m.partition:
            out.sends.append(Command(MERGE_IN, target, incoming.to_json()))
            return
        merged = merge_in(store, incoming, self.config)
        if incoming.into:
            carried_along(store, target, incoming, limit)
        adopt_notes(store, target, incoming.merge.loser, incoming.loser_notes, limit)
        merged, emission = activate_merged(
            store, merged, incoming.merge.event_id, m.at, self.now(store, m.wall),
            self.definitions.definitions_for(store, target), limit)
        store[pkey(target)] = merged.to_json()
        out.emit(emission)

    def undo(self, m: Message, out: Outputs) -> None:
        """Undo a merge recorded here: the loser's profile goes back to its partition,
        its identifiers back to it in the identity graph."""
        doc = json.loads(m.body)
        result = undo_merge(m.store, doc["profile_id"], doc["event_id"])
        log.info("undo of merge %s on %s: %s", doc["event_id"], doc["profile_id"],
                 "done" if result else "nothing to undo")
        if result is None:
            return
        record, loser = result
        out.sends.append(Command(RESTORE, loser.profile_id, loser.to_json()))
        out.identity.append(self._relink(record.event_id, record.winner, record.loser,
                                         tuple(record.moved_keys)))

    def _relink(self, event_id: str, winner: str, loser: str, moved: tuple[str, ...]
                ) -> ToIdentity:
        """The identifiers back to the loser: today's ``relink`` command to the one
        identity partition, or a relink ticket to the loser's slot (partitioned layout,
        docs/partitioned-identity.md 3.6)."""
        if self.identity_slots == 1:
            return ToIdentity(RELINK, loser, json.dumps(
                {"winner": winner, "loser": loser, "moved_keys": list(moved)}).encode())
        ticket = Relink(RelinkTicket(event_id, winner, loser, moved))
        return ToIdentity(IDENTITY_PROTOCOL, loser, encode(ticket),
                          profile_slot(loser, self.identity_slots))

    def restore(self, m: Message, out: Outputs) -> None:
        restore(m.store, Profile.from_json(m.body))

    def schedule_run(self, m: Message, out: Outputs) -> None:
        """A scheduled action run by hand (scripts/schedules run): this partition's share."""
        out.emissions.extend(on_run_command(self.schedules(m.store), m.body,
                                            self.now(m.store, m.wall),
                                            self.definitions.definitions_in_force()))

    def delivery_note(self, m: Message, out: Outputs) -> None:
        """A delivery outcome for a profile's timeline; dropped for a profile not here
        (merged away since, or never seen on this partition)."""
        outcome = json.loads(m.body)
        if load_profile(m.store, outcome["profile_id"]) is not None:
            note_delivery(m.store, outcome["profile_id"], outcome, self.config.timeline_limit)

    def erase(self, m: Message, out: Outputs) -> None:
        """Forget a profile here, tell downstream services (an ``erase_profile`` command
        on every action topic), and pass the erasure on to the profiles merged into it
        (streams/core/erasure.py)."""
        doc = json.loads(m.body)
        pid, request_id = doc["profile_id"], doc["request"]["request_id"]
        profile = load_profile(m.store, pid)
        ids = command_identifiers(profile.identifiers if profile is not None else {})
        merged = erase_profile(m.store, _scanner(m.store), pid)
        definitions = self.definitions.definitions_in_force()  # every channel in force
        channels = tuple(sorted(definitions.all_channels)) if definitions else self.channels
        out.emit(Emission(pid, commands=erasure_commands(pid, request_id, ids, channels,
                                                         m.wall)))
        out.sends.extend(Command(ERASE, loser, json.dumps({**doc, "profile_id": loser})
                                 .encode()) for loser in merged)
        log.info("erasure %s: profile erased here, %d merged into it", request_id,
                 len(merged))


@dataclass(frozen=True)
class Message:
    """A command as a handler gets it: the partition's store, the body, the record's
    position (streams/core/batch.py) and the wall clock read for it."""

    store: Store
    partition: int
    body: bytes
    at: int
    wall: datetime


def _scanner(store: Store) -> Any:
    """(prefix, limit) -> pairs under the prefix: the notes' and erasure's scan."""
    return lambda prefix, limit: store.scan(prefix, limit, prefix)
