"""Profile stage: event-time-ordered profile updates, merges, and activation
(audiences, journeys, governance) for the profiles of one partition.

Reads ``internal.profiles``, partitioned by canonical profile id, so the workers share
the profiles (one store per partition: tables/state.py). The identity stage
(agents/identity.py) has already deduplicated and resolved every event. Thin loop:
the work is :mod:`streams.core.pipeline` over the partition's store, with
:func:`streams.activation.runtime.activate_event` as its hook; commands
(streams/core/routing.py) fire due timers and carry merges and their undo across
partitions. A record that still fails here is dead-lettered with reason
``processing_error`` so the partition keeps flowing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from agents.activation import Activation
from agents.context import Worker
from agents.owned import YIELD_EVERY, Decoder, Forward, Outputs, OwnedState, read_items, source_of
from agents.screening import header
from streams.activation.actions import command_identifiers
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
from streams.core.batch import (
    BATCH_HEADER,
    VERSION_RESOLVED,
    BatchItem,
    encode_batch,
    position,
)
from streams.core.contract import ContractViolation
from streams.core.erasure import erase_profile, erasure_commands
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
    COMMAND_HEADER,
    DELIVERY_NOTE,
    ERASE,
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
)
from streams.core.unmerge import undo_merge
from streams.errors import BrokerError
from streams.records import Envelope
from streams.topics import ACTION_CHANNELS
from tables.state import StateStore

log = logging.getLogger(__name__)
STAGE = "stream.profile"
Command = Callable[[Any, StateStore, Outputs], None]


class RecordActivation:
    """The profile stage's activation hook for one record, and what it emitted."""

    def __init__(self, stage: ProfileStage, store: StateStore) -> None:
        self.stage, self.store = stage, store
        self.emission: Emission | None = None

    def scanner(self, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        return self.store.scan(prefix, limit, prefix)

    def now(self) -> datetime:
        return clock_now(self.store, self.stage.manual, datetime.now(UTC))

    def hook(self, before: Profile | None, profile: Profile, envelope: Envelope,
             offset: int) -> Profile:
        stage = self.stage
        stage.w.metrics.matches.labels("new" if before is None else "existing").inc()
        profile, self.emission = activate_event(
            self.store, before, profile, envelope, offset, self.now(),
            stage.activation.definitions_for(self.store, profile.profile_id),
            stage.config.timeline_limit)
        if self.emission is not None:
            observe_latency(stage.w, self.emission, envelope)
        return profile

    def timer_context(self) -> TimerContext:
        return TimerContext(lambda pid: load_profile(self.store, pid),
                            lambda pid: canonical_id(self.store, pid),
                            self.stage.config.timeline_limit)


def observe_latency(w: Worker, emission: Emission, envelope: Envelope) -> None:
    """Event time -> decision, gateway acceptance -> command (wall clock: what an
    operator waits for, whatever activation's clock says)."""
    now = datetime.now(UTC)
    if emission.decisions:
        w.activation_metrics.event_to_decision.observe(
            max(0.0, (now - envelope.event_time).total_seconds()))
    if emission.commands:
        w.activation_metrics.accepted_to_command.observe(
            max(0.0, (now - envelope.received_time).total_seconds()))


class ProfileStage:
    """The profile stage's wiring: each partition of its input topic to its store."""

    def __init__(self, w: Worker, activation: Activation, decoder: Decoder) -> None:
        self.w, self.activation, self.decoder = w, activation, decoder
        settings = w.settings
        self.manual = settings.activation_clock == "manual"
        self.config = StageConfig(settings.dedup_window, settings.ordering_window,
                                  settings.profile_timeline_limit)
        self.topic = w.profiles_topic.get_topic_name()
        self.owned = OwnedState(w, activation, STAGE, self.topic, w.profile_states)
        self.commands: dict[bytes, Command] = {
            MERGE_OUT: self.run_merge_out, MERGE_IN: self.run_merge_in,
            UNDO_MERGE: self.run_undo, RESTORE: self.run_restore,
            SCHEDULE_RUN: self.run_schedule, DELIVERY_NOTE: self.run_delivery_note,
            ERASE: self.run_erase}

    def install(self) -> None:
        self.w.app.timer(interval=1.0)(self.owned.watch)
        self.w.app.agent(self.w.profiles_topic, name="profiles")(self.agent)

    async def agent(self, stream: Any) -> None:
        await self.activation.wait_for_definitions()
        await self.owned.consume(stream, self.work)

    def schedules(self, store: StateStore) -> ScheduleContext:
        return ScheduleContext(store, store.scan, self.config.timeline_limit)


    def run_tick(self, message: Any, store: StateStore, out: Outputs) -> None:
        """Fire the due timers of this partition, then its share of the scheduled actions
        due (streams/activation/schedules.py: in chunks, its progress in the store)."""
        now = datetime.fromisoformat(json.loads(message.value)["now"])
        if self.manual:
            set_clock(store, now)
        act = RecordActivation(self, store)
        at = position(message.offset)
        definitions, ctx = self.activation.definitions_in_force(), act.timer_context()
        for tkey, pid in due_timers(act.scanner(TIMER, self.w.settings.timer_batch), now):
            self.w.activation_metrics.timers.inc()
            try:
                emission = fire_timer(store, tkey, pid, at, now,
                                      self.activation.definitions_for(store, pid), ctx)
            except BrokerError:
                raise
            except Exception:  # a bug in one profile's timer must not stall every timer
                log.exception("timer of profile %s failed; dropped (its next event re-arms it)",
                              pid)
                self.w.activation_metrics.timer_errors.inc()
                drop_timer(store, tkey, pid)
                continue
            if emission is not None:
                out.emissions.append(emission)
        # Scheduled actions follow the newest publication, staged or not (docs: rollout).
        out.emissions.extend(on_tick(self.schedules(store), now, definitions))


    def _forward(self, out: Outputs, name: bytes, profile_id: str, body: bytes) -> None:
        out.forwards.append(Forward(self.topic, profile_id.encode(), body,
                                    partition_of(profile_id, self.w.partitions),
                                    {COMMAND_HEADER: name}))


    def run_merge_out(self, message: Any, store: StateStore, out: Outputs) -> None:
        """The loser's side of a merge: it leaves its audiences and journeys, and its state
        goes to the winner's partition."""
        merge = MergeOut.from_json(message.value)
        act = RecordActivation(self, store)
        loser = load_profile(store, merge.loser) or Profile(merge.loser)
        loser, emission = retire_merged(store, loser, merge.event_id, act.now(),
                                        self.activation.definitions_for(store, merge.loser),
                                        self.config.timeline_limit)
        if emission is not None:  # keyed by the winner: see streams/core/routing.py
            out.emissions.append(replace(emission, profile_id=merge.winner))
        incoming = replace(merge_out(store, merge, loser), loser_notes=read_notes(
            act.scanner, merge.loser, self.config.timeline_limit))
        self._forward(out, MERGE_IN, merge.winner, incoming.to_json())


    def run_merge_in(self, message: Any, store: StateStore, out: Outputs) -> None:
        """The winner's side: fold the loser in, record the merge, evaluate again. If the
        winner was itself merged away meanwhile, the merge goes on to its survivor."""
        incoming = MergeIn.from_json(message.value)
        target = canonical_id(store, incoming.merge.winner)
        if target != incoming.merge.winner:
            incoming = replace(incoming, merge=replace(incoming.merge, winner=target))
        if partition_of(target, self.w.partitions) != message.partition:
            self._forward(out, MERGE_IN, target, incoming.to_json())
            return
        merged = merge_in(store, incoming, self.config)
        adopt_notes(store, target, incoming.merge.loser, incoming.loser_notes,
                    self.config.timeline_limit)
        act = RecordActivation(self, store)
        merged, emission = activate_merged(store, merged, incoming.merge.event_id,
                                           position(message.offset), act.now(),
                                           self.activation.definitions_for(store, target),
                                           self.config.timeline_limit)
        store[pkey(target)] = merged.to_json()
        if emission is not None:
            out.emissions.append(emission)


    def run_undo(self, message: Any, store: StateStore, out: Outputs) -> None:
        """Undo a merge recorded here: the loser's profile goes back to its partition, its
        identifiers back to it in the identity graph."""
        body = json.loads(message.value)
        result = undo_merge(store, body["profile_id"], body["event_id"])
        log.info("undo of merge %s on %s: %s", body["event_id"], body["profile_id"],
                 "done" if result else "nothing to undo")
        if result is None:
            return
        record, loser = result
        self._forward(out, RESTORE, loser.profile_id, loser.to_json())
        relinked = json.dumps({"winner": record.winner, "loser": record.loser,
                               "moved_keys": list(record.moved_keys)}).encode()
        out.forwards.append(Forward(self.w.identity_topic.get_topic_name(),
                                    record.loser.encode(), relinked, 0,
                                    {COMMAND_HEADER: RELINK}))


    def run_restore(self, message: Any, store: StateStore, out: Outputs) -> None:
        restore(store, Profile.from_json(message.value))


    def run_schedule(self, message: Any, store: StateStore, out: Outputs) -> None:
        """A scheduled action run by hand (scripts/schedules run): this partition's share."""
        out.emissions.extend(on_run_command(self.schedules(store), message.value,
                                            RecordActivation(self, store).now(),
                                            self.activation.definitions_in_force()))


    def run_delivery_note(self, message: Any, store: StateStore, out: Outputs) -> None:
        """A delivery outcome for a profile's timeline; dropped for a profile not here (merged
        away since, or never seen on this partition)."""
        outcome = json.loads(message.value)
        if load_profile(store, outcome["profile_id"]) is not None:
            note_delivery(store, outcome["profile_id"], outcome, self.config.timeline_limit)


    def run_erase(self, message: Any, store: StateStore, out: Outputs) -> None:
        """Forget a profile here, tell downstream services (an ``erase_profile`` command on
        every action topic), and pass the erasure on to the profiles merged into it
        (streams/core/erasure.py)."""
        body = json.loads(message.value)
        pid, request_id = body["profile_id"], body["request"]["request_id"]
        profile = load_profile(store, pid)
        ids = command_identifiers(profile.identifiers if profile is not None else {})
        merged = erase_profile(store, lambda p, n: store.scan(p, n, p), pid)
        out.emissions.append(Emission(pid, commands=erasure_commands(
            pid, request_id, ids, ACTION_CHANNELS, datetime.now(UTC))))
        for loser in merged:
            self._forward(out, ERASE, loser, json.dumps({**body, "profile_id": loser}).encode())
        log.info("erasure %s: profile erased here, %d merged into it", request_id, len(merged))



    def run_command(self, message: Any, command: bytes, store: StateStore, out: Outputs
                    ) -> None:
        if command == TICK:
            self.run_tick(message, store, out)
            return
        handler = self.commands.get(command)
        if handler is None:
            log.warning("ignored unknown command %r at %s:%d", command, message.tp, message.offset)
            return
        try:
            handler(message, store, out)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored malformed %s command at %s:%d: %s", command.decode(), message.tp,
                        message.offset, exc)


    def _redirected(self, store: StateStore, item: BatchItem, partition: int, out: Outputs
                    ) -> BatchItem | None:
        """The item for its profile's survivor if that profile was merged away here (an
        event can reach it after its merge-out when Faust redelivers records out of order
        after a seek), or None once it is forwarded to the survivor's partition."""
        target = canonical_id(store, item.profile)
        if target == item.profile:
            return item
        moved = BatchItem(item.origin, item.key, item.value, target)
        if partition_of(target, self.w.partitions) == partition:
            return moved
        out.forwards.append(Forward(self.topic, None, encode_batch([moved]),
                                    partition_of(target, self.w.partitions),
                                    {BATCH_HEADER: str(VERSION_RESOLVED).encode()}))
        return None


    def _apply(self, store: StateStore, item: BatchItem, at: int, envelope: Envelope,
               out: Outputs) -> None:
        if not item.profile:
            raise ValueError("event without a resolved profile id")
        act = RecordActivation(self, store)
        apply_resolved(store, envelope, item.profile, at, self.config, activate=act.hook)
        if act.emission is not None:
            out.emissions.append(act.emission)
        out.statuses[APPLIED] += 1


    async def run_events(self, message: Any, store: StateStore, items: list[BatchItem],
                         out: Outputs) -> None:
        """Apply a record's events in order, collecting what they emit."""
        for index, item in enumerate(items):
            if index % YIELD_EVERY == YIELD_EVERY - 1:  # let heartbeats and the API run
                await asyncio.sleep(0)
            envelope = await self.decoder.decoded(item, datetime.now(UTC), STAGE)
            try:
                if isinstance(envelope, str):
                    raise ContractViolation(envelope)
                target = self._redirected(store, item, message.partition, out)
                if target is not None:
                    self._apply(store, target, position(message.offset, index), envelope, out)
            except BrokerError:  # the state's transaction failed: the record is done again
                raise
            except Exception as exc:  # a bug must not stall the partition: park the event
                log.exception("profile stage failed on %s", item.origin)
                out.park(source_of(item), f"{type(exc).__name__}: {exc}")


    async def work(self, message: Any, store: StateStore, out: Outputs) -> None:
        command = header(message, COMMAND_HEADER)
        if command is not None:
            self.run_command(message, command, store, out)
        else:
            await self.run_events(message, store, read_items(message, out), out)
