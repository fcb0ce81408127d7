"""The partitioned identity protocol step by step (docs/partitioned-identity.md): the
fast path, tickets over several slots, contention on claims and locks, restarts, the
give-up path, versions, undo, and the worked timeline of section 5. The harness is
tests/unit/core/partitioned.py; the property over any interleaving is
test_identity_property.py."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from streams.core import carried, identity_slots
from streams.core.dedup import dedup_key
from streams.core.identity import new_profile_id
from streams.core.identity_messages import (
    Abandon,
    Absorb,
    Arrival,
    EventRef,
    Held,
    Hint,
    Link,
    Message,
    ProtocolError,
    Release,
    Relink,
    RelinkTicket,
    Repoint,
    Resolve,
    Settled,
    Ticket,
    Unabsorb,
    UndoMerge,
    decode,
    encode,
)
from streams.core.identity_outputs import (
    Decided,
    Dropped,
    GaveUp,
    MergeOutput,
    Output,
    ProfileCommand,
    Send,
    ToProfile,
)
from streams.core.identity_protocol import Config, handle
from streams.core.identity_stage import SUPPRESSED_EVENT, new_marker, route_event
from streams.core.pipeline import APPLIED, DUPLICATE
from streams.core.profile import micros
from streams.core.routing import UNDO_MERGE, MergeOut, key_slot, partition_of, profile_slot
from streams.records import Envelope, Identifiers
from tests.unit.core.partitioned import (
    AT_REST_EMPTY,
    GRAPH,
    SCREENING,
    Partitioned,
    Reference,
    dump,
    ref_of,
)
from tests.unit.core.test_identity_property import FOUND, Sent, build, check, run_partitioned

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 2, tzinfo=UTC)
WINDOW = timedelta(days=7)
KIND = {"cid": "customer_id", "em": "email_sha256", "ph": "phone_sha256", "anon": "anonymous_id"}


def env(event_id: str, at: datetime, *keys: str) -> Envelope:
    ids = Identifiers(**{KIND[k.split(":", 1)[0]]: k.split(":", 1)[1] for k in keys})
    return Envelope(event_id=event_id, event_name="page_viewed", event_time=at,
                    received_time=at, source="test", identifiers=ids)


def named(kind: str, slot: int, slots: int, skip: tuple[str, ...] = ()) -> str:
    """The first identifier key of ``kind`` that lives in ``slot``."""
    return next(k for k in (f"{kind}:{kind[0]}{n}" for n in range(1000))
                if key_slot(k, slots) == slot and k not in skip)


def feed(part: Partitioned, *envelopes: Envelope) -> list[Sent]:
    sent = [Sent(e, f"in:0:{n}") for n, e in enumerate(envelopes)]
    for s in sent:
        part.arrive(ref_of(s.envelope, s.origin), NOW)
    return sent


def at_rest(part: Partitioned) -> None:
    for store in part.stores:
        assert not [k for k in store if k.startswith(AT_REST_EMPTY)], dump(store)


def kinds(out: list[Output]) -> list[str]:
    return [type(o.message).__name__ if isinstance(o, Send) else type(o).__name__
            for o in out]


# --- routing and messages ------------------------------------------------------------------


def test_a_key_lives_in_the_slot_of_the_profile_it_creates() -> None:
    for key in ("cid:c1", "em:e1", "anon:a1"):
        assert key_slot(key, 6) == profile_slot(new_profile_id(key), 6)
        assert profile_slot(new_profile_id(key), 6) == partition_of(new_profile_id(key), 6)


def test_every_message_round_trips_as_json_with_its_protocol_version() -> None:
    ev = EventRef("e1", 5, ("cid:c", "anon:a"), "in:0:1", b"\x00k", b"\xffbytes")
    merge = MergeOut("e1", 5, "p-1", "p-2", ("anon:a",), ("anon:a", "em:x"))
    ticket = Ticket(ev, {"cid:c": Hint("p-1", 3)}, ("anon:a",),
                    {"p-1": Held(("cid:c",), 3, "e1#0")}, {"em:x": 2}, ("anon:a",), 1, 4, 1)
    relink = RelinkTicket("e1", "p-1", "p-2", ("anon:a",), "p-0", 7, 2)
    messages: list[Message] = [Arrival(ev, 99), Resolve(ticket), Absorb(merge, 4, "e1#0"),
                Link("e1", "anon:a", "p-1", 4), Repoint("anon:a", "p-1", 4, "p-2"),
                Release("e1#0", "l/p-1"), Settled("e1", "cid:c", "p-1"),
                Abandon(ev, "why", False), Relink(relink), Unabsorb(relink, 8),
                UndoMerge("p-2", "e1")]
    for message in messages:
        raw = encode(message)
        assert json.loads(raw)["pv"] == 1
        assert decode(raw) == message
    with pytest.raises(ProtocolError, match="version 2"):
        decode(json.dumps({"pv": 2, "type": "link"}).encode())
    with pytest.raises(ProtocolError):
        decode(b'{"pv": 1, "type": "link"}')  # a field missing
    with pytest.raises(ProtocolError):
        decode(b"not json")


# --- the fast path -------------------------------------------------------------------------


def test_on_one_slot_every_step_is_route_event() -> None:
    """Creation, links, a merge, a duplicate and a replay: each arrival decided in one
    step, with the outputs and graph today's stage gives."""
    cfg, store, reference = Config(1, WINDOW), dict[bytes, bytes](), dict[bytes, bytes]()
    events = [(env("a", T0, "anon:x"), "o1"), (env("b", T0, "cid:c"), "o2"),
              (env("c", T0, "cid:c", "em:e"), "o3"), (env("m", T0, "em:e", "anon:x"), "o4"),
              (env("m", T0, "em:e", "anon:x"), "o5"), (env("m", T0, "em:e", "anon:x"), "o4")]
    for envelope, origin in events:
        out = handle(store, 0, Arrival(ref_of(envelope, origin), micros(NOW)), cfg)
        routed = route_event(reference, envelope, NOW, WINDOW, origin)
        if routed.status == APPLIED:
            decided = [o for o in out if isinstance(o, Decided)]
            assert [(d.profile_id, d.merges) for d in decided] == [
                (routed.profile_id, routed.merges)]
            assert [m.merge for m in out if isinstance(m, MergeOutput)] == list(routed.merges)
        else:
            assert out == [Dropped(envelope.event_id, routed.status)]
        assert not [o for o in out if isinstance(o, Send)]
    assert {k: v for k, v in store.items() if k.startswith(GRAPH)} == reference


