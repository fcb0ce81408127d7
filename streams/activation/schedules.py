"""Scheduled (batch) actions: at each cron tick, an action for every profile that matches.

Run by the profile stage (agents/profiles.py), each partition over its own profiles, on
the ``tick`` commands fanned out to every partition; pure over the partition's store, so
unit tests run it on a dict (docs/schedules.md explains the whole). Key:

``s:<schedule id>``  the partition's :class:`Progress` with the schedule (JSON): the next
                     cron instant not yet handled, the runs under way, the instants done

Progress lives in the partition's store because the state write and the commands a chunk
emits commit in one transaction (tables/state.py): after a crash a chunk is done and
recorded, or neither, whichever worker owns the partition next. A run looks at most
``budget`` profiles per command; the rest waits for the next tick. Each matching profile
is governed as a journey's action is (:func:`engine.govern`), with a deterministic action
id per (schedule, tick instant, profile); decisions go onto its timeline, and a delayed
action is held in its activation state (journey id None) until its timer releases it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.activation.actions import plan_action, plan_data
from streams.activation.audiences import evaluate
from streams.activation.conditions import Condition
from streams.activation.definitions import DefinitionSet, Schedule
from streams.activation.engine import ActivationState, Governed, govern
from streams.activation.facts import Facts, facts_from_profile
from streams.activation.governance import decide, in_holdout, is_removal
from streams.activation.held import next_release
from streams.activation.model import Decision, PlannedAction
from streams.activation.runtime import (
    WAKE,
    Emission,
    Store,
    _noted,
    arm_timer,
    load_state,
    parse_timer,
    save_state,
    write_scheduled,
)
from streams.activation.schedule_cron import fingerprint, latest_tick, next_tick
from streams.core.pipeline import canonical_id
from streams.core.profile import Profile, from_micros
from streams.errors import BrokerError

log = logging.getLogger(__name__)
PROGRESS = b"s:"
PROFILE_KEYS = b"p:"
DEFAULT_BATCH = 1000  # profiles looked at per tick command, over all schedules
# With catch_up: skip, a tick handled this long after its instant still counts as on
# time: ticks come every second, but a leader change or a slow broker delays a few.
ON_TIME = timedelta(minutes=1)
KEEP_DONE = 64  # instants done, per schedule: a manual run of one of them is a no-op

# (from_key, limit, prefix) -> up to ``limit`` (key, value) pairs in key order from
# ``from_key`` while keys start with ``prefix`` (tables/state.py StateStore.scan).
ScanFrom = Callable[[bytes, int, bytes], list[tuple[bytes, bytes]]]


@dataclass(frozen=True)
class Run:
    """One tick of a schedule under way on this partition: its instant, the last profile
    done (None: none yet), and whether it was started by hand."""

    at: datetime
    cursor: str | None = None
    manual: bool = False


@dataclass(frozen=True)
class Progress:
    next: datetime  # the next cron instant not yet handled
    cron: str  # "<cron> <zone>" it was computed with: another schedule starts afresh
    runs: tuple[Run, ...] = ()
    done: tuple[datetime, ...] = ()

    def to_json(self) -> bytes:
        return json.dumps({
            "next": self.next.isoformat(), "cron": self.cron,
            "runs": [{"at": r.at.isoformat(), "cursor": r.cursor, "manual": r.manual}
                     for r in self.runs],
            "done": [d.isoformat() for d in self.done]}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Progress:
        doc = json.loads(raw)
        runs = tuple(Run(datetime.fromisoformat(r["at"]), r["cursor"], bool(r["manual"]))
                     for r in doc["runs"])
        return cls(datetime.fromisoformat(doc["next"]), str(doc["cron"]), runs,
                   tuple(datetime.fromisoformat(d) for d in doc["done"]))

    def knows(self, at: datetime) -> bool:
        return at in self.done or any(r.at == at for r in self.runs)


@dataclass(frozen=True)
class ScheduleContext:
    """What running schedules needs from the profile stage: the partition's store, its
    ordered scan, the timeline notes limit and the profiles per command."""

    store: Store
    scan: ScanFrom
    limit: int
    budget: int = DEFAULT_BATCH
    on_time: timedelta = ON_TIME


# --- progress ----------------------------------------------------------------------------

def first_seen(schedule: Schedule, now: datetime) -> Progress:
    """A schedule new to this partition starts from its next tick: no back-fill."""
    return Progress(next_tick(schedule, now), fingerprint(schedule))


def due(schedule: Schedule, progress: Progress | None, now: datetime,
        on_time: timedelta = ON_TIME) -> tuple[datetime | None, Progress]:
    """The tick instant to run at ``now`` (None: nothing due) and the progress after it.

    Ticks missed while no worker ran (downtime): with ``catch_up: once`` the latest of
    them runs, once; with ``skip`` none does (only a tick within ``on_time`` of its instant
    runs). Either way the next one handled is the first after ``now``."""
    if progress is None or progress.cron != fingerprint(schedule):
        fresh = first_seen(schedule, now)
        return None, fresh if progress is None else replace(progress, next=fresh.next,
                                                            cron=fresh.cron)
    if progress.next > now:
        return None, progress
    latest = latest_tick(schedule, now)
    if latest is None or latest < progress.next:  # cronsim's reverse and forward disagree
        latest = progress.next  # (not seen; still due and known to be a tick): run that
    moved = replace(progress, next=next_tick(schedule, now))
    if progress.knows(latest):
        return None, moved
    if schedule.catch_up == "skip" and now - latest > on_time:
        return None, moved
    return latest, register(moved, latest, manual=False) or moved


def register(progress: Progress, at: datetime, manual: bool) -> Progress | None:
    """The progress with a run of instant ``at`` added; None if it ran or runs already
    (a manual run of the same instant twice acts once)."""
    if progress.knows(at):
        return None
    runs = sorted((*progress.runs, Run(at, None, manual)), key=lambda r: r.at)
    return replace(progress, runs=tuple(runs))


def finished(progress: Progress, run: Run) -> Progress:
    done = sorted({*progress.done, run.at})[-KEEP_DONE:]
    return replace(progress, runs=tuple(r for r in progress.runs if r.at != run.at),
                   done=tuple(done))


def load_progress(store: Store, schedule_id: str) -> Progress | None:
    raw = store.get(PROGRESS + schedule_id.encode())
    return None if raw is None else Progress.from_json(raw)


def save_progress(store: Store, schedule_id: str, progress: Progress) -> None:
    store[PROGRESS + schedule_id.encode()] = progress.to_json()


# --- one profile -------------------------------------------------------------------------

def trigger_of(schedule_id: str, at: datetime) -> str:
    """What caused a scheduled action (its ``caused_by``, part of its id)."""
    return f"schedule:{schedule_id}@{at.astimezone(UTC).isoformat()}"


def target(schedule: Schedule, definitions: DefinitionSet) -> Condition | None:
    if schedule.condition is not None:
        return schedule.condition
    audience = definitions.audiences.get(schedule.audience or "")
    return None if audience is None else audience.condition


def holdout_decision(schedule: Schedule, action: PlannedAction, facts: Facts,
                     state: ActivationState, now: datetime, definitions: DefinitionSet
                     ) -> Decision | None:
    """The withheld decision for a profile in the schedule's holdout group, or None.

    Governance checks holdout for journey actions only (keyed by journey); a scheduled
    action is keyed by its schedule instead. Checked where governance would (after
    consent, suppression and caps, which still win; before quiet hours)."""
    rules = definitions.governance
    percent = rules.holdout_percent if schedule.holdout_percent is None \
        else schedule.holdout_percent
    if is_removal(action, rules) or not in_holdout(action.profile_id, f"schedule:{schedule.id}",
                                            percent, rules.holdout_salt):
        return None
    first = decide(action, facts, state.sends, rules, now, definitions.version)
    if first.outcome == "withheld":
        return None
    return first.model_copy(update={
        "outcome": "withheld", "rule": "holdout", "not_before": None,
        "reason": f"in the {percent:g}% holdout of schedule {schedule.id}"})


def governed(schedule: Schedule, state: ActivationState, action: PlannedAction, facts: Facts,
             now: datetime, definitions: DefinitionSet) -> Governed:
    held_out = holdout_decision(schedule, action, facts, state, now, definitions)
    if held_out is not None:
        return state, [held_out], []
    return govern(state, [action], facts, now, definitions)


def _rearm(store: Store, state: ActivationState, before: ActivationState) -> None:
    """A held (delayed) action: the profile's one timer at its release at the latest;
    an earlier timer it had stays (its own wake recomputes everything)."""
    if len(state.held) <= len(before.held):
        return
    wake = next_release(state.held)
    current = store.get(WAKE + state.profile_id.encode())
    if current is not None:
        armed = from_micros(parse_timer(current)[0])
        wake = armed if wake is None else min(wake, armed)
    arm_timer(store, state.profile_id, wake)


def act_on(store: Store, schedule: Schedule, at: datetime, profile: Profile, now: datetime,
           definitions: DefinitionSet, limit: int) -> Emission | None:
    """One profile in a run of ``schedule`` for instant ``at``: None if it does not match;
    else its decision (and command, if allowed), noted on its timeline; or, for an
    ``update_profile`` schedule, its write (streams/activation/writes.py)."""
    facts = facts_from_profile(profile)
    condition = target(schedule, definitions)
    if condition is None or not evaluate(condition, facts, now):
        return None
    trigger = trigger_of(schedule.id, at)
    if schedule.update_profile is not None:  # a data action: contacts nobody, not governed
        return write_scheduled(store, profile, plan_data(
            profile.profile_id, schedule.update_profile, trigger=trigger,
            schedule_id=schedule.id), now, definitions, limit)
    assert schedule.action is not None  # noqa: S101 - a schedule has one of the two
    state, last = load_state(store, profile.profile_id)
    action = plan_action(profile.profile_id, schedule.action, trigger=trigger,
                         purpose=definitions.purpose_of(schedule.action))
    new, decisions, commands = governed(schedule, state, action, facts, now, definitions)
    why = f"schedule {schedule.id} at {at.astimezone(UTC).isoformat()}: "
    emission = Emission(profile.profile_id, commands, [],
                        [d.model_copy(update={"reason": why + d.reason}).to_timeline()
                         for d in decisions])
    save_state(store, _noted(store, new, emission, limit), last)
    _rearm(store, new, state)
    return emission


# --- runs over the partition -------------------------------------------------------------

@dataclass
class _Chunk:
    budget: int
    emissions: list[Emission] = field(default_factory=list)


def _profiles(ctx: ScheduleContext, run: Run, limit: int) -> list[tuple[str, bytes]]:
    start = PROFILE_KEYS if run.cursor is None else PROFILE_KEYS + run.cursor.encode() + b"\x00"
    return [(key[len(PROFILE_KEYS):].decode(), value)
            for key, value in ctx.scan(start, limit, PROFILE_KEYS)]


def _one(ctx: ScheduleContext, schedule: Schedule, run: Run, pid: str, raw: bytes,
         now: datetime, definitions: DefinitionSet) -> Emission | None:
    if canonical_id(ctx.store, pid) != pid:  # merged away: the survivor is acted on
        return None
    try:
        return act_on(ctx.store, schedule, run.at, Profile.from_json(raw), now, definitions,
                      ctx.limit)
    except BrokerError:
        raise
    except Exception:  # one profile's bug must not stall the schedule for everyone
        log.exception("schedule %s at %s: profile %s failed; skipped", schedule.id,
                      run.at.isoformat(), pid)
        return None


def advance_run(ctx: ScheduleContext, schedule: Schedule, run: Run, now: datetime,
                definitions: DefinitionSet, chunk: _Chunk) -> Run | None:
    """The next profiles of ``run`` within the chunk's budget; the run as it stands
    after them, or None once every profile of the partition was looked at."""
    items = _profiles(ctx, run, chunk.budget)
    for pid, raw in items:
        emission = _one(ctx, schedule, run, pid, raw, now, definitions)
        if emission is not None:
            chunk.emissions.append(emission)
    chunk.budget -= len(items)
    if chunk.budget > 0:  # the scan ended before the budget did: no profile is left
        return None
    return replace(run, cursor=items[-1][0]) if items else run


def work(ctx: ScheduleContext, schedule: Schedule, progress: Progress, now: datetime,
         definitions: DefinitionSet, chunk: _Chunk) -> Progress:
    """The schedule's runs under way, oldest first, as far as the budget goes."""
    for run in progress.runs:
        if chunk.budget <= 0:
            break
        after = advance_run(ctx, schedule, run, now, definitions, chunk)
        if after is None:
            progress = finished(progress, run)
        else:
            progress = replace(progress, runs=tuple(after if r.at == run.at else r
                                                    for r in progress.runs))
    return progress


