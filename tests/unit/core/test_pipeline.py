"""The identity stage and the partitioned profile stage over dict stores: dedup,
routing by canonical profile id, merges across partitions and their undo."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest

from streams.core.identity import new_profile_id
from streams.core.identity_stage import expired_markers, route_event
from streams.core.pipeline import APPLIED, DUPLICATE, REPLAYED, StageConfig, merge_history
from streams.core.profile import to_api
from streams.core.routing import partition_of
from streams.core.sandbox import Sandbox as Stages
from streams.records import Envelope
from tests.unit.core.conftest import T0, DictStore


@pytest.fixture
def stages(cfg: StageConfig) -> Stages:
    return Stages(cfg, partitions=3)


def test_duplicates_are_dropped_within_window(
    store: DictStore, cfg: StageConfig, event: Callable[..., Envelope]
) -> None:
    ev, window = event("e1", "purchase_completed", 0), cfg.dedup_window
    ingest = "events.ingest:1:5"
    assert route_event(store, ev, T0, window, "events.ingest:0:1").status == APPLIED
    # the same ingestion record forwarded again (screening's offsets not committed)
    assert route_event(store, ev, T0, window, "events.ingest:0:1").status == REPLAYED
    assert route_event(store, ev, T0 + timedelta(days=6), window, ingest).status == DUPLICATE
    # that duplicate's record forwarded again: dropped, but not counted a second time
    assert route_event(store, ev, T0, window, ingest).status == REPLAYED
    # after the window the same id is a new event again
    assert route_event(store, ev, T0 + timedelta(days=8), window, "x:0:9").status == APPLIED


def test_events_go_to_the_partition_of_their_canonical_profile(
    stages: Stages, event: Callable[..., Envelope]
) -> None:
    for n in range(12):
        stages.send(event(f"e{n}", "purchase_completed", n, customer=f"c{n}"), T0)
    for n in range(12):
        pid = new_profile_id(f"cid:c{n}")
        held = [p for p, store in enumerate(stages.parts) if f"p:{pid}".encode() in store]
        assert held == [partition_of(pid, 3)]
    assert len({partition_of(new_profile_id(f"cid:c{n}"), 3) for n in range(12)}) == 3


def _two_profiles_in_two_partitions() -> tuple[str, str]:
    """Customer ids of two profiles that live in different partitions (of 3)."""
    ids = [f"c{n}" for n in range(100)]
    first = ids[0]
    other = next(c for c in ids if partition_of(new_profile_id(f"cid:{c}"), 3)
                 != partition_of(new_profile_id(f"cid:{first}"), 3))
    return first, other


def test_a_merge_across_partitions_joins_both_histories(
    stages: Stages, event: Callable[..., Envelope]
) -> None:
    one, two = _two_profiles_in_two_partitions()
    stages.send(event("a", "purchase_completed", 1, value="1", customer=one), T0)
    stages.send(event("b", "purchase_completed", 2, value="2", customer=two, anon="x"), T0)
    routed = stages.send(event("c", "page_viewed", 3, customer=one, anon="x"), T0)
    (merge,) = routed.merges
    winner = stages.profile(routed.profile_id)
    assert winner is not None and winner.order_count == 2
    assert [e["event_id"] for e in winner.timeline] == ["c", "b", "a"]
    assert stages.profile(merge.loser) == winner  # a merged-away id answers with the winner
    store, pid = stages.locate(routed.profile_id)
    history = merge_history(store, pid)
    assert [(h.event_id, h.loser) for h in history] == [("c", merge.loser)]
    newest = max(one, two, key=lambda c: new_profile_id(f"cid:{c}"))  # the loser's
    assert f"cid:{newest}" in history[0].moved_keys
    # later events by either identifier land on the winner
    stages.send(event("d", "page_viewed", 4, customer=None, anon="x"), T0)
    assert stages.customer(one).timeline[0]["event_id"] == "d"
    assert stages.customer(two) == stages.customer(one)


def test_a_chain_of_merges_reaches_the_last_survivor(
    stages: Stages, event: Callable[..., Envelope]
) -> None:
    """A merge whose winner is merged away before the merge arrives goes on to the
    survivor (the loser's state is never left behind)."""
    customers = sorted((f"c{n}" for n in range(3)), key=lambda c: new_profile_id(f"cid:{c}"))
    for n, cust in enumerate(customers):
        stages.send(event(f"buy-{cust}", "purchase_completed", n, value="1", customer=cust), T0)
    # link the two newest first, then the oldest with one of them; drain only at the end
    stages.send(event("l1", "page_viewed", 10, customer=customers[2], anon="y"), T0)
    stages.send(event("l2", "page_viewed", 11, customer=customers[1], anon="y"), T0,
                drain=False)
    stages.send(event("l3", "page_viewed", 12, customer=customers[0], anon="y"), T0,
                drain=False)
    stages.drain()
    survivor = stages.customer(customers[2])
    assert survivor.profile_id == new_profile_id(f"cid:{customers[0]}")
    assert survivor.order_count == 3 and stages.customer(customers[1]) == survivor


def test_sweep_finds_expired_markers_in_chunks(
    store: DictStore, cfg: StageConfig, event: Callable[..., Envelope]
) -> None:
    for i in range(5):
        route_event(store, event(f"e{i}", at_s=i), T0 + timedelta(days=i), cfg.dedup_window)
    items = sorted(store.items())
    start = [kv for kv in items if kv[0] >= b"d:"]
    now = T0 + timedelta(days=9, hours=1)  # e0, e1, e2 (days 0-2) are older than 7 days
    expired, cursor = expired_markers(start, now, cfg.dedup_window, limit=2)
    assert expired == [b"d:e0", b"d:e1"] and cursor is not None
    rest = [kv for kv in items if kv[0] >= cursor]
    assert expired_markers(rest, now, cfg.dedup_window, limit=100) == ([b"d:e2"], None)


def test_undo_merge_gives_the_loser_back(
    stages: Stages, event: Callable[..., Envelope]
) -> None:
    cid_events = [event("a", "purchase_completed", 1, value="1"),
                  event("k", "consent_updated", 50, status="DENIED")]
    anon_events = [event("b", "purchase_completed", 2, value="2", customer=None, anon="x"),
                   event("k2", "consent_updated", 60, status="GRANTED", customer=None,
                         anon="x")]
    for ev in cid_events + anon_events:
        stages.send(ev, T0)
    alone = {pid: stages.profile(pid) for pid in
             (new_profile_id("cid:c1"), new_profile_id("anon:x"))}
    routed = stages.send(event("link", "page_viewed", 70, anon="x"), T0)
    winner_id, loser_id = routed.profile_id, routed.merges[0].loser
    merged = stages.profile(winner_id)
    assert merged is not None and merged.order_count == 2

    stages.undo(winner_id, "link")
    winner, loser = stages.profile(winner_id), stages.profile(loser_id)
    assert winner is not None and loser is not None and loser.profile_id == loser_id
    assert replace(loser, last_offset=0) == replace(alone[loser_id], last_offset=0)  # type: ignore[arg-type]
    assert winner.order_count == 1
    assert merge_history(stages.locate(winner_id)[0], winner_id) == []
    assert [e["event_id"] for e in winner.timeline][0] == "link"  # came after: stays
    assert to_api(winner)["consent"] == to_api(alone[winner_id])["consent"]  # type: ignore[arg-type]
    for key in routed.merges[0].moved_keys:
        assert stages.identity[b"i:" + key.encode()] == loser_id.encode()
    # the loser's identifiers resolve to it again
    by_cid = loser_id == new_profile_id("cid:c1")
    stages.send(event("after", "page_viewed", 80, customer="c1" if by_cid else None,
                      anon=None if by_cid else "x"), T0)
    after = stages.profile(loser_id)
    assert after is not None and after.timeline[0]["event_id"] == "after"