# --- tickets -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 4])
def test_a_ticket_merges_profiles_of_n_keys_in_n_slots(n: int) -> None:
    keys = [named(kind, slot, 4) for kind, slot in zip(["cid", "em", "ph", "anon"],
                                                       [0, 1, 2, 3], strict=False)][:n]
    part = Partitioned(4)
    events = [env(f"own{i}", T0 + timedelta(seconds=i), k) for i, k in enumerate(keys)]
    events.append(env("link", T0 + timedelta(seconds=9), *keys))
    sent = feed(part, *events)
    part.run()
    check(sent, part)
    decided = part.decisions[-1]
    assert isinstance(decided, Decided) and len(decided.merges) == n - 1
    assert decided.profile_id == min(new_profile_id(k) for k in keys)
    assert 1 <= part.hops <= 2 * n  # lookups and locks, a slot visited once each way


def test_worked_timeline_of_section_5() -> None:
    """The design's table, row by row: W from cid:c3 (slot 2), L from anon:x2 (slot 5),
    W < L, six slots."""
    c, x = "cid:c3", "anon:x2"
    w, lo = new_profile_id(c), new_profile_id(x)
    assert (key_slot(c, 6), key_slot(x, 6), w < lo) == (2, 5, True)
    part = Partitioned(6)
    at = T0.replace(hour=10)
    sent = feed(part, env("w0", at, c), env("l0", at, x),
                env("a1", at + timedelta(seconds=1), x), env("M", at + timedelta(seconds=5), c, x),
                env("a2", at + timedelta(seconds=3), x), env("c1", at + timedelta(seconds=6), c),
                env("a3", at - timedelta(minutes=1), x))
    step = part.deliver
    step((SCREENING, 2)), step((SCREENING, 5))  # W and L exist
    assert kinds(step((SCREENING, 5))) == ["Decided", "ToProfile"]  # 1: a1 fast, to L
    assert kinds(step((SCREENING, 2))) == ["Resolve"]  # 2: M becomes a ticket
    assert part.stores[2][b"g:" + c.encode()] == b"M"
    assert kinds(step((SCREENING, 5))) == ["Decided", "ToProfile"]  # 3: a2 fast (L free)
    assert kinds(step((2, 5))) == ["Resolve"]  # 4: M locks L first
    assert part.stores[5][b"l:" + lo.encode()] == b"M#0"
    assert step((SCREENING, 5)) == []  # 5: a3 parks behind M's lock on L
    assert part.stores[5][b"g:" + x.encode()] == b"a3"
    assert step((SCREENING, 2)) == []  # 6: c1 parks behind M's home guard
    out = step((5, 2))  # 7: M locks W and is decided there; c1 resumes
    assert kinds(out) == ["Decided", "ToProfile", "Absorb", "Decided", "ToProfile"]
    assert [(o.event.event_id, o.profile_id) for o in out if isinstance(o, ToProfile)] == [
        ("M", w), ("c1", w)]
    (merge,) = [m for o in out if isinstance(o, Decided) for m in o.merges]
    assert merge == MergeOut("M", micros(at + timedelta(seconds=5)), w, lo, (x, c), (x,))
    out = step((2, 5))  # 8: absorb at L; a3 resumes: its owner W is remote
    assert kinds(out) == ["MergeOutput", "Resolve"]
    assert part.stores[5][b"r:" + lo.encode()] == w.encode()
    assert part.stores[5][b"i:" + x.encode()] == w.encode()
    out = step((5, 2))  # 9: a3 applied to W
    assert kinds(out) == ["Decided", "ToProfile", "Settled"]
    step((2, 5))  # a3's home guard lifted
    assert part.ready() == []
    order = [d.event.event_id for d in part.decisions if isinstance(d, Decided)]
    assert order == ["w0", "l0", "a1", "a2", "M", "c1", "a3"]
    check(sent, part)
    # the profile stage gets a1, a2, then merge-out(L) on L's partition; M, c1, a3 on W's
    to_l = [o.event.event_id if isinstance(o, ToProfile) else "merge-out"
            for _, o in part.to_profiles
            if (isinstance(o, ToProfile) and o.profile_id == lo) or isinstance(o, MergeOutput)]
    assert to_l == ["l0", "a1", "a2", "merge-out"]


