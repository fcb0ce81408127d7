"""Scheduled (batch) actions over dict stores: the real module (streams/activation/
schedules.py) on profiles built by the real profile stage, with an injected clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from streams.activation.actions import action_id_for
from streams.activation.definitions import (
    DefinitionError,
    DefinitionSet,
    from_snapshot,
    load_definitions,
    snapshot,
)
from streams.activation.notes import read_notes
from streams.activation.runtime import (
    TIMER,
    WAKE,
    Emission,
    TimerContext,
    due_timers,
    fire_timer,
    load_state,
)
from streams.activation.schedule_cron import latest_tick, next_tick
from streams.activation.schedule_preview import Preview
from streams.activation.schedules import (
    Progress,
    RunRequest,
    ScheduleContext,
    due,
    load_progress,
    on_run_command,
    on_tick,
    trigger_of,
)
from streams.core.identity import new_profile_id
from streams.core.pipeline import StageConfig, canonical_id, load_profile
from streams.core.sandbox import DictStore
from streams.core.sandbox import Sandbox as Stages
from streams.records import Envelope, Identifiers

BERLIN = ZoneInfo("Europe/Berlin")
CFG = StageConfig(timedelta(days=7), timedelta(seconds=5), 100)
MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=BERLIN)  # a Monday, CET (08:00 UTC)
AUDIENCE = "condition: {trait: plan, op: eq, value: pro}\n"
GOVERNANCE = """
default_timezone: Europe/Berlin
quiet_hours: {start: "21:00", end: "08:00", channels: [email]}
holdout_percent: 0
"""
SCHEDULE = """
cron: "0 9 * * 1"
timezone: Europe/Berlin
audience: pro
action: {channel: email, action_type: send_email, payload: {template_id: weekly}}
"""
Defs = Callable[[dict[str, str]], Path]


def definitions_with(tmp_definitions: Defs, schedule: str = SCHEDULE, **extra: str
                     ) -> DefinitionSet:
    files = {"audiences/pro.yaml": AUDIENCE, "governance.yaml": GOVERNANCE,
             "schedules/weekly.yaml": schedule}
    files.update({f"schedules/{name}.yaml": text for name, text in extra.items()})
    return load_definitions(tmp_definitions(files))


def scan_of(store: DictStore) -> Callable[[bytes, int, bytes], list[tuple[bytes, bytes]]]:
    """StateStore.scan's contract on a dict: key order from ``from_key``, within prefix."""
    def scan(from_key: bytes, limit: int, prefix: bytes) -> list[tuple[bytes, bytes]]:
        return [(k, store[k]) for k in sorted(k for k in store
                                              if k >= from_key and k.startswith(prefix))][:limit]
    return scan


class Partition:
    """One profile partition: profiles made by the real stages, schedules run on it."""

    def __init__(self, definitions: DefinitionSet, budget: int = 1000) -> None:
        self.definitions = definitions
        self.stages = Stages(CFG, 1, definitions)
        self.store = self.stages.parts[0]
        self.ctx = ScheduleContext(self.store, scan_of(self.store), CFG.timeline_limit, budget)

    def customer(self, cust: str, at: datetime, *, plan: str = "pro", email: str = "GRANTED",
                 timezone: str = "Europe/Berlin") -> str:
        def env(suffix: str, name: str, properties: dict[str, str],
                payload: dict[str, str] | None = None) -> Envelope:
            return Envelope(event_id=f"{cust}-{suffix}", event_name=name, event_time=at,
                            received_time=at, source="test",
                            identifiers=Identifiers(customer_id=cust),
                            properties=dict(properties), payload=payload)

        self.stages.send(env("id", "identify", {"plan": plan, "timezone": timezone}), at)
        self.stages.send(env("c", "consent_updated", {}, {
            "consent_type": "marketing:email", "status": email}), at)
        return new_profile_id(f"cid:{cust}")

    def tick(self, at: datetime) -> list[Emission]:
        return on_tick(self.ctx, at.astimezone(UTC), self.definitions)

    def notes(self, pid: str) -> list[dict[str, object]]:
        return read_notes(self.store.scan, pid, CFG.timeline_limit)


def acted(emissions: list[Emission]) -> list[tuple[str, str]]:
    return [(e.profile_id, d["outcome"]) for e in emissions for d in e.decisions]


@pytest.fixture
def defs(tmp_definitions: Defs) -> DefinitionSet:
    return definitions_with(tmp_definitions)


# --- cron ----------------------------------------------------------------------------------

