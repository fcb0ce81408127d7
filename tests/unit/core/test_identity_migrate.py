"""Re-slotting the identity state (streams/core/identity_migrate.py): a deployment that
ran on the single layout, migrated to N slots, goes on as if it had never moved.

The reference is the sandbox on the single layout over the whole workload. The migrated
run is the same sandbox over the first part, its identity store re-slotted, then the
partitioned protocol (tests/unit/core/partitioned.py) over the rest, its profile-bound
outputs delivered to the same profile stage: the profiles, the timelines and the
identity graph must be the reference's, duplicates across the cut included.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.worker import build
from streams.core.batch import BatchItem
from streams.core.identity import identifier_keys
from streams.core.identity_migrate import (
    MigrationError,
    NotDrainedError,
    family,
    family_counts,
    invariant_problems,
    misplaced,
    reslot,
)
from streams.core.identity_outputs import MergeOutput, ProfileCommand, ToProfile
from streams.core.identity_tick import COORDINATOR
from streams.core.keys import IDENTITY
from streams.core.pipeline import StageConfig
from streams.core.profile import timeline_page, to_api
from streams.core.routing import MERGE_OUT, key_slot, profile_slot
from streams.core.sandbox import Sandbox
from streams.core.stages.outputs import Command, Resolved
from streams.core.store import DictStore
from streams.records import Envelope, Identifiers
from streams.settings import load_settings
from tests.unit.core.partitioned import AT_REST_EMPTY, GRAPH, Partitioned, ref_of

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 2, tzinfo=UTC)
CFG = StageConfig(dedup_window=timedelta(days=7), ordering_window=timedelta(0),
                  timeline_limit=200)


def workload(n: int, seed: int) -> list[Envelope]:
    """Anonymous visitors who log in, emails shared by two customers (merges), and
    re-sent duplicates (the same event id again, often across the cut)."""
    rng = random.Random(seed)
    events: list[Envelope] = []
    while len(events) < n:
        i = len(events)
        if events and rng.random() < 0.08:
            events.append(rng.choice(events))
            continue
        c = rng.randrange(8)
        ids = Identifiers(
            customer_id=f"c{c}" if rng.random() < 0.6 else None,
            email_sha256=f"e{c // 2}" if rng.random() < 0.3 else None,
            anonymous_id=f"a{c}" if rng.random() < 0.7 else None)
        if not identifier_keys(ids):
            ids = Identifiers(anonymous_id=f"a{c}")
        when = T0 + timedelta(seconds=i)
        events.append(Envelope(
            event_id=f"ev{i}", event_name="page_viewed", event_time=when,
            received_time=when, source="test", identifiers=ids, properties={},
            payload=None))
    return events


def home_of(events: list[Envelope]) -> dict[str, str]:
    return {e.event_id: identifier_keys(e.identifiers)[0] for e in events}


def origin(i: int) -> str:
    return f"events.ingest:0:{i}"


def single_run(events: list[Envelope]) -> Sandbox:
    sandbox = Sandbox(CFG, partitions=3)
    for i, e in enumerate(events):
        sandbox.send(e, NOW, origin(i))
    return sandbox


def continue_partitioned(sandbox: Sandbox, slots: list[dict[bytes, bytes]],
                         events: list[Envelope], first: int) -> Partitioned:
    """The rest of the workload on the partitioned layout, each event settled before
    the next (the order the reference decides in), into the same profile stage."""
    part = Partitioned(slots=len(slots))
    part.stores = slots
    for i, e in enumerate(events, start=first):
        sandbox.envelopes[origin(i)] = e
        part.arrive(ref_of(e, origin(i)), NOW)
        while ready := part.ready():
            for out in part.deliver(ready[0]):
                to_profile(sandbox, out)
        sandbox.drain()
    return part


def to_profile(sandbox: Sandbox, out: object) -> None:
    """A slot's profile-bound output as agents/identity.py sends it."""
    if isinstance(out, ToProfile):
        item = BatchItem(out.event.origin, None, b"", out.profile_id)
        sandbox.queues[sandbox.part(out.profile_id)].append(Resolved(item))
    elif isinstance(out, MergeOutput):
        sandbox.queues[sandbox.part(out.merge.loser)].append(
            Command(MERGE_OUT, out.merge.loser, out.merge.to_json()))
    elif isinstance(out, ProfileCommand):
        sandbox.queues[sandbox.part(out.profile_id)].append(
            Command(out.name, out.profile_id, out.body))