def test_two_tickets_creating_the_same_key_the_second_waits_and_links() -> None:
    """Both events bring a new anonymous id living in another slot: the first claims it
    and creates the profile; the second waits on the claim, then joins that profile."""
    a, b = named("cid", 0, 2), named("cid", 0, 2, skip=(named("cid", 0, 2),))
    shared = named("anon", 1, 2)
    part = Partitioned(2)
    sent = feed(part, env("A", T0, a, shared), env("B", T0, b, shared))
    assert kinds(part.deliver((SCREENING, 0))) == ["Resolve"]  # A claims a, goes to 1
    assert kinds(part.deliver((SCREENING, 0))) == ["Resolve"]  # B claims b, goes to 1
    assert kinds(part.deliver((0, 1))) == ["Resolve"]  # A claims the shared key
    assert part.deliver((0, 1)) == []  # B waits on A's claim
    assert part.stores[1][b"c:" + shared.encode()] == b"A"
    part.run()
    winner = new_profile_id(a)
    assert [(d.event.event_id, d.profile_id) for d in part.decisions
            if isinstance(d, Decided)] == [("A", winner), ("B", winner)]
    check(sent, part)
    assert json.loads(part.graph()[b"k:" + winner.encode()]) == sorted([a, b, shared])


def test_two_tickets_on_the_same_profiles_lock_them_largest_first() -> None:
    """Two events link the same two profiles: both lock the larger first, so the second
    waits there; the first merges, and the second follows the loser's redirect."""
    x, y = named("anon", 0, 2), named("em", 1, 2)
    big, small = sorted([new_profile_id(x), new_profile_id(y)], reverse=True)
    part = Partitioned(2)
    sent = feed(part, env("x", T0, x), env("y", T0, y))
    part.run()
    sent += feed(part, env("one", T0, named("cid", 0, 2), x, y),
                 env("two", T0, named("cid", 1, 2), x, y))
    waited = False
    while part.ready():
        part.deliver(part.ready()[0])  # both arrive, then their hops interleave
        waited |= any(k.startswith(b"w:l/" + big.encode()) for s in part.stores for k in s)
    assert waited
    one, two = [d for d in part.decisions if isinstance(d, Decided)][-2:]
    assert [m.loser for m in one.merges] == [big] and one.profile_id == small
    assert two.merges == () and two.profile_id == small
    check(sent, part)


def test_an_undo_under_a_ticket_makes_it_wait_for_the_new_hint_and_restart() -> None:
    items, slots, schedule, undo = FOUND["restart"]
    sent = build(items)
    part = run_partitioned(sent, slots, schedule, undo)
    check(sent, part)
    assert max(t.restarts for t in part.tickets) >= 1
    assert [d for d in part.decisions if not isinstance(d, Decided)]  # the relink ran


# --- giving up -----------------------------------------------------------------------------


