"""Activation inside the profile stage: its state and timers in the partition's store.

Pure over the :class:`streams.core.pipeline.Store` (plus a key-ordered ``Scanner``), so
unit tests run it on a dict. Keys, next to the profile stage's own (same table, same
changelog partition, so one event's writes stay in order):

``a:<profile>``                the position of the last event applied, then ActivationState JSON
``t:<wake µs, 20 digits>:<p>`` a due-time index: the profile's one timer, scanned in order
``w:<profile>``                the profile's current ``t:`` key (re-arming deletes the old)
``n:<profile>\x00<slot>``      timeline notes: decisions, audience moves (activation/notes.py)
``c:clock``                    the manual clock (``activation_clock=manual``), µs

Data actions (streams/activation/writes.py) write the profile too: the runtime returns
it with their writes for the stage to store, or stores it itself on a timer.

(A position is an event's place in the profile stage: streams/core/batch.py.)

Nothing is lost or done twice across a crash: a record's writes, and the commands it
emits, commit in one transaction (tables/state.py), and a redelivered record is
skipped whole. Commands also carry deterministic ids, so a consumer reading
uncommitted data can deduplicate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.activation import codec
from streams.activation.definitions import DefinitionSet
from streams.activation.emission import Emission as Emission
from streams.activation.emission import emission_of
from streams.activation.engine import (
    ActivationState,
    Output,
    on_profile_event,
    on_profile_merged_away,
    on_profile_merged_in,
    on_profile_timer,
)
from streams.activation.facts import Facts, HistoryEvent, facts_from_profile
from streams.activation.model import DataAction, evolve
from streams.activation.notes import adopted, delivery_note, notes_of, write_notes
from streams.activation.touched import touched
from streams.activation.writes import Step, follow_writes
from streams.core.pipeline import pkey
from streams.core.profile import Profile, from_micros, micros
from streams.core.store import Store as Store  # the one protocol
from streams.records import Envelope

STATE, TIMER, WAKE = b"a:", b"t:", b"w:"
CLOCK_KEY = b"c:clock"


# (prefix, limit) -> up to ``limit`` (key, value) pairs whose key starts with ``prefix``,
# in key order.
Scanner = Callable[[bytes, int], list[tuple[bytes, bytes]]]


def timer_key(at: datetime, profile_id: str) -> bytes:
    return TIMER + f"{micros(at):020d}:{profile_id}".encode()


def load_state(store: Store, profile_id: str) -> tuple[ActivationState, int]:
    """The profile's activation state and the position of the last event applied."""
    return decode_state(store.get(STATE + profile_id.encode()), profile_id)


def decode_state(raw: bytes | None, profile_id: str) -> tuple[ActivationState, int]:
    """:func:`load_state` of a stored value (None: no state yet)."""
    if raw is None:
        return ActivationState.new(profile_id), -1
    return codec.decode(raw, profile_id)


def save_state(store: Store, state: ActivationState, last_offset: int) -> None:
    raw = codec.encode(state, last_offset)
    store[STATE + state.profile_id.encode()] = raw
    codec.remember(state.profile_id, raw, state, last_offset)


def arm_timer(store: Store, profile_id: str, wake_at: datetime | None) -> None:
    """The profile's one timer at ``wake_at`` (None: no timer); the previous one goes."""
    wkey = WAKE + profile_id.encode()
    old = store.get(wkey)
    new = None if wake_at is None else timer_key(wake_at, profile_id)
    if old == new:  # unchanged: every write is a changelog record, spare it
        return
    if old is not None:
        del store[old]
    if new is None:
        if old is not None:
            del store[wkey]
        return
    store[new] = b""
    store[wkey] = new


def drop_timer(store: Store, tkey: bytes, profile_id: str) -> None:
    """Remove timer ``tkey`` and, if it is the profile's current one, the ``w:`` pointer
    to it (a pointer left dangling would make the next equal re-arm a no-op)."""
    if store.get(tkey) is not None:
        del store[tkey]
    wkey = WAKE + profile_id.encode()
    if store.get(wkey) == tkey:
        del store[wkey]


def activation_view(store: Store, profile_id: str) -> dict[str, Any]:
    """What the profile API shows: memberships, journey enrollments, held actions, the
    next timer."""
    state, last = load_state(store, profile_id)
    wake = store.get(WAKE + profile_id.encode())
    return {
        "profile_id": profile_id,
        "audiences": state.memberships,
        "journeys": {jid: e.model_dump(mode="json") for jid, e in state.journeys.active.items()},
        "last_exits": {j: t.isoformat() for j, t in state.journeys.last_exit.items()},
        "held": [{"action_id": h.action.action_id, "channel": h.action.channel,
                  "action_type": h.action.action_type, "journey_id": h.action.journey_id,
                  "step_id": h.action.step_id, "decision_id": h.decision_id,
                  "not_before": h.not_before.isoformat()} for h in state.held],
        "next_timer": None if wake is None else from_micros(parse_timer(wake)[0]).isoformat(),
        "definitions_version": state.evaluated_version,
    }


