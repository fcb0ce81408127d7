"""Property (hypothesis): the identity stage over any number of slots, its messages
delivered in any interleaving, decides like today's one partition.

The reference is today's ``route_event`` on one store, fed the same events in the
partitioned run's **decision order** (the order in which decisions committed at their
winners; docs/partitioned-identity.md section 4: strict two-phase locking makes the
decisions equivalent to running them one after the other in that order). Duplicates
and replays only touch their own marker, so the reference sees them last, in arrival
order. Checked: each event decided once, to the reference's profile with the
reference's merges; the same duplicate/replay statuses; once every queue is empty the
same identity graph (``i:`` hints, ``k:`` and ``r:`` directories, ``d:`` markers),
nothing left held or waiting; each home key's events decided in arrival order; and the
profile stage's ordering promise (events and a loser's ``merge-out`` sent by the
profile's own slot, no event for a loser after its ``merge-out``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from streams.core.identity_outputs import Decided, MergeOutput, Relinked, ToProfile
from streams.core.identity_stage import route_event
from streams.core.pipeline import APPLIED
from streams.core.routing import key_slot, profile_slot
from streams.records import Envelope, Identifiers
from tests.unit.core.partitioned import (
    AT_REST_EMPTY,
    Partitioned,
    Reference,
    dump,
    ref_of,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 2, tzinfo=UTC)

# A small universe, so that links, merges and chains of merges are frequent.
_ids = st.tuples(st.none() | st.sampled_from(["c0", "c1", "c2", "c3"]),
                 st.none() | st.sampled_from(["e0", "e1", "e2", "e3"]),
                 st.none() | st.sampled_from(["p0", "p1", "p2"]),
                 st.none() | st.sampled_from(["a0", "a1", "a2", "a3"]))
# (identifiers, seconds late, resend: None, or (which earlier event, same record?))
_item = st.tuples(_ids, st.sampled_from([0, 0, 0, 2, 30]),
                  st.none() | st.tuples(st.integers(0, 40), st.booleans()))
EVENTS = st.lists(_item, min_size=1, max_size=30)
SCHEDULE = st.lists(st.integers(0, 1 << 16), max_size=400)
Items = list[tuple[tuple[str | None, ...], int, tuple[int, bool] | None]]

# Failures hypothesis and a search found (each fixed since; see the "as built" notes
# of docs/partitioned-identity.md): (events, slots, schedule, undos).
Case = tuple[Items, int, list[int], frozenset[int]]
FOUND: dict[str, Case] = {
    # a link overtaken by a newer repoint from another slot, written anyway
    "link-overtaken": (
        [(("c3", "e2", "p1", "a1"), 0, None), (("c1", None, None, "a2"), 30, None),
         ((None, None, "p2", "a2"), 0, None), (("c2", "e2", None, None), 0, None),
         (("c0", "e0", "p0", None), 0, None), (("c1", None, "p1", "a2"), 0, None),
         (("c1", None, "p0", None), 0, None)], 4, [12202, 46570, 46179], frozenset()),
    # a local merge's loser absorbed later in the transaction: a resumed event chose it
    "half-absorbed": (
        [((None, "e0", None, None), 0, None), (("c3", "e2", None, "a3"), 0, None),
         (("c3", "e0", "p1", "a3"), 0, None), (("c3", None, None, "a2"), 30, None)], 2, [],
        frozenset()),
    # a queued release of the ticket's own lock, taken again before the release ran
    "release-after-retake": (
        [(("c0", "e3", None, None), 30, None), (("c3", "e2", None, "a1"), 0, None),
         (("c2", None, "p0", None), 0, None), ((None, "e3", None, None), 0, None),
         (("c3", "e3", "p2", "a0"), 30, None), ((None, "e2", "p0", "a2"), 30, None),
         (("c2", "e1", None, None), 30, None), ((None, "e1", "p2", None), 0, None),
         (("c0", None, "p1", None), 0, None), (("c2", None, None, "a1"), 0, None)], 3,
        [64147, 42450, 2508, 29617, 28392, 31776, 21609, 25911, 55175, 57741, 993, 19322,
         17897, 40048, 46226, 55096, 6320, 65412, 49316, 30711, 28199, 34373, 19355, 14494,
         12986, 55174, 51427, 3046, 11687, 22802], frozenset({0, 6, 7, 8, 12})),
    # an absorb releasing the loser's lock under the ticket's newer lock token
    "lock-token": (
        [(("c2", None, None, None), 0, None), (("c3", "e2", None, "a1"), 0, None),
         (("c3", "e3", "p2", "a0"), 30, None), ((None, "e2", "p0", "a2"), 30, None),
         (("c2", "e1", None, None), 30, None), ((None, "e1", "p2", None), 0, None)], 3,
        [32844, 41292, 32601, 49470, 48009, 12986, 46893, 29336, 51427, 3046, 11687, 22802,
         62647], frozenset({0, 6, 7, 8, 12})),
    # a key read again led to a directory locked earlier, not checked against it
    "recheck-into-locked": (
        [((None, "e1", "p1", "a2"), 2, None), (("c2", None, "p2", None), 2, None),
         (("c3", None, "p1", "a0"), 0, None), (("c0", "e3", "p2", "a2"), 30, None),
         ((None, None, "p0", None), 0, None), ((None, "e3", "p0", None), 0, None)], 4,
        [19696, 42526, 54330, 12465, 25299, 14167, 4765, 41557, 63561, 56096, 53147, 12587,
         13563, 46928, 23112, 13157, 42936, 23394, 39551, 37040, 38064, 36678, 12012, 62303,
         15543, 9163, 63061, 5110, 56250, 29684, 5232, 23184, 12150, 2175, 12145],
        frozenset({0, 5})),
    # two undos in a chain: the later one gave back keys the earlier one had taken
    "undo-after-undo": (
        [(("c1", "e1", None, "a0"), 2, None), ((None, "e1", None, "a2"), 0, None),
         (("c2", None, None, "a1"), 0, None), (("c1", "e0", None, None), 0, None),
         ((None, None, "p2", None), 30, None), (("c2", None, None, "a0"), 0, None),
         (("c1", "e0", None, "a1"), 2, None), (("c3", None, "p0", None), 0, (39, False)),
         ((None, "e0", "p2", None), 2, None), (("c2", None, None, "a3"), 0, None),
         ((None, None, None, None), 2, None)], 3,
        [21431, 37199, 14330, 7639, 4097, 57266, 9078, 8973, 23579, 60127, 15682, 17920, 226,
         60520, 13201, 62196, 33672, 60013, 30267, 59967, 24703, 15115, 39535, 6627, 45929,
         4316, 38544, 3824, 37124, 13715, 56591, 50301, 8026, 16624, 43799, 50203, 37877,
         2666, 1696, 56776, 78, 44675, 42378, 17916, 64744, 12269, 17746, 11598, 53687,
         49582, 34689], frozenset({1, 2, 3})),
    # an undo moves a key back above a lock a ticket holds: it waits for the key's newer
    # hint, then restarts (kept for coverage: the focused test asserts the restart)
    "restart": (
        [(("c3", None, None, "a2"), 0, None), (("c2", None, "p2", None), 2, None),
         (("c1", "e2", "p0", "a0"), 2, None), (("c1", "e0", "p2", "a2"), 2, None),
         (("c2", None, "p0", None), 30, None)], 3,
        [37406, 57768, 23528, 4647, 9121, 43290, 57304, 64653, 61597, 60331, 29677, 59019,
         64767, 55541, 60829, 20041, 7821, 39803, 33431, 48945, 18717, 44858, 39351, 50056,
         27964, 25369, 28753, 58294], frozenset({0})),
}


def _examples(names: list[str]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def add(test: Callable[..., None]) -> Callable[..., None]:
        for name in names:
            items, slots, schedule, undo = FOUND[name]
            test = example(items=items, slots=slots, schedule=schedule, undo=undo)(test)
        return test
    return add


@dataclass(frozen=True)
class Sent:
    envelope: Envelope
    origin: str


def build(items: Items) -> list[Sent]:
    """Events in ingestion order; a resend repeats an earlier event, from the same
    ingestion record (a replay) or another (a producer's duplicate)."""
    out: list[Sent] = []
    for n, ((cid, em, ph, anon), late, resend) in enumerate(items):
        if resend is not None and out:
            earlier = out[resend[0] % len(out)]
            out.append(Sent(earlier.envelope, earlier.origin if resend[1] else f"in:0:{n}"))
            continue
        ids = Identifiers(customer_id=cid, email_sha256=em, phone_sha256=ph, anonymous_id=anon)
        if ids.is_empty():
            ids = Identifiers(anonymous_id=f"a{n % 4}")
        when = T0 + timedelta(seconds=n - late)
        out.append(Sent(Envelope(event_id=f"ev{n}", event_name="page_viewed", event_time=when,
                                 received_time=when, source="test", identifiers=ids),
                        f"in:0:{n}"))
    return out


def chooser(schedule: list[int]) -> Callable[[int], int]:
    """Picks the next pair from the schedule; once it is spent, always the first."""
    it = iter(schedule)
    return lambda n: next(it, 0) % n


def run_partitioned(sent: list[Sent], slots: int, schedule: list[int],
                    undo: frozenset[int] = frozenset()) -> Partitioned:
    part = Partitioned(slots, undo=undo)
    for s in sent:
        part.arrive(ref_of(s.envelope, s.origin), NOW)
    part.run(chooser(schedule))
    return part


def check(sent: list[Sent], part: Partitioned) -> None:
    """Everything the module docstring lists, against the reference."""
    assert part.gave_up == [], part.gave_up
    decided = [d for d in part.decisions if isinstance(d, Decided)]
    firsts = list(dict.fromkeys(s.envelope.event_id for s in sent))
    assert sorted(d.event.event_id for d in decided) == sorted(firsts)
    envelopes = {s.envelope.event_id: s.envelope for s in sent}
    reference = Reference()
    routed = reference.replay(part.decisions, envelopes, NOW)
    for d, r in zip(decided, routed, strict=True):
        assert (r.status, r.profile_id, r.merges) == (APPLIED, d.profile_id, d.merges), d
    _check_duplicates(sent, decided, part, reference)
    graph = part.graph()
    assert graph == reference.store, f"{dump(graph)}\n!=\n{dump(reference.store)}"
    for store in part.stores:
        assert not [k for k in store if k.startswith(AT_REST_EMPTY)], dump(store)
    _check_home_order(sent, decided)
    _check_profile_order(part)
    _check_resource_order(part)


def _check_duplicates(sent: list[Sent], decided: list[Decided], part: Partitioned,
                      reference: Reference) -> None:
    """Resends only touch their marker: the reference sees them after the decisions."""
    applied = {(d.event.event_id, d.event.origin) for d in decided}
    expected: dict[str, list[str]] = {}
    for s in sent:
        if s.envelope.event_id not in expected:
            assert (s.envelope.event_id, s.origin) in applied
            expected[s.envelope.event_id] = []
            continue
        expected[s.envelope.event_id].append(route_event(
            reference.store, s.envelope, NOW, reference.window, s.origin).status)
    found: dict[str, list[str]] = {event_id: [] for event_id in expected}
    for d in part.dropped:  # in order per event id: one home slot, arrival order
        found[d.event_id].append(d.status)
    assert found == expected


def _check_home_order(sent: list[Sent], decided: list[Decided]) -> None:
    """Events of one home key are decided in the order they arrived (design 5)."""
    position = {d.event.event_id: n for n, d in enumerate(decided)}
    by_home: dict[str, list[int]] = {}
    for s in dict.fromkeys(s.envelope.event_id for s in sent):
        envelope = next(x.envelope for x in sent if x.envelope.event_id == s)
        by_home.setdefault(envelope.identifiers.partition_key(), []).append(position[s])
    for home, order in by_home.items():
        assert order == sorted(order), home


def _check_resource_order(part: Partitioned) -> None:
    """Every ticket, at every hop, holds claims taken in ascending ``(key_slot, key)``
    order and locks taken in descending id order (design 3.1: no deadlock)."""
    for t in part.tickets:
        claims = [(key_slot(k, part.slots), k) for k in t.claims]
        assert claims == sorted(claims), t
        assert list(t.locked) == sorted(t.locked, reverse=True), t


def _check_profile_order(part: Partitioned) -> None:
    """Every event and merge-out for profile P is sent by P's slot, and nothing is
    routed to a loser after its merge-out until an undo gives it back."""
    retired: set[str] = set()
    back = {d.ticket.loser for d in part.decisions if isinstance(d, Relinked)}
    for slot, item in part.to_profiles:
        if isinstance(item, ToProfile):
            assert slot == profile_slot(item.profile_id, part.slots)
            assert item.profile_id not in retired or item.profile_id in back, item
        elif isinstance(item, MergeOutput):
            assert slot == profile_slot(item.merge.loser, part.slots)
            retired.add(item.merge.loser)


@settings(max_examples=500, deadline=None)
@given(items=EVENTS, slots=st.integers(1, 5), schedule=SCHEDULE, undo=st.just(frozenset()))
@example(items=[((None, None, None, "a0"), 0, None), (("c0", None, None, "a0"), 0, None)],
         slots=2, schedule=[], undo=frozenset())  # found: a hop lost what the step read
@_examples(["link-overtaken", "half-absorbed"])
def test_any_slot_count_and_interleaving_decides_like_one_partition(
        items: Items, slots: int, schedule: list[int], undo: frozenset[int]) -> None:
    sent = build(items)
    check(sent, run_partitioned(sent, slots, schedule, undo))


@settings(max_examples=40, deadline=None)
@given(items=EVENTS, schedule=SCHEDULE)
def test_one_slot_is_todays_stage_without_a_ticket(items: Items, schedule: list[int]
                                                   ) -> None:
    """With one slot every event takes the fast path, decided where it arrives, in
    arrival order: today's stage (plus the ``v:``/``iv:`` versions)."""
    sent = build(items)
    part = run_partitioned(sent, 1, schedule)
    assert part.hops == 0 and part.delivered == len(sent)
    check(sent, part)
    firsts = list(dict.fromkeys(s.envelope.event_id for s in sent))
    assert [d.event.event_id for d in part.decisions if isinstance(d, Decided)] == firsts


@settings(max_examples=400, deadline=None)
@given(items=EVENTS, slots=st.integers(1, 5), schedule=SCHEDULE,
       undo=st.frozensets(st.integers(0, 12), max_size=4))
@_examples(["release-after-retake", "lock-token", "recheck-into-locked", "undo-after-undo",
            "restart"])
def test_undone_merges_in_any_interleaving_relink_like_one_partition(
        items: Items, slots: int, schedule: list[int], undo: frozenset[int]) -> None:
    """Undos (relink tickets) mixed into the traffic, any time after their merge-out:
    the reference runs today's relink with the fixes of docs/partitioned-identity.md
    10.9 (the moved keys leave the winner's canonical profile, and only those it still
    owns) at the relink's place in decision order."""
    sent = build(items)
    part = run_partitioned(sent, slots, schedule, undo)
    check(sent, part)
    relinked = [d for d in part.decisions if isinstance(d, Relinked)]
    assert len(relinked) == len(undo & set(range(part.merges_out)))