def test_a_ticket_over_its_hop_budget_gives_up_and_frees_everything() -> None:
    home, other = named("cid", 0, 3), named("anon", 2, 3)
    part = Partitioned(3, max_hops=1)
    sent = feed(part, env("far", T0, home, other), env("next", T0, home))
    part.run()
    (gave,) = part.gave_up
    assert gave.event.event_id == "far" and "gave up after 1 hops" in gave.reason
    assert gave.event.origin == sent[0].origin  # the record, for the dead letter
    assert b"d:far" not in part.graph()  # never applied: a redrive is not a duplicate
    at_rest(part)  # claims released, guard lifted
    assert [d.event.event_id for d in part.decisions if isinstance(d, Decided)] == ["next"]
    part.cfg = Config(3, WINDOW)  # a redrive, with the budget back
    part.arrive(ref_of(sent[0].envelope, "redrive:0:1"), NOW)
    part.run()
    assert [d.event.event_id for d in part.decisions if isinstance(d, Decided)] == [
        "next", "far"]
    at_rest(part)


def test_an_event_behind_a_full_queue_gives_up() -> None:
    home, other = named("cid", 0, 2), named("anon", 1, 2)
    part = Partitioned(2, max_waiters=1)
    feed(part, env("first", T0, home, other), env("second", T0, home), env("third", T0, home))
    for _ in range(3):
        part.deliver((SCREENING, 0))  # a ticket, one waiter, and one too many
    assert [g.event.event_id for g in part.gave_up] == ["third"]
    assert "more than 1 events wait" in part.gave_up[0].reason
    part.run()
    assert [d.event.event_id for d in part.decisions if isinstance(d, Decided)] == [
        "first", "second"]
    assert b"d:third" not in part.graph()
    at_rest(part)


def test_a_suppressed_new_identifier_drops_the_event_on_either_path() -> None:
    erased, home = named("em", 1, 2), named("cid", 0, 2)
    for slots in (1, 2):
        part = Partitioned(slots)
        part.stores[key_slot(erased, slots)][b"x:" + erased.encode()] = b"{}"
        feed(part, env("e", T0, home, erased))
        part.run()
        assert part.dropped == [Dropped("e", SUPPRESSED_EVENT)] and part.gave_up == []
        graph = part.graph()
        assert not [k for k in graph if k.startswith((b"i:", b"k:", b"d:"))], dump(graph)
        at_rest(part)


# --- versions, undo, routing -----------------------------------------------------------------


def test_a_repoint_older_than_the_hint_is_ignored() -> None:
    store: dict[bytes, bytes] = {}
    cfg = Config(1, WINDOW)
    handle(store, 0, Repoint("anon:a", "p-new", 5, "p-old"), cfg)
    handle(store, 0, Repoint("anon:a", "p-late", 3, "p-old"), cfg)  # overtaken on the way
    assert store[b"i:anon:a"] == b"p-new" and store[b"iv:anon:a"] == b"5"
    handle(store, 0, Repoint("anon:a", "p-newer", 6, "p-new"), cfg)
    assert store[b"i:anon:a"] == b"p-newer"


def test_undo_merge_follows_redirects_across_slots_to_the_canonical_profile() -> None:
    a, b = named("anon", 0, 3), named("em", 1, 3)
    part = Partitioned(3)
    feed(part, env("a", T0, a), env("b", T0, b), env("ab", T0, a, b))
    part.run()
    loser = max(new_profile_id(a), new_profile_id(b))
    winner = min(new_profile_id(a), new_profile_id(b))
    start = profile_slot(loser, 3)
    out = handle(part.stores[start], start, UndoMerge(loser, "ab"), part.cfg)
    while isinstance(out[0], Send):
        out = handle(part.stores[out[0].slot], out[0].slot, out[0].message, part.cfg)
    assert out == [ProfileCommand(UNDO_MERGE, winner, json.dumps(
        {"profile_id": winner, "event_id": "ab"}).encode())]


def test_a_relink_gives_the_keys_back_like_todays_relink() -> None:
    a, b = named("anon", 0, 3), named("em", 2, 3)
    part = Partitioned(3)
    sent = feed(part, env("a", T0, a), env("b", T0, b), env("ab", T0, a, b))
    part.run()
    (merge,) = [m for d in part.decisions if isinstance(d, Decided) for m in d.merges]
    part.relink(merge)
    part.run()
    check(sent, part)
    assert part.owner(a) == new_profile_id(a) and part.owner(b) == new_profile_id(b)
    reference = Reference()
    reference.replay(part.decisions, {s.envelope.event_id: s.envelope for s in sent}, NOW)
    assert part.graph() == reference.store