def clock_now(store: Store, manual: bool, wall: datetime) -> datetime:
    """Activation's "now": the wall clock, or the manual clock once a tick has set it."""
    raw = store.get(CLOCK_KEY) if manual else None
    return wall if raw is None else from_micros(int(raw))


def set_clock(store: Store, at: datetime) -> None:
    store[CLOCK_KEY] = str(micros(at)).encode()


def history_event(envelope: Envelope, profile: Profile, facts: Facts) -> HistoryEvent:
    """The event just applied, with its properties as the timeline keeps them."""
    newest = facts.events[0] if facts.events else None
    if newest is not None and newest.event_id == envelope.event_id:  # in front: not late
        props = dict(newest.properties)
    else:
        entry = next((e for e in profile.timeline if e["event_id"] == envelope.event_id),
                     None)
        props = dict(entry.get("properties") or {}) if entry else dict(envelope.properties)
    return HistoryEvent(envelope.event_id, envelope.event_name, envelope.event_time, props)


def activate_event(store: Store, before: Profile | None, profile: Profile, envelope: Envelope,
                   offset: int, now: datetime, definitions: DefinitionSet | None, limit: int
                   ) -> tuple[Profile, Emission | None]:
    """Run activation for an event just applied to ``profile`` (not yet stored; ``before``
    is the stored one, None if new).

    Returns the profile with its timeline notes, and the emission to publish (None when
    there are no definitions or nothing happened); its decisions and audience moves
    are on the profile's timeline, which is what explains them later.
    """
    if definitions is None:
        return profile, None
    raw = store.get(STATE + profile.profile_id.encode())
    state, _ = decode_state(raw, profile.profile_id)
    # A new profile with no activation state yet: only the audiences its first event
    # touched need evaluating (the others answer as for an empty profile).
    fresh = before is None and raw is None
    changed = touched(Profile(profile.profile_id) if fresh else before, profile)
    facts = facts_from_profile(profile)
    new, out = on_profile_event(state, facts, history_event(envelope, profile, facts), now,
                                definitions, changed, fresh)
    emission = emission_of(state, new, out, facts, envelope.event_id, now, definitions.version)
    step = follow_writes(Step(profile, new, out, emission), now, definitions, limit)
    return _settle(store, state, step, offset, limit)


def _noted(store: Store, state: ActivationState, emission: Emission, limit: int
           ) -> ActivationState:
    """The emission's decisions, audience moves and experiment assignments as the
    profile's timeline notes (streams/activation/notes.py, one slot per record); the state
    with its count of noted records. (Data actions are on the timeline as the events they are.)"""
    notes = notes_of(state.profile_id, emission.decisions, emission.changes,
                     emission.assignments)
    if not notes:
        return state
    written = write_notes(store, state.profile_id, state.notes_written, notes, limit)
    return evolve(state, notes_written=written)


def _settle(store: Store, state: ActivationState, step: Step, offset: int, limit: int
            ) -> tuple[Profile, Emission | None]:
    """Store an activation step's outcome: notes, state (when changed) and timer; the
    profile (with the data actions' writes) is the caller's to store."""
    new = _noted(store, step.state, step.emission, limit)
    # A note written changes the state: no need to compare the rest of it (deeply).
    if new.notes_written != state.notes_written or new != state:
        save_state(store, new, offset)
    arm_timer(store, step.profile.profile_id, step.out.wake_at)
    return step.profile, (None if step.emission.is_empty() else step.emission)


def retire_merged(store: Store, loser: Profile, cause: str, now: datetime,
                  definitions: DefinitionSet | None, limit: int
                  ) -> tuple[Profile, Emission | None]:
    """A profile merged away by event ``cause``: it leaves its audiences and journeys
    (with their clean-up), so nothing keeps acting under an id that is gone. Its notes
    say so (they go with the merge into the survivor's: :func:`adopt_notes`)."""
    state, last = load_state(store, loser.profile_id)
    if definitions is None or not (state.memberships or state.journeys.active):
        arm_timer(store, loser.profile_id, None)
        return loser, None
    facts = facts_from_profile(loser)
    new, result = on_profile_merged_away(state, facts, now, definitions, cause)
    emission = emission_of(state, new, result, facts, cause, now, definitions.version)
    save_state(store, _noted(store, new, emission, limit), last)
    arm_timer(store, loser.profile_id, None)
    return loser, (None if emission.is_empty() else emission)