def _forget_removed(ctx: ScheduleContext, definitions: DefinitionSet) -> None:
    """Progress of schedules no longer defined goes: defined again, one starts afresh."""
    for key, _ in ctx.scan(PROGRESS, 10_000, PROGRESS):
        if key[len(PROGRESS):].decode() not in definitions.schedules:
            del ctx.store[key]


def on_tick(ctx: ScheduleContext, now: datetime, definitions: DefinitionSet | None
            ) -> list[Emission]:
    """A tick command on this partition: register the schedules' due ticks, then work on
    their runs, at most ``ctx.budget`` profiles in all."""
    if definitions is None:
        return []
    _forget_removed(ctx, definitions)
    chunk = _Chunk(ctx.budget)
    for sid, schedule in sorted(definitions.schedules.items()):
        before = load_progress(ctx.store, sid)
        _, progress = due(schedule, before, now, ctx.on_time)
        progress = work(ctx, schedule, progress, now, definitions, chunk)
        if progress != before:
            save_progress(ctx.store, sid, progress)
    return chunk.emissions


@dataclass(frozen=True)
class RunRequest:
    """A ``schedule-run`` command (scripts/schedules run): run ``schedule_id`` for
    instant ``at`` on every partition, as the cron tick of that instant would."""

    schedule_id: str
    at: datetime

    def to_json(self) -> bytes:
        return json.dumps({"schedule_id": self.schedule_id,
                           "at": self.at.astimezone(UTC).isoformat()}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> RunRequest:
        doc: dict[str, Any] = json.loads(raw)
        at = datetime.fromisoformat(str(doc["at"]))
        if at.tzinfo is None:
            raise ValueError(f"schedule-run: at {doc['at']!r} has no UTC offset")
        return cls(str(doc["schedule_id"]), at.astimezone(UTC))


def on_run_command(ctx: ScheduleContext, raw: bytes, now: datetime,
                   definitions: DefinitionSet | None) -> list[Emission]:
    """A manual run: registered unless that instant ran or runs already, then worked on
    like a tick's (the rest on the next ticks)."""
    request = RunRequest.from_json(raw)
    schedule = None if definitions is None else definitions.schedules.get(request.schedule_id)
    if definitions is None or schedule is None:
        log.warning("schedule-run: no schedule %r in the definitions in force; ignored",
                    request.schedule_id)
        return []
    before = load_progress(ctx.store, schedule.id)
    progress = register(before or first_seen(schedule, now), request.at, manual=True)
    if progress is None:
        log.info("schedule-run: %s at %s ran or runs already here; nothing to do",
                 schedule.id, request.at.isoformat())
        return []
    chunk = _Chunk(ctx.budget)
    save_progress(ctx.store, schedule.id, work(ctx, schedule, progress, now, definitions,
                                               chunk))
    return chunk.emissions