def test_an_arrival_at_the_wrong_slot_goes_home_first() -> None:
    key = named("cid", 1, 2)
    ev = ref_of(env("e", T0, key), "o")
    out = handle({}, 0, Arrival(ev, micros(NOW)), Config(2, WINDOW))
    assert out == [Send(1, Arrival(ev, micros(NOW)))]


def test_a_duplicate_while_the_ticket_travels_is_a_duplicate() -> None:
    home, other = named("cid", 0, 2), named("anon", 1, 2)
    part = Partitioned(2)
    envelope = env("e", T0, home, other)
    part.arrive(ref_of(envelope, "in:0:1"), NOW)
    part.arrive(ref_of(envelope, "in:3:7"), NOW)  # resent by the producer
    part.deliver((SCREENING, 0))
    part.deliver((SCREENING, 0))
    assert part.dropped == [Dropped("e", DUPLICATE)]
    part.run()
    assert json.loads(part.graph()[b"d:e"])["pid"] == new_profile_id(home)
    assert json.loads(part.graph()[b"d:e"])["dups"] == ["in:3:7"]


def test_events_that_wait_or_travel_reach_the_profile_stage_with_their_envelope() -> None:
    """One decode per event: the envelope screening decoded rides in the arrival, the
    waiter behind a busy home key and the ticket, so the profile stage need not decode
    the Avro value again. A message written before the field reads as "not known"."""
    home, other = named("cid", 0, 2), named("anon", 1, 2)
    part = Partitioned(2)
    envelopes = [env(f"e{n}", T0 + timedelta(seconds=n), home, other) for n in range(3)]
    for n, envelope in enumerate(envelopes):  # e0 a ticket (two slots), e1 and e2 wait
        part.arrive(replace(ref_of(envelope, f"in:0:{n}"), carried=carried.encode(envelope)),
                    NOW)
    part.run()
    forwarded = [o for _, o in part.to_profiles if isinstance(o, ToProfile)]
    assert sorted(o.event.event_id for o in forwarded) == ["e0", "e1", "e2"]
    assert part.hops >= 1
    for o in forwarded:
        assert carried.decode(o.event.carried) == next(
            e for e in envelopes if e.event_id == o.event.event_id)
    old = {k: v for k, v in ref_of(envelopes[0]).to_dict().items() if k != "carried"}
    assert EventRef.from_dict(old).carried == b""


def test_a_waiting_event_is_stored_packed_and_one_parked_as_json_still_resumes() -> None:
    """Events behind a busy home key are parked in MessagePack, their bytes as they are;
    an event an older worker parked as JSON (base64 bytes) resumes all the same."""
    home, other = named("cid", 0, 2), named("anon", 1, 2)
    part = Partitioned(2)
    first, second, third = (env(f"e{n}", T0 + timedelta(seconds=n), home, other)
                            for n in range(3))
    part.arrive(replace(ref_of(first, "in:0:0"), value=b"\x00avro"), NOW)
    part.arrive(replace(ref_of(second, "in:0:1"), value=b"\x00\xffbytes",
                        carried=carried.encode(second)), NOW)
    part.deliver((-1, 0))  # e0: a ticket holds the home guard
    part.deliver((-1, 0))  # e1 waits
    store = part.stores[0]
    [(_, packed)] = [(k, v) for k, v in store.items() if k.startswith(b"w:")]
    kind, body = identity_slots.waiter_of(packed)
    assert kind == "event" and isinstance(body, EventRef)
    assert (body.value, carried.decode(body.carried)) == (b"\x00\xffbytes", second)
    # e2 as an older worker parked it: marked at arrival, then a JSON waiter.
    old = replace(ref_of(third, "in:0:2"), value=b"\x01old")
    store[dedup_key(old.event_id)] = new_marker(micros(NOW), old.origin, "")
    identity_slots.park(store, "g/" + home, identity_slots.waiter("event", old.to_dict()), 10)
    part.run()
    forwarded = {o.event.event_id: o.event for _, o in part.to_profiles
                 if isinstance(o, ToProfile)}
    assert sorted(forwarded) == ["e0", "e1", "e2"]
    assert forwarded["e2"].value == b"\x01old" and forwarded["e1"].carried


def test_gave_up_output_carries_the_record() -> None:
    """What the wiring needs to build the dead letter: origin, key and bytes."""
    ev = EventRef("e", 1, ("cid:c",), "events.ingest:2:40", b"cid:c", b"\x00avro")
    out = handle({}, 0, Abandon(ev, "identity: gave up"), Config(1, WINDOW))
    assert out == [GaveUp(ev, "identity: gave up")]