def write_scheduled(store: Store, profile: Profile, action: DataAction, now: datetime,
                    definitions: DefinitionSet, limit: int) -> Emission | None:
    """A schedule's data action on one profile: written (the profile stored), then
    activation as on an event; None if it was written already."""
    pid = profile.profile_id
    state, last = load_state(store, pid)
    step = follow_writes(Step(profile, state, Output(data=[action]), Emission(pid)), now,
                         definitions, limit)
    if step.profile is profile:
        return None
    store[pkey(pid)] = step.profile.to_json()
    save_state(store, _noted(store, step.state, step.emission, limit), last)
    arm_timer(store, pid, step.out.wake_at)
    return step.emission


def adopt_notes(store: Store, profile_id: str, loser: str, notes: list[dict[str, Any]],
                limit: int) -> None:
    """A merged-away profile's notes join the survivor's (on the survivor's partition)."""
    if not notes:
        return
    state, last = load_state(store, profile_id)
    written = write_notes(store, profile_id, state.notes_written, adopted(notes, loser), limit)
    save_state(store, evolve(state, notes_written=written), last)


def note_delivery(store: Store, profile_id: str, outcome: dict[str, Any], limit: int) -> None:
    """A delivery outcome on the profile's timeline (the executor sends it as a
    ``delivery-note`` command, streams/delivery/executor.py)."""
    state, last = load_state(store, profile_id)
    written = write_notes(store, profile_id, state.notes_written, [delivery_note(outcome)],
                          limit)
    save_state(store, evolve(state, notes_written=written), last)


def activate_merged(store: Store, profile: Profile, cause: str, offset: int, now: datetime,
                    definitions: DefinitionSet | None, limit: int
                    ) -> tuple[Profile, Emission | None]:
    """The survivor of a merge (``profile``, merged, not yet stored), evaluated again."""
    if definitions is None:
        return profile, None
    state, _ = load_state(store, profile.profile_id)
    facts = facts_from_profile(profile)
    new, out = on_profile_merged_in(state, facts, now, definitions, cause)
    emission = emission_of(state, new, out, facts, cause, now, definitions.version)
    step = follow_writes(Step(profile, new, out, emission), now, definitions, limit)
    return _settle(store, state, step, offset, limit)


def parse_timer(key: bytes) -> tuple[int, str]:
    wake, _, pid = key[len(TIMER):].decode().partition(":")
    return int(wake), pid


def due_timers(items: Iterable[tuple[bytes, bytes]], now: datetime) -> list[tuple[bytes, str]]:
    """(timer key, profile id) of the timers due at ``now``, from an ordered ``t:`` scan."""
    due: list[tuple[bytes, str]] = []
    limit_us = micros(now)
    for key, _ in items:
        if not key.startswith(TIMER):
            break
        wake_us, pid = parse_timer(key)
        if wake_us > limit_us:
            break
        due.append((key, pid))
    return due


@dataclass(frozen=True)
class TimerContext:
    """What a timer check needs from the profile stage (its own store helpers)."""

    load_profile: Callable[[str], Profile | None]
    canonical: Callable[[str], str]
    limit: int


def fire_timer(store: Store, tkey: bytes, pid: str, offset: int, now: datetime,
               definitions: DefinitionSet | None, ctx: TimerContext) -> Emission | None:
    """One due timer: the notes, the state and the next timer of its profile."""
    profile = ctx.load_profile(pid)
    if definitions is None or profile is None or ctx.canonical(pid) != pid:
        # merged away (the surviving profile keeps its own timer) or gone: drop it
        drop_timer(store, tkey, pid)
        return None
    state, last = load_state(store, pid)
    facts = facts_from_profile(profile)
    new, out = on_profile_timer(state, facts, now, definitions)
    emission = emission_of(state, new, out, facts, f"timer:{now.astimezone(UTC).isoformat()}",
                           now, definitions.version)
    step = follow_writes(Step(profile, new, out, emission), now, definitions, ctx.limit)
    if step.profile is not profile:  # data actions wrote it
        store[pkey(pid)] = step.profile.to_json()
    save_state(store, _noted(store, step.state, step.emission, ctx.limit), last)
    arm_timer(store, pid, step.out.wake_at)
    if store.get(tkey) is not None and store.get(WAKE + pid.encode()) != tkey:
        del store[tkey]  # a timer left over from before the w: index existed
    return step.emission