def test_cron_is_read_in_the_schedule_zone_across_dst(defs: DefinitionSet) -> None:
    weekly = defs.schedules["weekly"]
    # 09:00 Berlin is 08:00 UTC in winter and 07:00 UTC in summer (DST from 29 March).
    assert next_tick(weekly, datetime(2026, 3, 24, tzinfo=UTC)) == datetime(
        2026, 3, 30, 7, 0, tzinfo=UTC)
    assert next_tick(weekly, datetime(2026, 3, 20, tzinfo=UTC)) == datetime(
        2026, 3, 23, 8, 0, tzinfo=UTC)
    assert latest_tick(weekly, datetime(2026, 3, 30, 7, 0, tzinfo=UTC)) == datetime(
        2026, 3, 30, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("start", [datetime(2026, 3, 27, tzinfo=UTC),
                                   datetime(2026, 10, 23, tzinfo=UTC)])
def test_a_nightly_tick_runs_once_a_night_through_a_dst_change(
        tmp_definitions: Defs, start: datetime) -> None:
    """02:30 does not exist on the spring night and exists twice on the autumn one: the
    schedule runs exactly once every local night either way (ticks every 5 minutes)."""
    nightly = definitions_with(tmp_definitions, SCHEDULE.replace("0 9 * * 1", "30 2 * * *")
                               ).schedules["weekly"]
    progress: Progress | None = None
    runs: list[datetime] = []
    for step in range(0, 4 * 24 * 12):
        at, progress = due(nightly, progress, start + timedelta(minutes=5 * step))
        runs += [at] if at is not None else []
    assert len(runs) == 4  # four nights, one run each
    assert len({r.astimezone(BERLIN).date() for r in runs}) == 4
    if start.month == 3:  # 02:30 does not exist on 29 March: 03:00 CEST (01:00 UTC)
        assert runs[2] == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    else:  # 02:30 comes twice on 25 October: the first (CEST, 00:30 UTC) only
        assert runs[2] == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


# --- once per tick, no back-fill, catch-up --------------------------------------------------

def test_a_new_schedule_starts_from_its_next_tick(defs: DefinitionSet) -> None:
    part = Partition(defs)
    ann = part.customer("ann", MONDAY_9 - timedelta(days=1))
    part.customer("bob", MONDAY_9 - timedelta(days=1), plan="basic")
    assert part.tick(MONDAY_9 + timedelta(minutes=5)) == []  # first seen after 09:00
    progress = load_progress(part.store, "weekly")
    assert progress is not None and progress.next == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    assert acted(part.tick(MONDAY_9 + timedelta(days=7, seconds=1))) == [(ann, "sent")]


def test_a_due_tick_runs_once_even_when_ticked_again(defs: DefinitionSet) -> None:
    part = Partition(defs)
    ann = part.customer("ann", MONDAY_9 - timedelta(days=1))
    part.customer("bob", MONDAY_9 - timedelta(days=1), plan="basic")
    part.tick(MONDAY_9 - timedelta(hours=1))  # first seen: next is 09:00 today
    first = part.tick(MONDAY_9 + timedelta(seconds=1))
    assert acted(first) == [(ann, "sent")]
    assert [c["action_type"] for e in first for c in e.commands] == ["send_email"]
    for later in (2, 30, 3600):  # the same tick, ticked again: nothing more
        assert part.tick(MONDAY_9 + timedelta(seconds=later)) == []
    again = part.tick(MONDAY_9 + timedelta(days=7, seconds=1))  # the next tick: its own id
    assert acted(again) == [(ann, "sent")]
    assert again[0].commands[0]["action_id"] != first[0].commands[0]["action_id"]


@pytest.mark.parametrize(("policy", "runs"), [("once", 1), ("skip", 0)])
def test_missed_ticks_run_once_or_are_skipped(tmp_definitions: Defs, policy: str,
                                              runs: int) -> None:
    daily = SCHEDULE.replace("0 9 * * 1", "0 9 * * *") + f"catch_up: {policy}\n"
    part = Partition(definitions_with(tmp_definitions, daily))
    ann = part.customer("ann", MONDAY_9 - timedelta(days=1))
    part.tick(MONDAY_9 - timedelta(hours=1))
    # Down from Monday 08:00 to Thursday 12:00: Monday's, Tuesday's, Wednesday's and
    # Thursday's 09:00 ticks were missed.
    recovered = MONDAY_9 + timedelta(days=3, hours=3)
    emitted = part.tick(recovered)
    assert acted(emitted) == [(ann, "sent")] * runs
    if runs:  # the latest missed tick, not every one of them
        latest = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
        assert emitted[0].commands[0]["caused_by_event_id"] == trigger_of("weekly", latest)
    progress = load_progress(part.store, "weekly")
    assert progress is not None and progress.next == datetime(2026, 3, 6, 8, 0, tzinfo=UTC)
    on_time = part.tick(progress.next + timedelta(seconds=2))  # the next one runs either way
    assert [pid for pid, _ in acted(on_time)] == [ann]


# --- chunks, ids, crashes ------------------------------------------------------------------

def test_a_run_goes_over_the_partition_in_chunks_and_acts_once_per_profile(
        defs: DefinitionSet) -> None:
    part = Partition(defs, budget=2)
    pids = {part.customer(f"c{n}", MONDAY_9 - timedelta(days=1)) for n in range(5)}
    part.tick(MONDAY_9 - timedelta(hours=1))
    chunks = [part.tick(MONDAY_9 + timedelta(seconds=s)) for s in range(1, 6)]
    assert [len(c) for c in chunks] == [2, 2, 1, 0, 0]
    ids = [c["action_id"] for chunk in chunks for e in chunk for c in e.commands]
    assert len(ids) == len(set(ids)) == 5
    assert {e.profile_id for chunk in chunks for e in chunk} == pids
    trigger = trigger_of("weekly", MONDAY_9)
    assert sorted(ids) == sorted(action_id_for(p, None, None, None, trigger, "send_email")
                                 for p in pids)
    progress = load_progress(part.store, "weekly")
    assert progress is not None and progress.runs == () and MONDAY_9 in progress.done


def test_a_chunk_done_again_after_a_crash_gives_the_same_ids(defs: DefinitionSet) -> None:
    """A crash aborts the chunk's transaction: its state writes and commands vanish
    together (tables/state.py). Done again, the chunk emits the same commands."""
    part = Partition(defs, budget=2)
    for n in range(3):
        part.customer(f"c{n}", MONDAY_9 - timedelta(days=1))
    part.tick(MONDAY_9 - timedelta(hours=1))
    committed = DictStore(part.store)
    lost = part.tick(MONDAY_9 + timedelta(seconds=1))
    part.store.clear()
    part.store.update(committed)  # the aborted transaction's writes are gone
    again = part.tick(MONDAY_9 + timedelta(seconds=3))
    assert [c["action_id"] for e in again for c in e.commands] == [
        c["action_id"] for e in lost for c in e.commands]
    rest = part.tick(MONDAY_9 + timedelta(seconds=4))
    assert len(rest) == 1 and rest[0].profile_id not in {e.profile_id for e in again}


def test_a_manual_run_of_an_instant_acts_once(defs: DefinitionSet) -> None:
    part = Partition(defs)
    ann = part.customer("ann", MONDAY_9 - timedelta(days=1))
    at = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
    request = RunRequest("weekly", at).to_json()
    now = at + timedelta(minutes=1)
    first = on_run_command(part.ctx, request, now, defs)
    assert acted(first) == [(ann, "sent")]
    assert on_run_command(part.ctx, request, now + timedelta(minutes=1), defs) == []
    # A manual run does not make the schedule back-fill: the next tick is next Monday's.
    progress = load_progress(part.store, "weekly")
    assert progress is not None and progress.next == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    assert on_run_command(part.ctx, RunRequest("nope", at).to_json(), now, defs) == []


def test_a_merged_away_profile_is_not_acted_on(defs: DefinitionSet) -> None:
    part = Partition(defs)
    ann = part.customer("ann", MONDAY_9 - timedelta(days=1))
    bob = part.customer("bob", MONDAY_9 - timedelta(days=1))
    loser = max(ann, bob)
    part.store[b"r:" + loser.encode()] = min(ann, bob).encode()
    assert canonical_id(part.store, loser) != loser
    part.tick(MONDAY_9 - timedelta(hours=1))
    assert [pid for pid, _ in acted(part.tick(MONDAY_9 + timedelta(seconds=1)))] == [
        min(ann, bob)]


# --- governance ----------------------------------------------------------------------------

def test_without_consent_the_action_is_withheld_and_the_timeline_says_why(
        defs: DefinitionSet) -> None:
    part = Partition(defs)
    pid = part.customer("ann", MONDAY_9 - timedelta(days=1), email="DENIED")
    part.tick(MONDAY_9 - timedelta(hours=1))
    emitted = part.tick(MONDAY_9 + timedelta(seconds=1))
    assert acted(emitted) == [(pid, "withheld")] and not emitted[0].commands
    notes = [n for n in part.notes(pid) if n["event_name"] == "decision.withheld"]
    detail = notes[0]["detail"]
    assert isinstance(detail, dict) and detail["rule"] == "consent"
    assert str(detail["reason"]).startswith("schedule weekly at 2026-03-02T08:00:00+00:00: ")


def test_in_quiet_hours_the_action_is_held_and_released_by_the_timer(
        defs: DefinitionSet) -> None:
    part = Partition(defs)
    # 09:00 in Berlin is 03:00 in New York: quiet hours there until 08:00 (13:00 UTC).
    pid = part.customer("ann", MONDAY_9 - timedelta(days=1), timezone="America/New_York")
    part.tick(MONDAY_9 - timedelta(hours=1))
    emitted = part.tick(MONDAY_9 + timedelta(seconds=1))
    assert acted(emitted) == [(pid, "delayed")] and not emitted[0].commands
    state, _ = load_state(part.store, pid)
    assert [(h.action.journey_id, h.not_before) for h in state.held] == [
        (None, datetime(2026, 3, 2, 13, 0, tzinfo=UTC))]
    assert part.store.get(WAKE + pid.encode()) is not None
    release = datetime(2026, 3, 2, 13, 0, 1, tzinfo=UTC)
    ctx = TimerContext(lambda p: load_profile(part.store, p),
                       lambda p: canonical_id(part.store, p), CFG.timeline_limit)
    fired = [fire_timer(part.store, key, p, 99, release, defs, ctx)
             for key, p in due_timers(part.store.scan(TIMER, 10), release)]
    commands = [c for e in fired if e is not None for c in e.commands]
    assert [(c["action_type"], c["caused_by_event_id"]) for c in commands] == [
        ("send_email", trigger_of("weekly", MONDAY_9))]
    assert load_state(part.store, pid)[0].held == []


def test_the_schedule_holdout_withholds_but_consent_is_said_first(
        tmp_definitions: Defs) -> None:
    part = Partition(definitions_with(tmp_definitions, SCHEDULE + "holdout_percent: 100\n"))
    ann = part.customer("ann", MONDAY_9 - timedelta(days=1))
    bob = part.customer("bob", MONDAY_9 - timedelta(days=1), email="DENIED")
    part.tick(MONDAY_9 - timedelta(hours=1))
    emitted = part.tick(MONDAY_9 + timedelta(seconds=1))
    rules = {e.profile_id: e.decisions[0]["rule"] for e in emitted}
    assert rules == {ann: "holdout", bob: "consent"}
    assert not [c for e in emitted for c in e.commands]


# --- dry run, definitions --------------------------------------------------------------------

def test_a_dry_run_counts_who_would_be_affected_from_changelog_records(
        defs: DefinitionSet) -> None:
    part = Partition(defs)
    ann = part.customer("ann", MONDAY_9 - timedelta(days=1))
    bob = part.customer("bob", MONDAY_9 - timedelta(days=1), email="DENIED")
    part.customer("cid", MONDAY_9 - timedelta(days=1), plan="basic")
    preview = Preview(defs.schedules["weekly"], defs, MONDAY_9.astimezone(UTC))
    for key, value in sorted(part.store.items()):  # the changelog's records
        preview.add(key, value)
    summary = preview.summary()
    assert (summary["profiles"], summary["matched"]) == (3, 2)
    assert summary["outcomes"] == {"sent:allowed": 1, "withheld:consent": 1}
    assert {r["profile_id"] for r in summary["first"]} == {ann, bob}
    preview.add(b"p:" + bob.encode(), None)  # a tombstone: the profile is gone
    assert preview.summary()["matched"] == 1
    assert part.tick(MONDAY_9) == []  # a preview writes nothing


def test_schedules_are_validated_with_file_and_path(tmp_definitions: Defs) -> None:
    bad = {"unknown audience": (SCHEDULE.replace("audience: pro", "audience: gone"),
                                "schedules/weekly.yaml: audience: unknown audience 'gone'"),
           "bad cron": (SCHEDULE.replace("0 9 * * 1", "0 25 * * 1"),
                        "schedules/weekly.yaml: cron: invalid cron expression"),
           "zone": (SCHEDULE.replace("Europe/Berlin", "Mars/Olympus"),
                    "schedules/weekly.yaml: timezone: unknown IANA time zone"),
           "both": (SCHEDULE + "condition: {trait: plan, op: eq, value: pro}\n",
                    "schedules/weekly.yaml: (top level): give exactly one of audience")}
    for text, message in bad.values():
        with pytest.raises(DefinitionError, match=message.replace("(", r"\(").replace(
                ")", r"\)")):
            definitions_with(tmp_definitions, text)


def test_schedules_travel_in_the_snapshot_and_are_absent_when_none(
        defs: DefinitionSet, tmp_definitions: Defs) -> None:
    assert from_snapshot(snapshot(defs)) == defs
    without = load_definitions(tmp_definitions({"audiences/pro.yaml": AUDIENCE}))
    assert b'"schedules"' not in snapshot(without)


def test_progress_of_a_removed_schedule_goes(defs: DefinitionSet) -> None:
    part = Partition(defs)
    part.tick(MONDAY_9)
    assert load_progress(part.store, "weekly") is not None
    part.definitions = defs.model_copy(update={"schedules": {}})
    part.tick(MONDAY_9 + timedelta(seconds=1))
    assert load_progress(part.store, "weekly") is None