def views(sandbox: Sandbox, events: list[Envelope]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key in sorted({k for e in events for k in identifier_keys(e.identifiers)}):
        pid = sandbox.identity[b"i:" + key.encode()].decode()
        profile = sandbox.profile(pid)
        assert profile is not None, key
        out[key] = (to_api(profile), timeline_page(profile, 0, 1000)["items"])
    return out


def graph(store: dict[bytes, bytes]) -> dict[bytes, bytes]:
    return {k: v for k, v in store.items() if k.startswith(GRAPH)}


@pytest.mark.parametrize(("slots", "seed", "cut"), [(2, 1, 40), (3, 2, 60), (5, 3, 25),
                                                    (4, 4, 79)])
def test_single_to_slots_goes_on_like_the_reference(slots: int, seed: int, cut: int) -> None:
    events = workload(120, seed)
    reference = single_run(events)
    migrated = single_run(events[:cut])
    homes = home_of(events)
    moved = reslot([migrated.identity.items()], slots, lambda eid, _: homes.get(eid))
    assert not misplaced(moved, lambda eid, _: homes.get(eid))
    part = continue_partitioned(migrated, moved, events[cut:], cut)

    union = part.graph()  # also asserts that no key is in two slots
    assert union == graph(reference.identity)
    assert not part.graph(AT_REST_EMPTY)
    assert not part.gave_up
    migrated.identity = DictStore(union)  # the profile API's lookups, over the slots
    assert views(migrated, events) == views(reference, events)


def test_round_trip_through_layouts_keeps_the_store() -> None:
    """1 -> 3 -> 5 -> 2 -> 1: the single store comes back byte for byte; in between,
    every key is where the placement rules put it and the invariant holds."""
    events = workload(150, 9)
    single = single_run(events).identity
    homes = home_of(events)

    def home(eid: str, _: bytes) -> str | None:
        return homes.get(eid)

    stores: list[dict[bytes, bytes]] = [dict(single)]
    for n in (3, 5, 2, 1):
        stores = reslot([s.items() for s in stores], n, home)
        assert not misplaced(stores, home)
        union = {k: v for s in stores for k, v in s.items()}
        assert not invariant_problems(union)
        assert family_counts(stores) == family_counts([single])
    assert stores == [dict(single)]


def test_unknown_home_goes_to_every_slot_and_back_once() -> None:
    events = workload(30, 5)
    single = single_run(events).identity
    moved = reslot([single.items()], 4, lambda eid, _: None)
    markers = {k for k in single if k.startswith(b"d:")}
    for store in moved:
        assert markers <= set(store)
    assert family_counts(moved)["d:"] == len(markers)
    # A marker updated in its home slot only (a duplicate noted) wins over the copies.
    homes = home_of(events)
    key = sorted(markers)[0]
    home = key_slot(homes[key[2:].decode()], 4)
    noted = json.dumps({**json.loads(moved[home][key]), "dups": ["x:0:1"]}).encode()
    moved[home][key] = noted
    back = reslot([s.items() for s in moved], 1, lambda eid, _: homes.get(eid))
    assert back[0][key] == noted
    assert back == reslot([s.items() for s in moved], 1, lambda eid, _: homes.get(eid))


def test_versions_move_between_slot_layouts_and_are_dropped_for_one() -> None:
    source = {b"i:cid:a": b"P1", b"iv:cid:a": b"3", b"k:P1": b'["cid:a"]', b"v:P1": b"4"}
    three = reslot([source.items()], 3, lambda eid, _: None)
    assert three[key_slot("cid:a", 3)][b"iv:cid:a"] == b"3"
    assert three[profile_slot("P1", 3)][b"v:P1"] == b"4"
    assert reslot([s.items() for s in three], 1, lambda eid, _: None) == [
        {b"i:cid:a": b"P1", b"k:P1": b'["cid:a"]'}]


def test_the_tick_barriers_last_instant_stays_at_the_coordinator() -> None:
    source = [{b"i:cid:a": b"P1"}, {b"tk:last": b"17"}]
    assert reslot([s.items() for s in source], 3, lambda eid, _: None)[
        COORDINATOR][b"tk:last"] == b"17"
    assert reslot([s.items() for s in source], 1, lambda eid, _: None) == [
        {b"i:cid:a": b"P1"}]


def test_every_identity_family_has_a_rule() -> None:
    """A family added to streams/core/keys.py must be given a place here (or refused)."""
    for prefix in IDENTITY:
        family(prefix + b"x")


@pytest.mark.parametrize("key", [b"c:cid:a", b"l:P1", b"g:cid:a", b"w:l/P1:0", b"wq:l/P1",
                                 b"e:req1", b"tk:i00000000000000000001"])
def test_transient_state_is_refused(key: bytes) -> None:
    with pytest.raises(NotDrainedError, match="ACTIVATION_SCREENING=off"):
        reslot([{}.items(), {key: b"x"}.items()], 1, lambda eid, _: None)


def test_an_undecided_marker_is_refused() -> None:
    marker = b'{"seen_us": 1, "origin": "t:0:1", "pid": ""}'
    with pytest.raises(NotDrainedError):
        reslot([{b"d:ev1": marker}.items()], 3, lambda eid, _: None)


def test_metadata_is_dropped_and_unknown_families_refused() -> None:
    source = {b"\x00applied:00000000000000000007": b"", b"i:cid:a": b"P1"}
    assert reslot([source.items()], 1, lambda eid, _: None) == [{b"i:cid:a": b"P1"}]
    with pytest.raises(MigrationError, match="unknown key family"):
        reslot([{b"zz:1": b""}.items()], 2, lambda eid, _: None)
    with pytest.raises(MigrationError, match="two slots"):
        reslot([{b"i:cid:a": b"P1"}.items(), {b"i:cid:a": b"P2"}.items()], 1,
               lambda eid, _: None)


def test_invariant_problems_name_a_key_owned_twice() -> None:
    union = {b"k:P1": b'["cid:a"]', b"k:P2": b'["cid:a"]', b"i:cid:a": b"P1"}
    assert any("owned by" in p for p in invariant_problems(union))


def test_the_drain_switch_leaves_screening_out(tmp_path: Path) -> None:
    """``ACTIVATION_SCREENING=off``: the worker runs every stage but screening."""
    base = load_settings().model_copy(update={"data_dir": tmp_path, "app_id": "drain"})
    assert base.screening
    on = build(base)
    off = build(base.model_copy(update={"screening": False,
                                        "data_dir": tmp_path / "off", "app_id": "off"}))
    assert [s.__name__ for s in on._extra_services] == ["Screening"]
    assert off._extra_services == []
    assert {agent.name.rsplit(".", 1)[-1] for agent in off.agents.values()} \
        >= {"identity", "profiles"}
