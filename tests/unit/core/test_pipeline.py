"""The profile stage over a dict store: dedup, merges, replay after a crash."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from streams.core.identity import new_profile_id
from streams.core.pipeline import (
    APPLIED,
    DUPLICATE,
    REPLAYED,
    StageConfig,
    canonical_id,
    expired_markers,
    load_profile,
    merge_history,
    process_event,
)
from streams.core.profile import Profile, to_api
from streams.core.unmerge import undo_merge
from streams.records import Envelope
from tests.unit.core.conftest import T0, DictStore


class CrashingStore(DictStore):
    """Accepts ``budget`` writes, then raises: a worker killed in the middle of an event."""

    def __init__(self, base: DictStore, budget: int) -> None:
        super().__init__(base)
        self.budget = budget

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if self.budget <= 0:
            raise SystemExit("killed")
        self.budget -= 1
        super().__setitem__(key, value)


def profile_of(store: DictStore, customer: str) -> Profile:
    pid = store[f"i:cid:{customer}".encode()].decode()
    found = load_profile(store, canonical_id(store, pid))
    assert found is not None
    return found


def test_duplicates_are_dropped_within_window(
    store: DictStore, cfg: StageConfig, event: Callable[..., Envelope]
) -> None:
    ev = event("e1", "purchase_completed", 0)
    assert process_event(store, ev, 0, T0, cfg).status == APPLIED
    assert process_event(store, ev, 7, T0 + timedelta(days=6), cfg).status == DUPLICATE
    assert profile_of(store, "c1").order_count == 1
    # after the window the same id is a new event again
    assert process_event(store, ev, 0, T0, cfg).status == REPLAYED  # same record redelivered
    ingest = "events.ingest:1:5"
    assert process_event(store, ev, 11, T0, cfg, origin=ingest).status == DUPLICATE
    # that duplicate's record forwarded again: dropped, but not counted a second time
    assert process_event(store, ev, 14, T0, cfg, origin=ingest).status == REPLAYED
    other = event("e2", "page_viewed", 0)
    process_event(store, other, 12, T0, cfg, origin=ingest)
    # forwarded twice by the screening stage (its offsets were not committed): a replay
    assert process_event(store, other, 13, T0, cfg, origin=ingest).status == REPLAYED
    assert process_event(store, ev, 9, T0 + timedelta(days=8), cfg).status == APPLIED
    assert profile_of(store, "c1").order_count == 2


def test_event_linking_two_profiles_merges_them(
    store: DictStore, cfg: StageConfig, event: Callable[..., Envelope]
) -> None:
    process_event(store, event("a", "purchase_completed", 1, value="1"), 0, T0, cfg)
    process_event(store, event("b", "purchase_completed", 2, value="2", customer=None,
                               anon="x"), 1, T0, cfg)
    out = process_event(store, event("c", "page_viewed", 3, anon="x"), 2, T0, cfg)
    assert len(out.merged) == 1
    winner = load_profile(store, out.profile_id)
    assert winner is not None and winner.order_count == 2
    assert [e["event_id"] for e in winner.timeline] == ["c", "b", "a"]
    assert canonical_id(store, out.merged[0]) == out.profile_id
    history = merge_history(store, out.profile_id)
    assert [(h.event_id, h.loser) for h in history] == [("c", out.merged[0])]
    moved = {"anon:x"} if out.merged[0] == new_profile_id("anon:x") else {"cid:c1"}
    assert set(history[0].moved_keys) == moved
    # later events by either identifier land on the winner
    process_event(store, event("d", "page_viewed", 4, customer=None, anon="x"), 3, T0, cfg)
    assert profile_of(store, "c1").timeline[0]["event_id"] == "d"


def replay_with_crash(events: list[Envelope], crash_at: int, budget: int,
                      cfg: StageConfig) -> DictStore:
    """Process, crash mid-event ``crash_at`` after ``budget`` writes, replay from 0."""
    store = CrashingStore(DictStore(), 10_000)
    for offset, ev in enumerate(events[:crash_at]):
        process_event(store, ev, offset, T0, cfg)
    store.budget = budget
    try:
        process_event(store, events[crash_at], crash_at, T0, cfg)
    except SystemExit:
        pass
    store.budget = 10_000
    for offset, ev in enumerate(events):  # at-least-once: everything again
        process_event(store, ev, offset, T0, cfg)
    return store


def test_replay_after_crash_at_any_write_gives_the_same_state(
    cfg: StageConfig, event: Callable[..., Envelope]
) -> None:
    events = [event("a", "purchase_completed", 1, value="1"),
              event("b", "purchase_completed", 2, value="2", customer=None, anon="x"),
              event("c", "purchase_completed", 3, value="4", anon="x"),
              event("d", "consent_updated", 4, status="DENIED", anon="x")]
    clean = DictStore()
    for offset, ev in enumerate(events):
        process_event(clean, ev, offset, T0, cfg)
    for crash_at in range(len(events)):
        for budget in range(6):
            crashed = replay_with_crash(events, crash_at, budget, cfg)
            assert profile_of(crashed, "c1") == profile_of(clean, "c1"), (crash_at, budget)
            assert profile_of(crashed, "c1").order_count == 3
            pid = canonical_id(crashed, profile_of(crashed, "c1").profile_id)
            assert merge_history(crashed, pid) == merge_history(clean, pid)


class RecordingStore(DictStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes.append(key)
        super().__setitem__(key, value)


def test_replay_rewrites_state_for_the_changelog(
    cfg: StageConfig, event: Callable[..., Envelope]
) -> None:
    store = RecordingStore()
    ev = event("e1", "purchase_completed", 0, anon="a1")
    process_event(store, ev, 0, T0, cfg)
    before, first = dict(store), list(store.writes)
    store.writes.clear()
    assert process_event(store, ev, 0, T0, cfg).status == REPLAYED
    assert set(store.writes) == set(first) and dict(store) == before
    store.writes.clear()
    assert process_event(store, ev, 5, T0, cfg).status == DUPLICATE
    assert store.writes == []
    # with its ingestion record named, only the marker changes (noting that record)
    assert process_event(store, ev, 6, T0, cfg, origin="events.ingest:0:6").status == DUPLICATE
    assert store.writes == [b"d:e1"]


def test_sweep_finds_expired_markers_in_chunks(
    store: DictStore, cfg: StageConfig, event: Callable[..., Envelope]
) -> None:
    for i in range(5):
        process_event(store, event(f"e{i}", at_s=i), i, T0 + timedelta(days=i), cfg)
    items = sorted(store.items())
    start = [kv for kv in items if kv[0] >= b"d:"]
    now = T0 + timedelta(days=9, hours=1)  # e0, e1, e2 (days 0-2) are older than 7 days
    expired, cursor = expired_markers(start, now, cfg.dedup_window, limit=2)
    assert expired == [b"d:e0", b"d:e1"] and cursor is not None
    rest = [kv for kv in items if kv[0] >= cursor]
    assert expired_markers(rest, now, cfg.dedup_window, limit=100) == ([b"d:e2"], None)


def test_undo_merge_gives_the_loser_back(
    store: DictStore, cfg: StageConfig, event: Callable[..., Envelope]
) -> None:
    cid_events = [event("a", "purchase_completed", 1, value="1"),
                  event("k", "consent_updated", 50, status="DENIED")]
    anon_events = [event("b", "purchase_completed", 2, value="2", customer=None, anon="x"),
                   event("k2", "consent_updated", 60, status="GRANTED", customer=None,
                         anon="x")]
    for offset, ev in enumerate(cid_events + anon_events):
        process_event(store, ev, offset, T0, cfg)
    alone = {pid: load_profile(store, pid) for pid in
             (new_profile_id("cid:c1"), new_profile_id("anon:x"))}
    out = process_event(store, event("link", "page_viewed", 70, anon="x"), 9, T0, cfg)
    winner_id, loser_id = out.profile_id, out.merged[0]
    merged = load_profile(store, winner_id)
    assert merged is not None and merged.order_count == 2

    record = undo_merge(store, winner_id, "link")
    assert record is not None and record.loser == loser_id
    winner, loser = load_profile(store, winner_id), load_profile(store, loser_id)
    assert winner is not None and loser is not None
    assert replace(loser, last_offset=0) == replace(alone[loser_id], last_offset=0)  # type: ignore[arg-type]
    assert winner.order_count == 1 and merge_history(store, winner_id) == []
    assert canonical_id(store, loser_id) == loser_id
    assert [e["event_id"] for e in winner.timeline][0] == "link"  # came after: stays
    assert to_api(winner)["consent"] == to_api(alone[winner_id])["consent"]  # type: ignore[arg-type]
    for key in record.moved_keys:
        assert store[b"i:" + key.encode()] == loser_id.encode()
    assert undo_merge(store, winner_id, "link") is None  # once only
